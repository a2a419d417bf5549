//! Invalidation patterns: event-based eviction from an update function, tag invalidation across
//! an organisation, write-through, and version bumps.
//!
//! ```text
//! cargo run --example invalidation                                   # embedded store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example invalidation  # Redis
//! ```

use std::{collections::HashMap, sync::Mutex};

use redis_cached::{Cache, cache_evict, redis_cached};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    org_id: u64,
    name: String,
}

/// Stands in for the database.
static USERS: Mutex<Option<HashMap<u64, User>>> = Mutex::new(None);

fn db_get(id: u64) -> Option<User> {
    USERS.lock().ok()?.as_ref()?.get(&id).cloned()
}

fn db_put(user: User) {
    if let Ok(mut users) = USERS.lock() {
        users.get_or_insert_with(HashMap::new).insert(user.id, user);
    }
}

#[derive(Debug)]
enum AppError {
    /// Read through `Debug` when `main` returns it.
    #[allow(dead_code)]
    Cache(redis_cached::Error),
}

impl From<redis_cached::Error> for AppError {
    fn from(err: redis_cached::Error) -> Self {
        AppError::Cache(err)
    }
}

/// Read path: tagged with the user and their organisation.
#[redis_cached(ttl = "1h", key = "user:{id}", tags = ["user:{id}", "org:{org_id}"], name = "example::user")]
async fn get_user(id: u64, org_id: u64) -> Option<User> {
    println!("    (database read for user {id})");
    db_get(id).filter(|u| u.org_id == org_id)
}

/// Event-based invalidation: after the update commits, entries tagged `user:{id}` go.
#[cache_evict(tags = ["user:{id}"])]
async fn rename_user(id: u64, name: &str) -> Result<(), AppError> {
    if let Some(mut user) = db_get(id) {
        user.name = name.to_owned();
        db_put(user);
    }
    Ok(())
}

/// Version-based invalidation: the shape of the cached value changed in this release, so the
/// entries of version 1 are never read again (they expire by their TTL).
#[redis_cached(ttl = "1h", version = 2, name = "example::user_count")]
async fn user_count(org_id: u64) -> (u64, usize) {
    let n = USERS
        .lock()
        .map(|u| {
            u.as_ref()
                .map_or(0, |m| m.values().filter(|u| u.org_id == org_id).count())
        })
        .unwrap_or(0);
    (org_id, n)
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "mem://".to_owned());
    Cache::builder()
        .url(&url)
        .namespace("example")
        .build()
        .await?
        .install();
    for id in 1..=3 {
        db_put(User {
            id,
            org_id: 7,
            name: format!("user {id}"),
        });
    }
    // Start clean: every entry of get_user, whatever its arguments, in one round trip.
    get_user_invalidate_all().await?;

    println!("1. read-through: a miss, then a hit");
    get_user(1, 7).await;
    get_user(1, 7).await;

    println!("2. event-based: rename_user evicts user:1 after the update commits");
    rename_user(1, "Ada").await?;
    println!("    -> {:?}", get_user(1, 7).await.map(|u| u.name));

    println!("3. tag invalidation: every cached user of org 7 goes in one round trip");
    get_user(2, 7).await;
    get_user(3, 7).await;
    redis_cached::invalidate_tags(["org:7"]).await?;
    get_user(2, 7).await;
    get_user(3, 7).await;

    println!("4. write-through: store the new value instead of evicting it");
    let grace = User {
        id: 2,
        org_id: 7,
        name: "Grace".into(),
    };
    db_put(grace.clone());
    get_user_put(2, 7, &grace).await?;
    println!(
        "    -> {:?} (no database read)",
        get_user(2, 7).await.map(|u| u.name)
    );

    println!(
        "5. version bump: user_count is `version = 2`; its key is {}",
        user_count_key(7)
    );
    println!("    -> {:?}", user_count(7).await);
    Ok(())
}
