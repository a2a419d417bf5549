//! Concurrent plain hits share `MGET`s; a batch whose sender is cancelled still answers
//! everyone in it, without timeouts and without running loaders.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use redis_cached::{Cache, redis_cached};
use tokio::task::JoinSet;

use crate::{Calls, redis_cache, support::RedisServer};

#[redis_cached(ttl = 600, name = "batch::plain")]
async fn plain(id: u64, #[cache(skip)] calls: std::sync::Arc<Calls>) -> u64 {
    calls.bump();
    id * 10
}

/// Polls a future once, as an executor would before the future yields.
fn poll_once<F: Future>(future: &mut Pin<Box<F>>) -> Poll<F::Output> {
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

async fn stored(cache: &Cache, ids: std::ops::Range<u64>, calls: &std::sync::Arc<Calls>) {
    for id in ids {
        cache.scope(plain(id, calls.clone())).await;
    }
    cache.wait_for_writes().await;
}

// Current-thread on purpose: all 100 callers are ready when the first one yields, so the
// number of MGETs is deterministic (on two workers, a second batch may start on the other one).
#[tokio::test]
async fn concurrent_hits_share_mgets_and_each_gets_its_own_value() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = std::sync::Arc::new(Calls::default());
    stored(&cache, 0..100, &calls).await;
    crate::reset_command_counts(&server).await;

    // One current-thread runtime: all 100 callers are ready when the first one yields.
    let mut set = JoinSet::new();
    for id in 0..100 {
        let (cache, calls) = (cache.clone(), calls.clone());
        set.spawn(async move { (id, cache.scope(plain(id, calls)).await) });
    }
    for (id, value) in set.join_all().await {
        assert_eq!(value, id * 10, "caller {id} got its own key's value");
    }
    assert_eq!(calls.get(), 100, "all hits, no loads");
    let sent = crate::command_counts(&server).await;
    let mgets = sent.get("mget").copied().unwrap_or(0);
    let gets = sent.get("get").copied().unwrap_or(0);
    // The first caller is alone and sends its GET at once; the other 99 are batched.
    assert!(
        (2..=10).contains(&mgets) && gets <= 1,
        "100 hits as a few MGETs of at most 64 keys, not 100 GETs: {sent:?}"
    );
}

// Current-thread on purpose: the test sequences the callers by polling them by hand.
#[tokio::test]
async fn a_cancelled_batch_sender_leaves_no_caller_waiting() {
    let server = RedisServer::start();
    let cache = redis_cache(&server).await;
    let calls = std::sync::Arc::new(Calls::default());
    stored(&cache, 1..4, &calls).await;

    // The first caller is alone and sends its GET at once. With it in flight, the second
    // opens a batch and yields; the third joins that batch; then the second is cancelled
    // before it sends the batch.
    let mut first = Box::pin(cache.scope(plain(1, calls.clone())));
    assert!(poll_once(&mut first).is_pending(), "the first GET is out");
    let mut second = Box::pin(cache.scope(plain(2, calls.clone())));
    assert!(poll_once(&mut second).is_pending(), "the second yields");
    let mut third = Box::pin(cache.scope(plain(3, calls.clone())));
    assert!(poll_once(&mut third).is_pending(), "the third waits");
    drop(second);

    assert_eq!(third.await, 30, "the third caller asked on its own");
    assert_eq!(first.await, 10);
    // Later callers start a new batch rather than joining the abandoned one.
    let mut fourth = Box::pin(cache.scope(plain(1, calls.clone())));
    assert!(poll_once(&mut fourth).is_pending());
    assert_eq!(cache.scope(plain(2, calls.clone())).await, 20);
    assert_eq!(fourth.await, 10);
    assert_eq!(calls.get(), 3, "no loader ran");
    let stats = cache.stats();
    assert_eq!(
        (stats.timeouts, stats.backend_errors),
        (0, 0),
        "nobody waited out the timeout: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_batching_every_hit_is_its_own_get() {
    let server = RedisServer::start();
    let cache = crate::unbatched_cache(&server).await;
    let calls = std::sync::Arc::new(Calls::default());
    stored(&cache, 0..20, &calls).await;
    crate::reset_command_counts(&server).await;
    let mut set = JoinSet::new();
    for id in 0..20 {
        let (cache, calls) = (cache.clone(), calls.clone());
        set.spawn(async move { cache.scope(plain(id, calls)).await });
    }
    set.join_all().await;
    let sent = crate::command_counts(&server).await;
    assert_eq!(sent.get("get"), Some(&20), "{sent:?}");
    assert!(!sent.contains_key("mget"), "{sent:?}");
}
