//! The service's endpoints against a PostgreSQL and a Redis the tests start themselves:
//! queries are counted by PostgreSQL (`pg_stat_statements`).

mod support;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use deadpool_postgres::{Config, Pool, Runtime};
use http_body_util::BodyExt;
use redis_cached::Cache;
use redis_cached_service::{AppState, cached, db, router};
use support::{postgres::Postgres, redis::RedisServer};
use tower::ServiceExt;

struct Service {
    app: Router,
    pool: Pool,
    cache: Cache,
    _pg: Postgres,
    _redis: Option<RedisServer>,
}

async fn service() -> Service {
    service_with(true).await
}

/// The service with its cache on a live Redis, or (`redis_up = false`) on one that was
/// started and stopped (nothing listens: calls fail open).
async fn service_with(redis_up: bool) -> Service {
    let pg = Postgres::start();
    let redis = RedisServer::start();
    let redis_url = redis.url();
    let redis = if redis_up {
        Some(redis)
    } else {
        drop(redis);
        None
    };
    let mut config = Config::new();
    config.url = Some(pg.url());
    let pool = config
        .create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)
        .expect("pool");
    db::prepare(&pool, db::Sizes::SMALL).await.expect("schema");
    pool.get()
        .await
        .expect("client")
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .expect("pg_stat_statements");
    let cache = Cache::builder()
        .url(redis_url)
        .namespace("service-test")
        .fill_in_background(false)
        .build()
        .await
        .expect("cache");
    let app = router(AppState {
        db: pool.clone(),
        cache: Some(cache.clone()),
    });
    Service {
        app,
        pool,
        cache,
        _pg: pg,
        _redis: redis,
    }
}

impl Service {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// How many times PostgreSQL ran statements whose text contains `needle`.
    async fn queries(&self, needle: &str) -> i64 {
        self.pool
            .get()
            .await
            .expect("client")
            .query_one(
                "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
                 WHERE query LIKE '%' || $1 || '%' AND query NOT LIKE '%pg_stat_statements%'",
                &[&needle],
            )
            .await
            .expect("pg_stat_statements")
            .get(0)
    }
}

const USER_QUERY: &str = "WHERE u.id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_read_does_not_query_postgres_and_a_write_is_seen_on_the_next_read() {
    let s = service().await;
    let (status, first) = s.call("GET", "/users/7", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["name"], "user 7");
    assert_eq!(s.queries(USER_QUERY).await, 1);
    let (_, second) = s.call("GET", "/users/7", None).await;
    assert_eq!(second, first);
    assert_eq!(s.queries(USER_QUERY).await, 1, "the second read was a hit");

    // A missing user is cached too.
    assert_eq!(
        s.call("GET", "/users/999999", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.call("GET", "/users/999999", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.queries("SELECT org_id FROM users").await,
        2,
        "one lookup for user 7, one for the missing user: its absence is cached"
    );
    assert_eq!(s.queries(USER_QUERY).await, 1);

    let update = serde_json::json!({ "name": "renamed", "email": "r@example.com" });
    let (status, _) = s.call("PUT", "/users/7", Some(update)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, after) = s.call("GET", "/users/7", None).await;
    assert_eq!(after["name"], "renamed", "no stale read after a PUT");
}

/// 50 concurrent PUTs to one user: the next read returns the row PostgreSQL holds, never an
/// older one (invalidation after each commit, not a put of each request's value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_puts_leave_the_committed_row_cached() {
    let s = service().await;
    assert_eq!(s.call("GET", "/users/3", None).await.0, StatusCode::OK);
    let s = std::sync::Arc::new(s);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let s = s.clone();
        set.spawn(async move {
            let update = serde_json::json!({ "name": format!("name {i}"), "email": "e@x" });
            let (status, _) = s.call("PUT", "/users/3", Some(update)).await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            // Readers racing the writers load whatever is committed at the time.
            s.call("GET", "/users/3", None).await;
        });
    }
    set.join_all().await;
    let committed: String = s
        .pool
        .get()
        .await
        .expect("client")
        .query_one("SELECT name FROM users WHERE id = 3", &[])
        .await
        .expect("row")
        .get(0);
    let (_, cached) = s.call("GET", "/users/3", None).await;
    assert_eq!(cached["name"], committed.as_str());
}

/// The materialized view: 503 until the job builds it, then served without a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_view_is_served_without_a_query_once_the_job_built_it() {
    let s = service().await;
    let (status, body) = s.call("GET", "/users/5/stats", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "the stats view is not built yet");
    let stored = s.cache.scope(cached::refresh_stats(&s.pool, 1..=10)).await;
    assert_eq!(stored, 10);
    let before = s.queries("FROM posts WHERE author_id").await;
    assert_eq!(before, 10, "the job ran one query per user");
    for _ in 0..5 {
        let (status, body) = s.call("GET", "/users/5/stats", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["user_id"], 5);
        assert!(body["posts"].as_i64().is_some_and(|n| n > 0), "{body}");
    }
    assert_eq!(
        s.queries("FROM posts WHERE author_id").await,
        before,
        "served without a query"
    );
}

/// Full result caching: the trending query runs once for many reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trending_runs_its_query_once_for_many_reads() {
    let s = service().await;
    let (status, first) = s.call("GET", "/posts/trending", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        first.as_array().is_some_and(|list| !list.is_empty()),
        "{first}"
    );
    for _ in 0..20 {
        assert_eq!(s.call("GET", "/posts/trending", None).await.1, first);
    }
    assert_eq!(s.queries("GROUP BY p.id, p.title").await, 1);
}

/// Partial result caching and event invalidation: the body is read once; a vote drops the
/// count, so the next read shows it, and the body is not read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_is_counted_on_the_next_read_and_the_body_stays_cached() {
    let s = service().await;
    let (status, post) = s.call("GET", "/posts/11", None).await;
    assert_eq!(status, StatusCode::OK);
    let votes = post["votes"].as_i64().expect("votes");
    assert_eq!(s.call("GET", "/posts/11", None).await.1, post, "a hit");
    let vote = serde_json::json!({ "user_id": 4 });
    assert_eq!(
        s.call("POST", "/posts/11/votes", Some(vote)).await.0,
        StatusCode::CREATED
    );
    let (_, after) = s.call("GET", "/posts/11", None).await;
    assert_eq!(
        after["votes"].as_i64(),
        Some(votes + 1),
        "no stale count after a vote"
    );
    assert_eq!(after["body"], post["body"]);
    assert_eq!(
        s.queries("title, body FROM posts").await,
        1,
        "the body was read once"
    );
    assert_eq!(
        s.queries("FROM votes WHERE post_id").await,
        2,
        "the count twice"
    );
}

/// Tag invalidation: renaming an organisation reloads exactly its cached users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_an_org_reloads_exactly_its_users() {
    let s = service().await;
    // Users 1 and 11 are in org 2, user 2 in org 3 (org = 1 + id % 10).
    for id in [1, 11, 2] {
        assert_eq!(
            s.call("GET", &format!("/users/{id}"), None).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(s.queries(USER_QUERY).await, 3);
    let rename = serde_json::json!({ "name": "renamed org" });
    assert_eq!(
        s.call("POST", "/orgs/2/rename", Some(rename)).await.0,
        StatusCode::NO_CONTENT
    );
    for id in [1, 11] {
        let (_, user) = s.call("GET", &format!("/users/{id}"), None).await;
        assert_eq!(user["org_name"], "renamed org", "user {id}");
    }
    let (_, other) = s.call("GET", "/users/2", None).await;
    assert_eq!(other["org_name"], "org 3");
    assert_eq!(
        s.queries(USER_QUERY).await,
        5,
        "the org's two users reloaded, the other hit"
    );
}

/// Redis data structures beside the cache: votes feed a leaderboard and the voter's activity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_feed_the_leaderboard_and_the_activity_list() {
    let s = service().await;
    // Post 21's author is user 1 + 21 % 200 = 22; post 22's is 23.
    for (post, voter) in [(21, 5), (21, 6), (22, 5)] {
        let vote = serde_json::json!({ "user_id": voter });
        let (status, _) = s
            .call("POST", &format!("/posts/{post}/votes"), Some(vote))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, leaders) = s.call("GET", "/leaderboard", None).await;
    assert_eq!(
        leaders,
        serde_json::json!([{ "user_id": 22, "votes": 2 }, { "user_id": 23, "votes": 1 }])
    );
    let (_, activity) = s.call("GET", "/users/5/activity", None).await;
    assert_eq!(
        activity,
        serde_json::json!(["voted for post 22", "voted for post 21"])
    );
}

/// Hit-rate monitoring: the library's counters, in Prometheus text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_hits_and_misses() {
    let s = service().await;
    for _ in 0..3 {
        s.call("GET", "/posts/trending", None).await;
    }
    let response = s
        .app
        .clone()
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    // The recorder is the process's: other tests' calls count too, so at least ours.
    let count = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains("service::trending"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(count("redis_cached_hits_total") >= 2.0, "{text}");
    assert!(count("redis_cached_misses_total") >= 1.0, "{text}");
}

/// A vote for a post that does not exist is a 404, not a database error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_for_a_missing_post_is_not_found() {
    let s = service().await;
    let vote = serde_json::json!({ "user_id": 4 });
    let (status, _) = s.call("POST", "/posts/99999999/votes", Some(vote)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// With Redis down, every endpoint serves from PostgreSQL: reads fail open, writes succeed
/// (their failed invalidations are logged and counted), the stats view is computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_everything_is_served_from_postgres() {
    let s = service_with(false).await;
    let (status, user) = s.call("GET", "/users/7", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["name"], "user 7");
    let update = serde_json::json!({ "name": "renamed", "email": "r@example.com" });
    assert_eq!(
        s.call("PUT", "/users/7", Some(update)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.call("GET", "/users/7", None).await.1["name"], "renamed");
    let vote = serde_json::json!({ "user_id": 4 });
    assert_eq!(
        s.call("POST", "/posts/11/votes", Some(vote)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.call("GET", "/posts/trending", None).await.0,
        StatusCode::OK
    );
    let (status, stats) = s.call("GET", "/users/5/stats", None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["user_id"], 5);
}

/// `CACHE=off`: the same handlers with no cache, every read on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_caching_off_every_read_queries_postgres() {
    let mut s = service().await;
    s.app = router(AppState {
        db: s.pool.clone(),
        cache: None,
    });
    for _ in 0..2 {
        assert_eq!(s.call("GET", "/users/7", None).await.0, StatusCode::OK);
    }
    assert_eq!(s.queries(USER_QUERY).await, 2);
    let (status, stats) = s.call("GET", "/users/5/stats", None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let vote = serde_json::json!({ "user_id": 4 });
    assert_eq!(
        s.call("POST", "/posts/11/votes", Some(vote)).await.0,
        StatusCode::CREATED
    );
}
