//! Redis data structures beside the cache, through the `Cache`'s own connection: a
//! leaderboard on a sorted set and a per-user activity list (`LPUSH` + `LTRIM`). Their keys
//! sit outside the cache's namespace (`app;...`), so cache tooling never mistakes them for
//! entries.

use deadpool_postgres::Pool;
use redis_cached::{Cache, redis::AsyncCommands};
use serde::Serialize;

use crate::AppError;

const LEADERBOARD: &str = "app;leaderboard";
/// How many events a user's activity list keeps.
const ACTIVITY_KEPT: isize = 100;

fn activity_key(user: i64) -> String {
    format!("app;activity:{user}")
}

fn connection(cache: &Cache) -> Result<redis_cached::redis::aio::ConnectionManager, AppError> {
    cache
        .redis_connection()
        .ok_or_else(|| AppError::Cache("no single-node Redis connection".into()))
}

fn redis_error(err: redis_cached::redis::RedisError) -> AppError {
    AppError::Cache(err.to_string())
}

/// After a vote: the post's author gains a point, and the voter's activity list the vote.
pub async fn record_vote(cache: &Cache, db: &Pool, post: i64, voter: i64) -> Result<(), AppError> {
    let author: i64 = db
        .get()
        .await?
        .query_one("SELECT author_id FROM posts WHERE id = $1", &[&post])
        .await?
        .get(0);
    let mut conn = connection(cache)?;
    let _: () = redis_cached::redis::pipe()
        .zincr(LEADERBOARD, author, 1)
        .ignore()
        .lpush(activity_key(voter), format!("voted for post {post}"))
        .ignore()
        .ltrim(activity_key(voter), 0, ACTIVITY_KEPT - 1)
        .ignore()
        .query_async(&mut conn)
        .await
        .map_err(redis_error)?;
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct Leader {
    pub user_id: i64,
    pub votes: i64,
}

/// The `top` authors by votes received since the leaderboard began.
pub async fn leaderboard(cache: &Cache, top: isize) -> Result<Vec<Leader>, AppError> {
    let mut conn = connection(cache)?;
    let rows: Vec<(i64, i64)> = conn
        .zrevrange_withscores(LEADERBOARD, 0, top - 1)
        .await
        .map_err(redis_error)?;
    Ok(rows
        .into_iter()
        .map(|(user_id, votes)| Leader { user_id, votes })
        .collect())
}

/// A user's latest `n` events, newest first.
pub async fn activity(cache: &Cache, user: i64, n: isize) -> Result<Vec<String>, AppError> {
    let mut conn = connection(cache)?;
    conn.lrange(activity_key(user), 0, n - 1)
        .await
        .map_err(redis_error)
}
