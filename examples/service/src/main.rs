//! The example service: `DATABASE_URL=postgres://... [REDIS_URL=redis://...] cargo run
//! --release` from `examples/service/`. Creates and seeds its schema when missing; refuses to
//! start only when PostgreSQL is unreachable; with Redis down it starts, warns, and serves
//! from the database. `CACHE=off` bypasses the cache (same code path otherwise), `SEED=small`
//! seeds a small data set, `PORT` (default 3000), `STATS_EVERY` seconds between stats jobs
//! (default 600), `STATS_USERS` how many users (from id 1) the job builds views for (default
//! all).

use std::time::Duration;

use deadpool_postgres::{Config, Runtime};
use redis_cached::Cache;
use redis_cached_service::{AppState, cached, db, router};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();
    // Before anything records: the library registers each function's metrics at first use.
    redis_cached_service::prometheus();
    let Some(database_url) = env("DATABASE_URL") else {
        eprintln!("error: set DATABASE_URL (postgres://user@host:5432/db)");
        std::process::exit(2);
    };
    let mut config = Config::new();
    config.url = Some(database_url.clone());
    // Every wait bounded: a pool exhausted or a database gone answers an error, not a hang.
    let timeout = Some(Duration::from_secs(5));
    config.pool = Some(deadpool_postgres::PoolConfig {
        timeouts: deadpool_postgres::Timeouts {
            wait: timeout,
            create: timeout,
            recycle: timeout,
        },
        ..deadpool_postgres::PoolConfig::default()
    });
    let pool = config.create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)?;
    if let Err(err) = pool.get().await {
        eprintln!("error: PostgreSQL is unreachable at DATABASE_URL: {err}");
        std::process::exit(1);
    }
    let sizes = match env("SEED").as_deref() {
        Some("small") => db::Sizes::SMALL,
        _ => db::Sizes::FULL,
    };
    tracing::info!(?sizes, "preparing the schema (seeding if empty)");
    db::prepare(&pool, sizes).await?;
    let cache = if env("CACHE").as_deref() == Some("off") {
        tracing::warn!("CACHE=off: every read goes to PostgreSQL");
        None
    } else {
        let url = env("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        // An unreachable Redis is not an error: calls run their loaders until it answers.
        let cache = Cache::builder()
            .url(url)
            .namespace("service")
            .build()
            .await?;
        // Not a reason to refuse to start: say so, and serve from the database meanwhile.
        let answers = match cache.redis_connection() {
            Some(mut conn) => tokio::time::timeout(
                Duration::from_secs(1),
                redis_cached::redis::cmd("PING").query_async::<String>(&mut conn),
            )
            .await
            .is_ok_and(|pong| pong.is_ok()),
            None => false,
        };
        if !answers {
            tracing::warn!(
                "Redis does not answer at REDIS_URL: serving from PostgreSQL until it does"
            );
        }
        Some(cache)
    };
    let state = AppState {
        db: pool.clone(),
        cache: cache.clone(),
    };
    if let Some(cache) = cache {
        let every = env("STATS_EVERY")
            .and_then(|s| s.parse().ok())
            .map_or(Duration::from_secs(600), Duration::from_secs);
        tokio::spawn(async move {
            loop {
                let users: i64 = match env("STATS_USERS").and_then(|n| n.parse().ok()) {
                    Some(n) => n,
                    None => match pool.get().await {
                        Ok(client) => client
                            .query_one("SELECT count(*) FROM users", &[])
                            .await
                            .map_or(0, |row| row.get(0)),
                        Err(_) => 0,
                    },
                };
                let stored = cache.scope(cached::refresh_stats(&pool, 1..=users)).await;
                tracing::info!(stored, "stats job: views rebuilt");
                tokio::time::sleep(every).await;
            }
        });
    }
    let port = env("PORT").unwrap_or_else(|| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    tracing::info!(%port, "serving");
    axum::serve(listener, router(state)).await?;
    Ok(())
}
