//! [`Connection`]: the one owner of the link to the store. Every store operation is a method
//! here, already under the operation deadline and the breaker of the node it goes to, counted,
//! and reported as connection events; the read path never sees a raw backend.
//!
//! Each node has its own breaker (one for a single node, one per master on a cluster, found by
//! the key's slot in a `CLUSTER SLOTS` map read in the background), so one dead shard does not
//! switch the others off. An operation that touches several nodes (an entry with its tags, a
//! tag invalidation) runs only while all their breakers are closed, and when it fails it moves
//! none of them: it cannot tell which node failed, and a healthy node must not be opened for
//! another's fault. Single-key operations (claims, fills, tag captures' own keys) attribute
//! failures to their node.

mod breaker;
mod events;
mod nodes;
mod topology;

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::broadcast;

use self::breaker::{Breaker, Permit};
pub use self::events::ConnectionEvent;
pub(crate) use self::nodes::SlotRange;
use self::nodes::{Node, Nodes, Route, Targets};
use crate::{
    Error,
    store::{Backend, ClaimReply, EntryKeys, FillReply, FillValue, Read, StoreFuture, StoredBytes},
};

/// How long after a failed probe a second one follows (see the prober).
const RECONNECT_PROBE: Duration = Duration::from_millis(50);

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
    breaker: BreakerConfig,
    nodes: Nodes,
    events: events::Sender,
    pub(crate) failures: Failures,
    /// Times a node's breaker opened.
    opened: AtomicU64,
    namespace: String,
    me: Weak<Connection>,
    topology: topology::Refresh,
}

/// Counts an operation dropped before it finished, once it had run half its timeout.
struct Cancelled<'a> {
    conn: &'a Connection,
    targets: &'a Targets<'a>,
    started: Instant,
    armed: bool,
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        if self.armed && self.started.elapsed() >= self.conn.timeout / 2 {
            let err = Error::Timeout(self.conn.timeout);
            self.conn.failed("cancelled", &err, self.targets.single());
        }
    }
}

/// Frees a node's background probe role when its task ends (or is dropped unpolled).
struct ProberEnded(Arc<Node>);

impl Drop for ProberEnded {
    fn drop(&mut self) {
        self.0.breaker.prober_ended();
    }
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
        let first = Node::new(
            Breaker::new(breaker.threshold, breaker.probe_every, timeout),
            None,
            String::new(),
        );
        let nodes = if backend.is_cluster() {
            Nodes::Cluster {
                map: Default::default(),
                before_map: Arc::new(first),
            }
        } else {
            Nodes::Single(Arc::new(first))
        };
        Arc::new_cyclic(|me| Connection {
            backend,
            timeout,
            breaker,
            nodes,
            events: events::channel(),
            failures: Failures::default(),
            opened: AtomicU64::new(0),
            namespace,
            me: me.clone(),
            topology: topology::Refresh::default(),
        })
    }

    /// A node's state, for a master found in the slot map.
    fn new_node(&self, slot: u16, addr: &str) -> Node {
        Node::new(
            Breaker::new(
                self.breaker.threshold,
                self.breaker.probe_every,
                self.timeout,
            ),
            Some(slot),
            addr.to_owned(),
        )
    }

    /// Whether operations cross the network.
    pub(crate) fn is_network(&self) -> bool {
        self.backend.is_network()
    }

    /// Whether the node serving `key` is unreachable right now: its breaker is open or its
    /// last call failed on the link. Then nothing can be checked against it.
    pub(crate) fn is_down(&self, key: &str) -> bool {
        if !self.backend.is_network() {
            return false;
        }
        let mut failing = false;
        self.nodes
            .targets(Route::Key(key))
            .each(|node| failing |= node.breaker.is_failing());
        failing
    }

    /// Whether some node's breaker keeps calls away.
    pub(crate) fn is_degraded(&self) -> bool {
        self.nodes.all().iter().any(|n| n.breaker.is_open())
    }

    pub(crate) fn breaker_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
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

    /// Runs one operation behind the breakers of the nodes it touches and the deadline. The
    /// operation's future is built only once the breakers let it run.
    async fn run<'a, T>(
        &'a self,
        op: &'static str,
        route: Route<'_>,
        start: impl FnOnce(&'a dyn Backend) -> StoreFuture<'a, T>,
    ) -> Result<T, Error> {
        if !self.backend.is_network() {
            return start(&*self.backend).await;
        }
        self.topology.ensure(self);
        let targets = self.nodes.targets(route);
        let probe = match &targets {
            Targets::One(node) => match node.breaker.permit() {
                Permit::Call => None,
                Permit::Probe(guard) => Some(guard),
                Permit::Reject => return self.rejected(node),
            },
            Targets::Owned(nodes) => {
                // Several nodes: only while every breaker is closed, and never as a probe.
                if let Some(open) = nodes.iter().find(|n| n.breaker.is_open()) {
                    return self.rejected(open);
                }
                None
            }
        };
        // A caller cancelled while the node is slow (an outer request timeout shorter than
        // ours) still counts, or a hung node would never open its breaker.
        let mut cancelled = Cancelled {
            conn: self,
            targets: &targets,
            started: Instant::now(),
            armed: true,
        };
        let result = match tokio::time::timeout(self.timeout, start(&*self.backend)).await {
            Ok(Err(Error::Backend(err))) if err.is_timeout() => Err(Error::Timeout(self.timeout)),
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.timeout)),
        };
        cancelled.armed = false;
        if let Some(node) = targets.single()
            && probe.is_some()
        {
            node.breaker.probed();
        }
        match &result {
            Ok(_) => targets.each(|node| self.answered(node)),
            Err(err) => self.failed(op, err, targets.single()),
        }
        drop(probe);
        result
    }

    fn rejected<T>(&self, node: &Node) -> Result<T, Error> {
        bump(&self.failures.rejections);
        self.ensure_prober(node);
        Err(Error::Unavailable)
    }

    fn answered(&self, node: &Node) {
        if node.breaker.on_success() {
            tracing::info!(namespace = %self.namespace, node = %node.addr, "redis reachable again; circuit breaker closed");
        }
        node.link.answered(&self.events);
    }

    /// Counts a failure; moves the breaker of `node` when the operation touched only it.
    fn failed(&self, op: &'static str, err: &Error, node: Option<&Node>) {
        if let Error::Timeout(_) = err {
            bump(&self.failures.timeouts);
        }
        bump(&self.failures.backend_errors);
        let Some(node) = node else {
            tracing::warn!(namespace = %self.namespace, op, error = %err, "redis command across nodes failed");
            return;
        };
        if !is_link_failure(err) {
            // An error reply from a live node (out of memory, read-only, a script error) says
            // nothing about the link: counted, but it neither opens the breaker nor makes the
            // node "down" (when outcomes could not be checked).
            tracing::warn!(namespace = %self.namespace, node = %node.addr, op, error = %err, "redis command failed");
            return;
        }
        node.link.lost(&self.events);
        if node.breaker.on_failure() {
            self.opened.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                namespace = %self.namespace, node = %node.addr, op, error = %err,
                "redis failing; circuit breaker open, calls run their loaders uncached"
            );
            self.ensure_prober(node);
            self.topology.soon();
        } else {
            tracing::warn!(namespace = %self.namespace, node = %node.addr, op, error = %err, "redis command failed");
        }
    }

    /// Starts the background probe of a node whose breaker is open, unless one runs (or there
    /// is no runtime to run it on: then callers probe).
    fn ensure_prober(&self, node: &Node) {
        if node.breaker.has_prober() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(node) = self.node_arc(node) else {
            return;
        };
        if !node.breaker.start_prober() {
            return;
        }
        let me = self.me.clone();
        // Built before the spawn: a task dropped before its first poll still frees the role.
        let ended = ProberEnded(node);
        runtime.spawn(async move {
            let node = &ended.0;
            loop {
                tokio::time::sleep(node.breaker.next_probe_in()).await;
                let Some(conn) = me.upgrade() else { return };
                if !node.breaker.is_open() {
                    return;
                }
                // A probe that finds the connection dropped makes the client reconnect in the
                // background; a second probe shortly after tells whether that worked, instead of
                // a whole period later.
                for attempt in 0..2 {
                    if attempt > 0 {
                        tokio::time::sleep(RECONNECT_PROBE).await;
                    }
                    let ping = conn.backend.ping(node.probe_slot);
                    let answer = tokio::time::timeout(conn.timeout, ping).await;
                    node.breaker.probed();
                    if let Ok(Ok(())) = answer {
                        conn.answered(node);
                        return;
                    }
                }
            }
        });
    }

    /// The shared handle of a node (its probe task outlives the call that starts it).
    fn node_arc(&self, node: &Node) -> Option<Arc<Node>> {
        self.nodes
            .all()
            .into_iter()
            .find(|n| std::ptr::eq(Arc::as_ptr(n), node))
    }

    /// Reads the cluster's slot map and installs it; sends `TopologyChanged` when it changed.
    pub(crate) async fn refresh_topology(&self) {
        let read = tokio::time::timeout(self.timeout, self.backend.slot_map()).await;
        let Ok(Ok(Some(ranges))) = read else {
            return;
        };
        if self
            .nodes
            .update(&ranges, |slot, addr| self.new_node(slot, addr))
        {
            tracing::info!(namespace = %self.namespace, masters = ranges.len(), "cluster slot map changed");
            let _ = self.events.send(ConnectionEvent::TopologyChanged);
        }
    }

    pub(crate) async fn read(
        &self,
        key: &str,
        tags: &[String],
        with_ttl: bool,
    ) -> Result<Read, Error> {
        self.run("get", Route::Keys(key, tags), |b| {
            b.read(key, tags, with_ttl)
        })
        .await
    }

    pub(crate) async fn tag_versions(&self, tags: &[String]) -> Result<Vec<Option<u64>>, Error> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        self.run("tags", Route::Tags(tags), |b| b.tag_versions(tags))
            .await
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
        self.run("capture_tags", Route::Tags(tags), |b| {
            b.capture_tags(tags, ttl)
        })
        .await
    }

    pub(crate) async fn delete_tags(&self, tags: &[String]) -> Result<(), Error> {
        self.run("invalidate_tags", Route::Tags(tags), |b| {
            b.delete_tags(tags)
        })
        .await
    }

    pub(crate) async fn claim(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        lock_ttl: Duration,
        candidate: &str,
        generation_ttl: Duration,
    ) -> Result<ClaimReply, Error> {
        self.run("claim", Route::Key(keys.entry), |b| {
            b.claim(keys, token, lock_ttl, candidate, generation_ttl)
        })
        .await
    }

    pub(crate) async fn poll(
        &self,
        keys: &EntryKeys<'_>,
    ) -> Result<(Option<StoredBytes>, bool), Error> {
        self.run("poll", Route::Key(keys.entry), |b| b.poll(keys))
            .await
    }

    pub(crate) async fn generation(&self, keys: &EntryKeys<'_>) -> Result<Option<String>, Error> {
        self.run("generation", Route::Key(keys.entry), |b| b.generation(keys))
            .await
    }

    pub(crate) async fn fill(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        generation: &str,
        value: FillValue<'_>,
        ttl: Duration,
    ) -> Result<FillReply, Error> {
        self.run("fill", Route::Key(keys.entry), |b| {
            b.fill(keys, token, generation, value, ttl)
        })
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
        self.run("generation", Route::Key(keys.entry), |b| {
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
        self.run("renew", Route::Key(lock), |b| b.renew(lock, token, ttl))
            .await
    }

    pub(crate) async fn unlock(&self, lock: &str, token: &str) -> Result<bool, Error> {
        self.run("unlock", Route::Key(lock), |b| b.unlock(lock, token))
            .await
    }
}
