//! Writes that invalidate by event: a vote drops its post's vote count.

use deadpool_postgres::Pool;
use redis_cached::cache_evict;

use crate::AppError;

/// The vote itself.
pub async fn insert_vote(post_id: i64, user_id: i64, db: &Pool) -> Result<(), AppError> {
    let client = db.get().await?;
    let inserted = client
        .execute(
            "INSERT INTO votes (post_id, user_id, created_at) VALUES ($1, $2, now())",
            &[&post_id, &user_id],
        )
        .await;
    match inserted {
        Ok(_) => Ok(()),
        // No such post or user.
        Err(err) if err.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
            Err(AppError::NotFound)
        }
        Err(err) => Err(err.into()),
    }
}

/// Event invalidation: `POST /posts/{id}/votes` inserts the vote, then (once it returned
/// `Ok`) `#[cache_evict]` drops every entry tagged with the post's votes; a failed
/// invalidation is the request's error (the vote is in, the count may lag up to its TTL).
#[cache_evict(tags = ["post-votes:{post_id}"])]
pub async fn vote(post_id: i64, user_id: i64, db: &Pool) -> Result<(), AppError> {
    insert_vote(post_id, user_id, db).await
}
