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
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStats {
    pub user_id: i64,
    pub posts: i64,
    pub votes_received: i64,
}

/// Read-through (cache-aside): `GET /users/{id}`. A missing user is cached too (`Ok(None)`),
/// so probing unknown ids does not reach the database.
#[redis_cached(ttl = 300, name = "service::user")]
pub async fn user(id: i64, #[cache(skip)] db: &Pool) -> Result<Option<User>, AppError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            "SELECT id, org_id, name, email FROM users WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.map(|row| User {
        id: row.get(0),
        org_id: row.get(1),
        name: row.get(2),
        email: row.get(3),
    }))
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
            Ok(_) => stored += 1,
            Err(err) => tracing::warn!(id, error = %err, "stats job: could not refresh"),
        }
    }
    stored
}
