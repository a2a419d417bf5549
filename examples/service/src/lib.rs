//! An example service on PostgreSQL where every caching pattern of the guide is an endpoint
//! done with `redis-cached` (issue 15; more endpoints to come). `main.rs` starts it; the
//! router is here so tests drive it in process.

pub mod cached;
pub mod db;
pub mod structures;
pub mod votes;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use deadpool_postgres::Pool;
use redis_cached::Cache;
use serde::Deserialize;

/// What handlers share: the pool, and the cache (`None` with caching off: the same code runs
/// every read against the database).
#[derive(Clone)]
pub struct AppState {
    pub db: Pool,
    pub cache: Option<Cache>,
}

impl AppState {
    /// Runs `work` with this state's cache as the default one of the cached functions.
    async fn cached<F: std::future::Future>(&self, work: F) -> F::Output {
        match &self.cache {
            Some(cache) => cache.scope(work).await,
            None => work.await,
        }
    }
}

/// A handler's failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Db(String),
    #[error("cache: {0}")]
    Cache(String),
    #[error("not found")]
    NotFound,
}

impl From<tokio_postgres::Error> for AppError {
    fn from(err: tokio_postgres::Error) -> Self {
        AppError::Db(err.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for AppError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        AppError::Db(err.to_string())
    }
}

impl From<redis_cached::Error> for AppError {
    fn from(err: redis_cached::Error) -> Self {
        AppError::Cache(err.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::NotFound = self {
            return StatusCode::NOT_FOUND.into_response();
        }
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
    }
}

pub fn router(state: AppState) -> Router {
    prometheus();
    Router::new()
        .route("/users/{id}", get(get_user).put(put_user))
        .route("/users/{id}/stats", get(get_user_stats))
        .route("/posts/trending", get(get_trending))
        .route("/posts/{id}", get(get_post))
        .route("/posts/{id}/votes", post(post_vote))
        .route("/orgs/{id}/rename", post(rename_org))
        .route("/leaderboard", get(get_leaderboard))
        .route("/metrics", get(get_metrics))
        .route("/users/{id}/activity", get(get_activity))
        .with_state(state)
}

/// Read-through (the user's organisation first: the entry's tag).
async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let user = state
        .cached(async {
            match cached::user_org(id, &state.db).await? {
                Some(org) => cached::user(id, org, &state.db).await,
                None => Ok(None),
            }
        })
        .await?;
    Ok(match user {
        Some(user) => Json(user).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

#[derive(Debug, Deserialize)]
pub struct UserUpdate {
    pub name: String,
    pub email: String,
}

/// Invalidation on update: the row is written, then the entry dropped. Not `user_put`: two
/// concurrent requests could each commit and then put in the other order, leaving the older
/// row cached; an invalidation after each commit cannot (the next read loads what is
/// committed, and a load that began before the invalidation cannot store).
async fn put_user(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Json(update): Json<UserUpdate>,
) -> Result<Response, AppError> {
    to_completion(async move {
        let client = state.db.get().await?;
        let updated = client
            .execute(
                "UPDATE users SET name = $2, email = $3 WHERE id = $1",
                &[&id, &update.name, &update.email],
            )
            .await?;
        if updated == 0 {
            return Ok(StatusCode::NOT_FOUND.into_response());
        }
        if state.cache.is_some()
            && let Err(err) = state.cached(cached::user_invalidate(id)).await
        {
            invalidation_failed("user", &err.to_string());
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// Runs a write and its invalidation to the end even if the client goes away: axum drops the
/// handler of a client that disconnected, and a commit without its invalidation would leave
/// the old value cached until its TTL.
async fn to_completion(
    work: impl std::future::Future<Output = Result<Response, AppError>> + Send + 'static,
) -> Result<Response, AppError> {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|err| Err(AppError::Db(format!("the write did not finish: {err}"))))
}

/// A committed write whose invalidation failed: the old value may be served until its TTL.
/// Reported (an error log and a counter), not turned into the request's failure: the write
/// itself succeeded, and a client retrying it would repeat it.
fn invalidation_failed(what: &'static str, error: &str) {
    tracing::error!(
        what,
        error,
        "invalidation failed after a committed write; the old value may be served until its TTL"
    );
    metrics::counter!("service_invalidation_failures_total", "what" => what).increment(1);
}

/// The materialized view, read without loading: 503 until the stats job built it.
async fn get_user_stats(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    if state.cache.is_none() {
        // Caching off: the view is computed per request.
        let stats = cached::user_stats(id, &state.db).await?;
        return Ok(Json(stats).into_response());
    }
    let peeked = match state.cached(cached::user_stats_peek(id)).await {
        Ok(peeked) => peeked,
        // Redis unreachable: computed from the database, as with caching off.
        Err(err) => {
            tracing::warn!(error = %err, "stats view unreadable; computing it");
            let stats = cached::user_stats(id, &state.db).await?;
            return Ok(Json(stats).into_response());
        }
    };
    Ok(match peeked {
        Some(Ok(stats)) => Json(stats).into_response(),
        Some(Err(err)) => err.into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "the stats view is not built yet" })),
        )
            .into_response(),
    })
}

/// Full result caching (with early refresh and stale-while-revalidate).
async fn get_trending(State(state): State<AppState>) -> Result<Response, AppError> {
    let list = state.cached(cached::trending(&state.db)).await?;
    Ok(Json(list).into_response())
}

/// Partial result caching: the body (1 h) and the vote count (60 s, dropped by each vote),
/// cached apart and combined per request.
async fn get_post(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let (body, votes) = state
        .cached(async {
            tokio::try_join!(
                cached::post_body(id, &state.db),
                cached::vote_count(id, &state.db)
            )
        })
        .await?;
    Ok(match body {
        Some(post) => Json(serde_json::json!({
            "id": post.id,
            "author_id": post.author_id,
            "title": post.title,
            "body": post.body,
            "votes": votes,
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

#[derive(Debug, Deserialize)]
pub struct NewVote {
    pub user_id: i64,
}

/// Event invalidation: the vote, then its post's count dropped.
async fn post_vote(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Json(vote): Json<NewVote>,
) -> Result<Response, AppError> {
    to_completion(async move {
        match &state.cache {
            Some(cache) => {
                match state.cached(votes::vote(id, vote.user_id, &state.db)).await {
                    Ok(()) => {}
                    // `#[cache_evict]` reports a failed invalidation after the insert landed.
                    Err(AppError::Cache(err)) => invalidation_failed("post votes", &err),
                    Err(err) => return Err(err),
                }
                // Best effort: Redis data structures beside the cache (a leaderboard, an
                // activity list); a failure is logged, the vote stands.
                if let Err(err) = structures::record_vote(cache, &state.db, id, vote.user_id).await
                {
                    tracing::warn!(error = %err, "leaderboard/activity not updated");
                }
            }
            // Caching off: nothing to invalidate.
            None => votes::insert_vote(id, vote.user_id, &state.db).await?,
        }
        Ok(StatusCode::CREATED.into_response())
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct Rename {
    pub name: String,
}

/// Tag invalidation: every cached user of the organisation, in one call.
async fn rename_org(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Json(rename): Json<Rename>,
) -> Result<Response, AppError> {
    to_completion(async move {
        let client = state.db.get().await?;
        let updated = client
            .execute(
                "UPDATE orgs SET name = $2 WHERE id = $1",
                &[&id, &rename.name],
            )
            .await?;
        if updated == 0 {
            return Ok(StatusCode::NOT_FOUND.into_response());
        }
        if let Some(cache) = &state.cache
            && let Err(err) = cache.invalidate_tags([format!("org:{id}")]).await
        {
            invalidation_failed("org", &err.to_string());
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// A sorted set: the authors whose posts got the most votes (through the `Cache`'s own
/// connection).
async fn get_leaderboard(State(state): State<AppState>) -> Result<Response, AppError> {
    let Some(cache) = &state.cache else {
        return Ok(StatusCode::SERVICE_UNAVAILABLE.into_response());
    };
    Ok(Json(structures::leaderboard(cache, 10).await?).into_response())
}

/// A list: a user's latest votes, newest first.
async fn get_activity(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let Some(cache) = &state.cache else {
        return Ok(StatusCode::SERVICE_UNAVAILABLE.into_response());
    };
    Ok(Json(structures::activity(cache, id, 20).await?).into_response())
}

/// The process's Prometheus recorder, installed once (the library reports through the
/// `metrics` facade: hits by level, misses, loads, errors, per function).
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows nothing");
        }
        handle
    })
}

/// Hit-rate monitoring: Prometheus text.
async fn get_metrics() -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}
