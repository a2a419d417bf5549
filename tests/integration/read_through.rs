//! Read-through behaviour through the attribute: hits, misses, TTLs, return-type rules,
//! methods, generics and the generated helpers.

use std::{sync::Arc, time::Duration};

use redis_cached::{Cache, Error, redis_cached};
use serde::{Deserialize, Serialize};

use crate::{
    Calls, pttl, redis_cache,
    support::{RedisServer, wait_until},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[redis_cached(ttl = 60)]
async fn load_user(id: u64, #[cache(skip)] calls: &Calls) -> User {
    calls.bump();
    User {
        id,
        name: format!("user{id}"),
    }
}

#[tokio::test]
async fn a_miss_loads_and_stores_then_a_hit_skips_the_loader() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(load_user(1, &calls).await.name, "user1");
            cache.wait_for_writes().await;
            assert_eq!(load_user(1, &calls).await.name, "user1");
            assert_eq!(calls.get(), 1);
            assert_eq!(load_user(2, &calls).await.id, 2);
            assert_eq!(calls.get(), 2);
            cache.wait_for_writes().await;
        })
        .await;
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.loads, stats.stores),
        (1, 2, 2, 2)
    );
    let key = cache.scope(async { load_user_key(1) }).await;
    assert_eq!(key, "test:integration::read_through::load_user:v1:{1}");
    let ttl = pttl(&server, &key).await;
    assert!(ttl > 55_000 && ttl <= 60_000, "PTTL {ttl}");
}

#[redis_cached(ttl = 1, name = "short_lived")]
async fn short_lived(id: u64, #[cache(skip)] calls: &Calls) -> u64 {
    calls.bump() as u64 + id
}

#[tokio::test]
async fn an_entry_expires_after_its_ttl() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            short_lived(5, &calls).await;
            short_lived(5, &calls).await;
            assert_eq!(calls.get(), 1);
            let key = short_lived_key(5);
            let mut conn = server.conn().await;
            wait_until("the entry to expire", Duration::from_secs(5), || {
                let mut conn = conn.clone();
                let key = key.clone();
                async move {
                    !redis::cmd("EXISTS")
                        .arg(&key)
                        .query_async::<bool>(&mut conn)
                        .await
                        .unwrap_or(true)
                }
            })
            .await;
            let _ = &mut conn;
            short_lived(5, &calls).await;
            assert_eq!(calls.get(), 2, "an expired entry is loaded again");
        })
        .await;
}

#[redis_cached(ttl = 60, name = "skip_test")]
async fn with_skipped(id: u64, #[cache(skip)] tag: &str, #[cache(skip)] calls: &Calls) -> String {
    calls.bump();
    format!("{id}-{tag}")
}

#[tokio::test]
async fn skipped_parameters_are_not_part_of_the_key() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(with_skipped(1, "first", &calls).await, "1-first");
            // Same key: the skipped argument does not matter, the first value is served.
            assert_eq!(with_skipped(1, "second", &calls).await, "1-first");
            assert_eq!(calls.get(), 1);
            assert_eq!(with_skipped_key(1), "test:skip_test:v1:{1}");
        })
        .await;
}

#[derive(Debug, Clone, PartialEq)]
struct LoadError(String);

#[redis_cached(ttl = 60, name = "result_fn")]
async fn fallible(id: u64, fail: bool, #[cache(skip)] calls: &Calls) -> Result<u64, LoadError> {
    calls.bump();
    if fail {
        Err(LoadError("boom".into()))
    } else {
        Ok(id * 10)
    }
}

#[tokio::test]
async fn result_functions_cache_only_ok() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(
                fallible(1, true, &calls).await,
                Err(LoadError("boom".into()))
            );
            assert_eq!(
                fallible(1, true, &calls).await,
                Err(LoadError("boom".into()))
            );
            assert_eq!(calls.get(), 2, "errors are not cached");
            assert_eq!(fallible(1, false, &calls).await, Ok(10));
            assert_eq!(fallible(1, false, &calls).await, Ok(10));
            assert_eq!(calls.get(), 3, "Ok is cached");
        })
        .await;
}

#[redis_cached(ttl = 600, none_ttl = 30, name = "option_fn")]
async fn find(id: u64, #[cache(skip)] calls: &Calls) -> Option<u64> {
    calls.bump();
    id.is_multiple_of(2).then_some(id)
}

#[redis_cached(ttl = 600, cache_none = false, name = "option_no_none")]
async fn find_uncached_none(id: u64, #[cache(skip)] calls: &Calls) -> Option<u64> {
    calls.bump();
    id.is_multiple_of(2).then_some(id)
}

#[redis_cached(ttl = 600, name = "result_option_fn")]
async fn find_result(id: u64, #[cache(skip)] calls: &Calls) -> Result<Option<u64>, LoadError> {
    calls.bump();
    match id {
        0 => Err(LoadError("zero".into())),
        id if id % 2 == 0 => Ok(Some(id)),
        _ => Ok(None),
    }
}

#[tokio::test]
async fn option_none_is_cached_with_its_own_ttl_unless_disabled() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(find(3, &calls).await, None);
            cache.wait_for_writes().await;
            assert_eq!(find(3, &calls).await, None);
            assert_eq!(calls.get(), 1, "None is cached");
            let none_ttl = pttl(&server, &find_key(3)).await;
            assert!(
                none_ttl > 0 && none_ttl <= 30_000,
                "none_ttl applied: {none_ttl}"
            );
            assert_eq!(find(4, &calls).await, Some(4));
            cache.wait_for_writes().await;
            assert!(
                pttl(&server, &find_key(4)).await > 30_000,
                "values get the full ttl"
            );

            let calls = Calls::default();
            assert_eq!(find_uncached_none(3, &calls).await, None);
            assert_eq!(find_uncached_none(3, &calls).await, None);
            assert_eq!(calls.get(), 2, "cache_none = false: None is not cached");
        })
        .await;
}

#[tokio::test]
async fn result_option_caches_ok_none_but_not_err() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(find_result(1, &calls).await, Ok(None));
            cache.wait_for_writes().await;
            assert_eq!(find_result(1, &calls).await, Ok(None));
            assert_eq!(calls.get(), 1);
            let ttl = pttl(&server, &find_result_key(1)).await;
            assert!(
                (1..=60_000).contains(&ttl),
                "negative TTL defaults to min(ttl, 60s): {ttl}"
            );
            assert_eq!(find_result(2, &calls).await, Ok(Some(2)));
            assert_eq!(find_result(2, &calls).await, Ok(Some(2)));
            assert_eq!(calls.get(), 2);
            assert!(find_result(0, &calls).await.is_err());
            assert!(find_result(0, &calls).await.is_err());
            assert_eq!(calls.get(), 4);
        })
        .await;
}

struct Repo {
    tenant: String,
    calls: Calls,
}

impl Repo {
    #[redis_cached(ttl = 60, key = "{self.tenant}:{id}")]
    async fn by_tenant(&self, id: u64) -> String {
        self.calls.bump();
        format!("{}/{id}", self.tenant)
    }

    #[redis_cached(ttl = 60, name = "repo::named")]
    async fn named(&self, id: u64) -> String {
        self.calls.bump();
        format!("named/{id}")
    }

    #[redis_cached(ttl = 60, name = "repo::owned")]
    async fn owned(self: Arc<Self>, id: u64) -> u64 {
        self.calls.bump();
        id
    }
}

#[tokio::test]
async fn methods_use_their_name_or_key_and_helpers_are_methods() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    cache
        .scope(async {
            let a = Repo {
                tenant: "a".into(),
                calls: Calls::default(),
            };
            let b = Repo {
                tenant: "b".into(),
                calls: Calls::default(),
            };
            assert_eq!(a.by_tenant(1).await, "a/1");
            assert_eq!(a.by_tenant(1).await, "a/1");
            assert_eq!(
                b.by_tenant(1).await,
                "b/1",
                "self fields in the template keep tenants apart"
            );
            assert_eq!((a.calls.get(), b.calls.get()), (1, 1));
            assert!(
                a.by_tenant_key(1).ends_with(":{a:1}"),
                "{}",
                a.by_tenant_key(1)
            );

            // Without a template, self is not part of the key: instances share entries.
            assert_eq!(a.named(7).await, "named/7");
            assert_eq!(b.named(7).await, "named/7");
            assert_eq!(b.calls.get(), 1, "b was served a's entry");
            b.named_invalidate(7).await.expect("invalidate");
            b.named(7).await;
            assert_eq!(b.calls.get(), 2);

            let owned = Arc::new(Repo {
                tenant: "c".into(),
                calls: Calls::default(),
            });
            assert_eq!(owned.clone().owned(3).await, 3);
            assert_eq!(owned.clone().owned(3).await, 3);
            assert_eq!(owned.calls.get(), 1);
        })
        .await;
}

#[redis_cached(ttl = 60, name = "generic_default")]
async fn default_of<T>(id: u64, #[cache(skip)] calls: &Calls) -> T
where
    T: Default + Serialize + serde::de::DeserializeOwned,
{
    calls.bump();
    let _ = id;
    T::default()
}

#[redis_cached(ttl = 60, name = "generic_arg")]
async fn echo<T: Serialize + serde::de::DeserializeOwned + Clone>(
    value: T,
    #[cache(skip)] calls: &Calls,
) -> T {
    calls.bump();
    value
}

#[tokio::test]
async fn generic_functions_keep_instantiations_apart() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(default_of::<u64>(1, &calls).await, 0);
            assert_eq!(default_of::<String>(1, &calls).await, "");
            assert_eq!(default_of::<Vec<u8>>(1, &calls).await, Vec::<u8>::new());
            assert_eq!(calls.get(), 3, "each type parameter has its own entry");
            assert_eq!(default_of::<u64>(1, &calls).await, 0);
            assert_eq!(calls.get(), 3);
            assert_ne!(default_of_key::<u64>(1), default_of_key::<String>(1));

            let calls = Calls::default();
            assert_eq!(echo(5u8, &calls).await, 5);
            assert_eq!(echo(5u64, &calls).await, 5);
            assert_eq!(
                calls.get(),
                2,
                "same value, different type: different entries"
            );
        })
        .await;
}

#[redis_cached(ttl = 60, name = "patterns")]
async fn patterns(
    (a, b): (u32, u32),
    name: &str,
    items: &[u8],
    #[cache(skip)] calls: &Calls,
) -> String {
    calls.bump();
    format!("{a}{b}{name}{}", items.len())
}

#[redis_cached(ttl = 60, name = "impl_arg")]
async fn impl_arg(
    value: impl Serialize + std::fmt::Display,
    #[cache(skip)] calls: &Calls,
) -> String {
    calls.bump();
    value.to_string()
}

#[tokio::test]
async fn reference_pattern_and_impl_trait_arguments() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(patterns((1, 2), "x", &[1, 2, 3], &calls).await, "12x3");
            assert_eq!(patterns((1, 2), "x", &[1, 2, 3], &calls).await, "12x3");
            assert_eq!(patterns((2, 1), "x", &[1, 2, 3], &calls).await, "21x3");
            assert_eq!(calls.get(), 2);
            assert_eq!(
                patterns_key((1, 2), "x", &[1, 2, 3]),
                "test:patterns:v1:{(1,2),x,[1,2,3]}"
            );

            let calls = Calls::default();
            assert_eq!(impl_arg(7u8, &calls).await, "7");
            assert_eq!(impl_arg("7", &calls).await, "7");
            assert_eq!(
                calls.get(),
                2,
                "impl Trait arguments of different types do not share entries"
            );
        })
        .await;
}

#[redis_cached(ttl = 60, key = "user:{id}", name = "helpers")]
async fn helper_target(id: u64, #[cache(skip)] calls: &Calls) -> Result<User, LoadError> {
    let n = calls.bump();
    Ok(User {
        id,
        name: format!("load{n}"),
    })
}

#[tokio::test]
async fn generated_helpers_invalidate_put_refresh_and_key() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            assert_eq!(helper_target_key(9), "test:helpers:v1:{user:9}");
            assert_eq!(
                helper_target(9, &calls).await.map(|u| u.name),
                Ok("load1".into())
            );

            helper_target_invalidate(9).await.expect("invalidate");
            assert_eq!(
                pttl(&server, &helper_target_key(9)).await,
                -2,
                "entry is gone"
            );
            assert_eq!(
                helper_target(9, &calls).await.map(|u| u.name),
                Ok("load2".into())
            );

            let put = User {
                id: 9,
                name: "put".into(),
            };
            helper_target_put(9, &put).await.expect("put");
            assert_eq!(helper_target(9, &calls).await, Ok(put));
            assert_eq!(calls.get(), 2, "a put value is served without loading");
            assert!(
                pttl(&server, &helper_target_key(9)).await > 0,
                "put entries expire"
            );

            let refreshed = helper_target_refresh(9, &calls)
                .await
                .expect("refresh stores");
            assert_eq!(refreshed.map(|u| u.name), Ok("load3".into()));
            assert_eq!(
                helper_target(9, &calls).await.map(|u| u.name),
                Ok("load3".into())
            );
            assert_eq!(
                calls.get(),
                3,
                "refresh reloads once and the next call hits"
            );
        })
        .await;
}

static DEDICATED: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();

fn dedicated_cache() -> &'static Cache {
    DEDICATED.get().expect("dedicated cache set by the test")
}

#[redis_cached(ttl = 60, name = "explicit", cache = dedicated_cache())]
async fn with_explicit_cache(id: u64, #[cache(skip)] calls: &Calls) -> u64 {
    calls.bump();
    id
}

#[tokio::test]
async fn cache_expr_overrides_the_default() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .namespace("explicit")
        .build()
        .await
        .expect("build");
    assert!(DEDICATED.set(cache.clone()).is_ok());
    let calls = Calls::default();
    // No scope and nothing installed: the function still uses its own cache.
    with_explicit_cache(1, &calls).await;
    cache.wait_for_writes().await;
    with_explicit_cache(1, &calls).await;
    assert_eq!(calls.get(), 1);
    assert_eq!(with_explicit_cache_key(1), "explicit:explicit:v1:{1}");
    assert_eq!(cache.stats().hits, 1);
}

#[tokio::test]
async fn without_a_cache_calls_run_uncached_and_helpers_fail() {
    // This binary never installs a process-wide cache, and this test uses no scope.
    let calls = Calls::default();
    assert_eq!(load_user(1, &calls).await.id, 1);
    assert_eq!(load_user(1, &calls).await.id, 1);
    assert_eq!(calls.get(), 2);
    assert!(matches!(
        load_user_invalidate(1).await,
        Err(Error::NotInstalled)
    ));
    assert!(matches!(
        load_user_refresh(1, &calls).await,
        Err(Error::NotInstalled)
    ));
    let user = User {
        id: 1,
        name: "x".into(),
    };
    assert!(matches!(
        load_user_put(1, &user).await,
        Err(Error::NotInstalled)
    ));
}

#[redis_cached(ttl = 600, name = "background_fill")]
async fn filled(id: u64, #[cache(skip)] calls: &Calls) -> u64 {
    calls.bump();
    id
}

async fn stored(server: &RedisServer, key: &str) -> bool {
    let mut conn = server.conn().await;
    redis::AsyncCommands::exists(&mut conn, key)
        .await
        .expect("EXISTS")
}

#[tokio::test]
async fn a_call_right_after_a_miss_waits_for_its_fill_instead_of_loading() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    cache
        .scope(async {
            for id in 0..200 {
                assert_eq!(filled(id, &calls).await, id);
                // Usually before the fill has landed: the flight is still open, so this call
                // gets the value from it.
                assert_eq!(filled(id, &calls).await, id);
            }
        })
        .await;
    assert_eq!(calls.get(), 200, "no second load of any key");
    cache.wait_for_writes().await;
    for id in 0..200 {
        let key = cache.scope(async { filled_key(id) }).await;
        assert!(stored(&server, &key).await, "{key} stored");
    }
}

#[tokio::test]
async fn without_background_fills_the_entry_is_stored_when_the_call_returns() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .namespace("test")
        .fill_in_background(false)
        .build()
        .await
        .expect("build");
    let calls = Calls::default();
    for id in 0..50 {
        cache.scope(filled(id, &calls)).await;
        let key = cache.scope(async { filled_key(id) }).await;
        assert!(stored(&server, &key).await, "{key} stored on return");
    }
}

#[tokio::test]
async fn wait_for_writes_returns_once_pending_fills_have_landed() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = Calls::default();
    for id in 0..50 {
        cache.scope(filled(id, &calls)).await;
        cache.wait_for_writes().await;
        // Counted by the fill task itself once Redis answered: a wait that returned early
        // would see the count lag behind.
        assert_eq!(cache.stats().stores, id + 1, "the fill of {id} had landed");
        let key = cache.scope(async { filled_key(id) }).await;
        assert!(stored(&server, &key).await, "{key} stored");
    }
}

#[redis_cached(ttl = 600, tags = ["team:{team}"], name = "peek_view")]
async fn team_view(id: u64, team: u64, #[cache(skip)] calls: &Calls) -> User {
    calls.bump();
    User {
        id,
        name: format!("team{team}"),
    }
}

/// `NAME_peek` answers what a call would be served from the cache and never runs the
/// function: nothing before a fill, the value after a call or a put, nothing after an
/// invalidation or a tag invalidation; the return type's rules carry over (a cached `None`
/// is `Some(None)`, a cached `Ok` is `Some(Ok(..))`).
#[tokio::test]
async fn peek_reads_without_loading() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    cache
        .scope(async {
            let calls = Calls::default();
            assert_eq!(
                team_view_peek(1, 7).await.expect("peek"),
                None,
                "nothing yet"
            );
            let loaded = team_view(1, 7, &calls).await;
            Cache::current().unwrap().wait_for_writes().await;
            assert_eq!(team_view_peek(1, 7).await.expect("peek"), Some(loaded));
            Cache::current()
                .unwrap()
                .invalidate_tags(["team:7"])
                .await
                .expect("tags");
            assert_eq!(
                team_view_peek(1, 7).await.expect("peek"),
                None,
                "tag invalidated"
            );
            let put = User {
                id: 1,
                name: "put".into(),
            };
            team_view_put(1, 7, &put).await.expect("put");
            assert_eq!(team_view_peek(1, 7).await.expect("peek"), Some(put));
            team_view_invalidate(1, 7).await.expect("invalidate");
            assert_eq!(
                team_view_peek(1, 7).await.expect("peek"),
                None,
                "invalidated"
            );
            assert_eq!(calls.get(), 1, "peek never loads");

            let calls = Calls::default();
            assert_eq!(find(405, &calls).await, None);
            Cache::current().unwrap().wait_for_writes().await;
            assert_eq!(
                find_peek(405).await.expect("peek"),
                Some(None),
                "a cached None"
            );
            assert_eq!(fallible(3, false, &calls).await, Ok(30));
            Cache::current().unwrap().wait_for_writes().await;
            assert_eq!(fallible_peek(3, false).await.expect("peek"), Some(Ok(30)));
            assert_eq!(fallible_peek(3, true).await.expect("peek"), None);
        })
        .await;
    let uninstalled = team_view_peek(1, 7).await;
    assert!(
        matches!(uninstalled, Err(Error::NotInstalled)),
        "{uninstalled:?}"
    );
}
