//! The cached reads, one per pattern of the guide, each a plain `async fn` with
//! `#[redis_cached]`; the pool is a `#[cache(skip)]` argument.

use deadpool_postgres::Pool;
use redis_cached::redis_cached;
use serde::{Deserialize, Serialize};

use crate::AppError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub org_id: i64,
    pub org_name: String,
    pub name: String,
    pub email: String,
}

/// Which organisation a user belongs to: small, and changed by no endpoint, so cached a day.
#[redis_cached(ttl = 86400, name = "service::user_org")]
pub async fn user_org(id: i64, #[cache(skip)] db: &Pool) -> Result<Option<i64>, AppError> {
    let client = db.get().await?;
    let row = client
        .query_opt("SELECT org_id FROM users WHERE id = $1", &[&id])
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Read-through (cache-aside): `GET /users/{id}`, with the organisation's name joined in.
/// Tagged with the organisation, so renaming it drops every cached user of it in one call
/// (tag invalidation); the tag's value must be known at call time, hence [`user_org`]
/// first. A missing user is cached too (`Ok(None)`), so probing unknown ids does not reach the
/// database.
#[redis_cached(ttl = 300, tags = ["org:{org_id}"], name = "service::user")]
pub async fn user(
    id: i64,
    #[cache(skip)] org_id: i64,
    #[cache(skip)] db: &Pool,
) -> Result<Option<User>, AppError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            "SELECT u.id, u.org_id, o.name, u.name, u.email
               FROM users u JOIN orgs o ON o.id = u.org_id
              WHERE u.id = $1",
            &[&id],
        )
        .await?;
    let _ = org_id; // The tag's; the row says the same.
    Ok(row.map(|row| User {
        id: row.get(0),
        org_id: row.get(1),
        org_name: row.get(2),
        name: row.get(3),
        email: row.get(4),
    }))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStats {
    pub user_id: i64,
    pub posts: i64,
    pub votes_received: i64,
}

/// A cached materialized view: `GET /users/{id}/stats` reads it with `user_stats_peek` and
/// never runs this; the stats job fills it with `user_stats_refresh`.
#[redis_cached(ttl = 3600, name = "service::user_stats")]
pub async fn user_stats(id: i64, #[cache(skip)] db: &Pool) -> Result<UserStats, AppError> {
    let client = db.get().await?;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM posts WHERE author_id = $1),
                    (SELECT count(*) FROM votes v JOIN posts p ON p.id = v.post_id
                      WHERE p.author_id = $1)",
            &[&id],
        )
        .await?;
    Ok(UserStats {
        user_id: id,
        posts: row.get(0),
        votes_received: row.get(1),
    })
}

/// The stats job: rebuilds the view of `ids` (the service runs it periodically over every
/// user); returns how many it stored.
pub async fn refresh_stats(db: &Pool, ids: impl IntoIterator<Item = i64>) -> usize {
    let mut stored = 0;
    for id in ids {
        match user_stats_refresh(id, db).await {
            Ok(Ok(_)) => stored += 1,
            Ok(Err(err)) => tracing::warn!(id, error = %err, "stats job: could not compute"),
            Err(err) => tracing::warn!(id, error = %err, "stats job: could not refresh"),
        }
    }
    stored
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trending {
    pub post_id: i64,
    pub title: String,
    pub votes: i64,
}

/// Full result caching: `GET /posts/trending`, the guide's 24-hour vote query, 5 minutes. The
/// query is the expensive one: one caller refreshes it shortly before it expires
/// (`early_refresh`), and while it reloads, callers are served the previous list (`stale`).
#[redis_cached(ttl = 300, stale = 60, early_refresh = 1.0, name = "service::trending")]
pub async fn trending(#[cache(skip)] db: &Pool) -> Result<Vec<Trending>, AppError> {
    let client = db.get().await?;
    let rows = client
        .query(
            "SELECT p.id, p.title, count(*) AS votes
               FROM votes v JOIN posts p ON p.id = v.post_id
              WHERE v.created_at > now() - interval '24 hours'
              GROUP BY p.id, p.title
              ORDER BY votes DESC, p.id
              LIMIT 10",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Trending {
            post_id: row.get(0),
            title: row.get(1),
            votes: row.get(2),
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostBody {
    pub id: i64,
    pub author_id: i64,
    pub title: String,
    pub body: String,
}

/// Partial result caching, the part that rarely changes: a post's body, for an hour.
///
/// Version invalidation: `PostBody` gained `author_id` in its second version, and entries
/// written by the first (without it) would no longer decode, or worse, decode into a default;
/// `version = 2` gives the new type keys of its own, so during a rolling deploy old and new
/// processes each read their own entries and nothing has to be flushed.
#[redis_cached(ttl = 3600, version = 2, name = "service::post_body")]
pub async fn post_body(id: i64, #[cache(skip)] db: &Pool) -> Result<Option<PostBody>, AppError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            "SELECT id, author_id, title, body FROM posts WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.map(|row| PostBody {
        id: row.get(0),
        author_id: row.get(1),
        title: row.get(2),
        body: row.get(3),
    }))
}

/// Partial result caching, the part that changes often: a post's vote count, for 60 s, and
/// dropped by every vote (event invalidation, `#[cache_evict]` on [`crate::votes::vote`]).
#[redis_cached(ttl = 60, tags = ["post-votes:{id}"], name = "service::vote_count")]
pub async fn vote_count(id: i64, #[cache(skip)] db: &Pool) -> Result<i64, AppError> {
    let client = db.get().await?;
    let row = client
        .query_one("SELECT count(*) FROM votes WHERE post_id = $1", &[&id])
        .await?;
    Ok(row.get(0))
}
