//! The schema of the guide's examples (users in organisations, posts, votes) and a
//! reproducible generated data set.

use deadpool_postgres::Pool;

/// Sizes of the generated data set.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub orgs: u32,
    pub users: u32,
    pub posts: u32,
    pub votes: u32,
}

impl Sizes {
    /// The service's default: 100k users, 1M posts, 5M votes (a few minutes to seed).
    pub const FULL: Sizes = Sizes {
        orgs: 1_000,
        users: 100_000,
        posts: 1_000_000,
        votes: 5_000_000,
    };

    /// For tests: seeds in well under a second.
    pub const SMALL: Sizes = Sizes {
        orgs: 10,
        users: 200,
        posts: 1_000,
        votes: 5_000,
    };
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orgs (
    id    BIGINT PRIMARY KEY,
    name  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id      BIGINT PRIMARY KEY,
    org_id  BIGINT NOT NULL REFERENCES orgs(id),
    name    TEXT NOT NULL,
    email   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS users_org ON users(org_id);
CREATE TABLE IF NOT EXISTS posts (
    id          BIGINT PRIMARY KEY,
    author_id   BIGINT NOT NULL REFERENCES users(id),
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS posts_author ON posts(author_id);
CREATE TABLE IF NOT EXISTS votes (
    post_id     BIGINT NOT NULL REFERENCES posts(id),
    user_id     BIGINT NOT NULL REFERENCES users(id),
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS votes_post ON votes(post_id);
CREATE INDEX IF NOT EXISTS votes_created ON votes(created_at);
";

/// Creates the schema if missing, and seeds it if it holds no users (with the same data for
/// the same sizes: the generator is seeded).
pub async fn prepare(pool: &Pool, sizes: Sizes) -> Result<(), Box<dyn std::error::Error>> {
    let client = pool.get().await?;
    client.batch_execute(SCHEMA).await?;
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await?
        .get(0);
    if users > 0 {
        return Ok(());
    }
    // Generated in SQL, so 5M votes seed without 5M round trips; `setseed` makes `random()`
    // repeatable.
    let Sizes {
        orgs,
        users,
        posts,
        votes,
    } = sizes;
    client
        .batch_execute(&format!(
            "BEGIN;
             SELECT setseed(0.42);
             INSERT INTO orgs SELECT g, 'org ' || g FROM generate_series(1, {orgs}) g;
             INSERT INTO users SELECT g, 1 + (g % {orgs}), 'user ' || g, 'user' || g || '@example.com'
                 FROM generate_series(1, {users}) g;
             INSERT INTO posts SELECT g, 1 + (g % {users}), 'post ' || g, repeat('text of post ' || g || '. ', 20),
                 now() - (random() * interval '30 days')
                 FROM generate_series(1, {posts}) g;
             INSERT INTO votes SELECT 1 + floor(random() * {posts})::bigint, 1 + floor(random() * {users})::bigint,
                 now() - (random() * interval '7 days')
                 FROM generate_series(1, {votes}) g;
             ANALYZE;
             COMMIT;"
        ))
        .await?;
    Ok(())
}
