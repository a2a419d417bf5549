//! [`Connection`]: the one owner of the link to the store. Every store operation is a method
//! here, already under the operation deadline and the node's breaker, counted, and reported
//! as connection events; the read path never sees a raw backend.

mod breaker;
mod events;

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::broadcast;

use self::breaker::{Breaker, Permit};
pub use self::events::ConnectionEvent;
use self::events::Events;
use crate::{
    Error,
    store::{Backend, ClaimReply, EntryKeys, FillReply, FillValue, Read, StoreFuture, StoredBytes},
};

/// How the breaker behaves; from the builder.
pub(crate) struct BreakerConfig {
    pub(crate) threshold: u32,
    pub(crate) probe_every: Duration,
}

/// Failures seen by the connection, for [`Stats`](crate::Stats).
#[derive(Default)]
pub(crate) struct Failures {
    pub(crate) backend_errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) rejections: AtomicU64,
}

pub(crate) struct Connection {
    backend: Box<dyn Backend>,
    timeout: Duration,
    breaker: Breaker,
    events: Events,
    pub(crate) failures: Failures,
    namespace: String,
    me: Weak<Connection>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Whether an error says the link is down (as opposed to an error reply from a live server).
fn is_link_failure(err: &Error) -> bool {
    match err {
        Error::Timeout(_) => true,
        Error::Backend(e) => {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
        }
        _ => false,
    }
}

impl Connection {
    pub(crate) fn new(
        backend: Box<dyn Backend>,
        timeout: Duration,
        breaker: BreakerConfig,
        namespace: String,
    ) -> Arc<Connection> {
        Arc::new_cyclic(|me| Connection {
            backend,
            timeout,
            breaker: Breaker::new(breaker.threshold, breaker.probe_every, timeout),
            events: Events::default(),
            failures: Failures::default(),
            namespace,
            me: me.clone(),
        })
    }

    /// Whether operations cross the network.
    pub(crate) fn is_network(&self) -> bool {
        self.backend.is_network()
    }

    /// Whether the store is unreachable right now: its breaker is open or its last call
    /// failed. Then nothing can be checked against it.
    pub(crate) fn is_down(&self) -> bool {
        self.backend.is_network() && self.breaker.is_failing()
    }

    /// Whether the breaker keeps calls away.
    pub(crate) fn is_degraded(&self) -> bool {
        self.breaker.is_open()
    }

    pub(crate) fn breaker_opened(&self) -> u64 {
        self.breaker.opened_total()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    pub(crate) fn redis_connection(&self) -> Option<redis::aio::ConnectionManager> {
        self.backend.redis_connection()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one operation behind the breaker and the deadline. The operation's future is
    /// built only once the breaker lets it run.
    async fn run<'a, T>(
        &'a self,
        op: &'static str,
        start: impl FnOnce(&'a dyn Backend) -> StoreFuture<'a, T>,
    ) -> Result<T, Error> {
        if !self.backend.is_network() {
            return start(&*self.backend).await;
        }
        let probe = match self.breaker.permit() {
            Permit::Call => None,
            Permit::Probe(guard) => Some(guard),
            Permit::Reject => {
                bump(&self.failures.rejections);
                self.ensure_prober();
                return Err(Error::Unavailable);
            }
        };
        let result = match tokio::time::timeout(self.timeout, start(&*self.backend)).await {
            Ok(Err(Error::Backend(err))) if err.is_timeout() => Err(Error::Timeout(self.timeout)),
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.timeout)),
        };
        if probe.is_some() {
            self.breaker.probed();
        }
        match &result {
            Ok(_) => self.answered(),
            Err(err) => self.failed(op, err),
        }
        drop(probe);
        result
    }

    fn answered(&self) {
        if self.breaker.on_success() {
            tracing::info!(namespace = %self.namespace, "redis reachable again; circuit breaker closed");
        }
        self.events.answered();
    }

    fn failed(&self, op: &'static str, err: &Error) {
        if let Error::Timeout(_) = err {
            bump(&self.failures.timeouts);
        }
        bump(&self.failures.backend_errors);
        if is_link_failure(err) {
            self.events.lost();
        }
        if self.breaker.on_failure() {
            tracing::warn!(
                namespace = %self.namespace, op, error = %err,
                "redis failing; circuit breaker open, calls run their loaders uncached"
            );
            self.ensure_prober();
        } else {
            tracing::warn!(namespace = %self.namespace, op, error = %err, "redis command failed");
        }
    }

    /// Starts the background probe of an open breaker, unless one runs (or there is no
    /// runtime to run it on: then callers probe).
    fn ensure_prober(&self) {
        if self.breaker.has_prober() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.breaker.start_prober() {
            return;
        }
        let me = self.me.clone();
        runtime.spawn(async move {
            struct Ended(Weak<Connection>);
            impl Drop for Ended {
                fn drop(&mut self) {
                    if let Some(conn) = self.0.upgrade() {
                        conn.breaker.prober_ended();
                    }
                }
            }
            let _ended = Ended(me.clone());
            loop {
                let Some(wait) = me.upgrade().map(|c| c.breaker.next_probe_in()) else {
                    return;
                };
                tokio::time::sleep(wait).await;
                let Some(conn) = me.upgrade() else { return };
                if !conn.breaker.is_open() {
                    return;
                }
                let answer = tokio::time::timeout(conn.timeout, conn.backend.ping()).await;
                conn.breaker.probed();
                if let Ok(Ok(())) = answer {
                    conn.answered();
                    return;
                }
            }
        });
    }

    pub(crate) async fn read(
        &self,
        key: &str,
        tags: &[String],
        with_ttl: bool,
    ) -> Result<Read, Error> {
        self.run("get", |b| b.read(key, tags, with_ttl)).await
    }

    pub(crate) async fn tag_versions(&self, tags: &[String]) -> Result<Vec<Option<u64>>, Error> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        self.run("tags", |b| b.tag_versions(tags)).await
    }

    /// Captures tag versions before a load (none to capture costs no request).
    pub(crate) async fn capture_tags(
        &self,
        tags: &[String],
        ttl: Duration,
    ) -> Result<Vec<u64>, Error> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        self.run("capture_tags", |b| b.capture_tags(tags, ttl))
            .await
    }

    pub(crate) async fn delete_tags(&self, tags: &[String]) -> Result<(), Error> {
        self.run("invalidate_tags", |b| b.delete_tags(tags)).await
    }

    pub(crate) async fn claim(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        lock_ttl: Duration,
        candidate: &str,
        generation_ttl: Duration,
    ) -> Result<ClaimReply, Error> {
        self.run("claim", |b| {
            b.claim(keys, token, lock_ttl, candidate, generation_ttl)
        })
        .await
    }

    pub(crate) async fn poll(
        &self,
        keys: &EntryKeys<'_>,
    ) -> Result<(Option<StoredBytes>, bool), Error> {
        self.run("poll", |b| b.poll(keys)).await
    }

    pub(crate) async fn generation(&self, keys: &EntryKeys<'_>) -> Result<Option<String>, Error> {
        self.run("generation", |b| b.generation(keys)).await
    }

    pub(crate) async fn fill(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        generation: &str,
        value: FillValue<'_>,
        ttl: Duration,
    ) -> Result<FillReply, Error> {
        self.run("fill", |b| b.fill(keys, token, generation, value, ttl))
            .await
    }

    pub(crate) async fn new_generation(
        &self,
        keys: &EntryKeys<'_>,
        generation: &str,
        generation_ttl: Duration,
        value: Option<(&[u8], Duration)>,
        drop_entry: bool,
    ) -> Result<(), Error> {
        self.run("generation", |b| {
            b.new_generation(keys, generation, generation_ttl, value, drop_entry)
        })
        .await
    }

    pub(crate) async fn renew(
        &self,
        lock: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, Error> {
        self.run("renew", |b| b.renew(lock, token, ttl)).await
    }

    pub(crate) async fn unlock(&self, lock: &str, token: &str) -> Result<bool, Error> {
        self.run("unlock", |b| b.unlock(lock, token)).await
    }
}
