//! [`Connection`]: the one owner of the link to the store. Every store operation is a method
//! here (`ops.rs`), already under the operation deadline and the breaker of the node it goes
//! to, counted, and reported as connection events; the read path never sees a raw backend.
//!
//! Each node has its own breaker: one for a single node, one per master on a cluster, found by
//! the key's slot in a `CLUSTER SLOTS` map read in the background (`topology.rs`), so one dead
//! shard does not switch the others off. Every operation goes to one node: on a cluster, an
//! entry read with its tags is one read per key (the cluster client would split an `MGET` per
//! slot anyway), so each failure is its own node's. While a breaker is open, a background task
//! probes its node (`probe.rs`).

mod breaker;
mod events;
mod nodes;
mod ops;
mod probe;
mod topology;
mod version;

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
use self::nodes::{Node, Nodes};
pub use self::version::MINIMUM_REDIS;
use crate::{
    Error,
    store::{Backend, StoreFuture},
    telemetry::LinkCounts,
};

/// How the breaker behaves; from the builder.
pub(crate) struct BreakerConfig {
    pub(crate) threshold: u32,
    pub(crate) probe_every: Duration,
}

impl BreakerConfig {
    /// A node at `addr` with a closed breaker whose probes may take `timeout`.
    fn node(&self, timeout: Duration, addr: &str) -> Node {
        Node::new(
            Breaker::new(self.threshold, self.probe_every, timeout),
            addr.to_owned(),
        )
    }
}

/// Failures seen by the connection, for [`Stats`](crate::Stats).
#[derive(Default)]
struct Failures {
    backend_errors: AtomicU64,
    timeouts: AtomicU64,
    rejections: AtomicU64,
}

pub(crate) struct Connection {
    backend: Box<dyn Backend>,
    timeout: Duration,
    breaker: BreakerConfig,
    nodes: Nodes,
    events: events::Sender,
    failures: Failures,
    /// Times a node's breaker opened.
    opened: AtomicU64,
    namespace: String,
    me: Weak<Connection>,
    topology: topology::Refresh,
    version: version::VersionGate,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Whether an operation failed because the node is unreachable: the link failed, or the open
/// breaker kept the call away (as opposed to an error reply from a live server).
pub(crate) fn is_unreachable(err: &Error) -> bool {
    matches!(err, Error::Unavailable) || is_link_failure(err)
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

/// Counts an operation its caller dropped half its timeout or more after it started (an outer
/// request timeout shorter than ours, against a hung server): without it a hung node would
/// never open its breaker. A caller that blocks its own thread past that while the answer waits
/// unread (blocking code in an async loader) is miscounted once; it takes `breaker_threshold`
/// such drops in a row, with no success between them, to open the breaker.
struct Cancelled<'a> {
    conn: &'a Connection,
    node: &'a Node,
    started: Instant,
    armed: bool,
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        if self.armed && self.started.elapsed() >= self.conn.timeout / 2 {
            self.conn.cancelled(self.node);
        }
    }
}

impl Connection {
    pub(crate) fn new(
        backend: Box<dyn Backend>,
        timeout: Duration,
        breaker: BreakerConfig,
        namespace: String,
    ) -> Arc<Connection> {
        let first = Arc::new(breaker.node(timeout, ""));
        let nodes = if backend.is_cluster() {
            Nodes::Cluster {
                map: Default::default(),
                before_map: first,
            }
        } else {
            Nodes::Single(first)
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
            version: version::VersionGate::default(),
        })
    }

    /// Whether operations cross the network.
    pub(crate) fn is_network(&self) -> bool {
        self.backend.is_network()
    }

    /// Whether every node serving `keys` is unreachable right now (its breaker is open or its
    /// last call failed on the link). Then nothing about those keys can be checked.
    pub(crate) fn is_down<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> bool {
        self.backend.is_network()
            && keys
                .into_iter()
                .all(|key| self.nodes.node_for(key).breaker.is_failing())
    }

    /// Whether some node's breaker keeps calls away.
    pub(crate) fn is_degraded(&self) -> bool {
        let mut open = false;
        self.nodes.each(|node| open |= node.breaker.is_open());
        open
    }

    /// What the connection counted, for [`Stats`](crate::Stats).
    pub(crate) fn counts(&self) -> LinkCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LinkCounts {
            backend_errors: get(&self.failures.backend_errors),
            timeouts: get(&self.failures.timeouts),
            breaker_opened: get(&self.opened),
            breaker_rejections: get(&self.failures.rejections),
            master_switches: self.backend.master_switches(),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    pub(crate) fn redis_connection(&self) -> Option<redis::aio::ConnectionManager> {
        self.backend.redis_connection()
    }

    /// Whether the store is one Redis node (by URL or through Sentinel).
    pub(crate) fn is_single_redis(&self) -> bool {
        self.backend.is_single_redis()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one operation on the node serving `key`, behind its breaker and the deadline. The
    /// operation's future is built only once the breaker lets it run.
    async fn run<'a, T>(
        &'a self,
        op: &'static str,
        key: &str,
        start: impl FnOnce(&'a dyn Backend) -> StoreFuture<'a, T>,
    ) -> Result<T, Error> {
        if !self.backend.is_network() {
            return start(&*self.backend).await;
        }
        if let Some(found) = self.version.too_old() {
            return Err(Error::UnsupportedServer {
                found: found.to_owned(),
                minimum: MINIMUM_REDIS,
            });
        }
        if let Nodes::Cluster { .. } = self.nodes {
            self.topology.ensure(self);
        }
        let node = self.nodes.node_for(key);
        let probe = match node.breaker.permit() {
            Permit::Call => None,
            Permit::Probe(guard) => Some(guard),
            Permit::Reject => {
                bump(&self.failures.rejections);
                self.ensure_prober(&node);
                return Err(Error::Unavailable);
            }
        };
        let mut cancelled = Cancelled {
            conn: self,
            node: &node,
            started: Instant::now(),
            armed: true,
        };
        let result = match tokio::time::timeout(self.timeout, start(&*self.backend)).await {
            Ok(Err(Error::Backend(err))) if err.is_timeout() => Err(Error::Timeout(self.timeout)),
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.timeout)),
        };
        cancelled.armed = false;
        if probe.is_some() {
            node.breaker.probed();
        }
        match &result {
            Ok(_) => self.answered(&node),
            Err(err) => self.failed(op, err, &node),
        }
        drop(probe);
        result
    }

    fn answered(&self, node: &Node) {
        self.version.check_after_answer(self);
        if node.breaker.on_success() {
            tracing::info!(namespace = %self.namespace, node = %node.addr, "redis reachable again; circuit breaker closed");
        }
        node.link.answered(&self.events);
    }

    /// Counts a failure; a link failure moves the node's breaker.
    fn failed(&self, op: &'static str, err: &Error, node: &Node) {
        if let Error::Timeout(_) = err {
            bump(&self.failures.timeouts);
        }
        bump(&self.failures.backend_errors);
        if !is_link_failure(err) {
            // An error reply from a live node (out of memory, read-only, a script error) says
            // nothing about the link: counted, but it neither opens the breaker nor makes the
            // node "down" (when outcomes could not be checked).
            tracing::warn!(namespace = %self.namespace, node = %node.addr, op, error = %err, "redis command failed");
            return;
        }
        node.link.lost(&self.events);
        self.backend.link_failed();
        if let Nodes::Cluster { .. } = self.nodes {
            self.topology.soon();
        }
        self.breaker_failure(op, err, node);
    }

    /// An operation dropped while the node was slow: a failure for the breaker, but no event
    /// (the link may be fine).
    fn cancelled(&self, node: &Node) {
        bump(&self.failures.timeouts);
        bump(&self.failures.backend_errors);
        self.backend.link_failed();
        self.breaker_failure("cancelled", &Error::Timeout(self.timeout), node);
    }

    fn breaker_failure(&self, op: &'static str, err: &Error, node: &Node) {
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

    /// Reads the cluster's slot map and installs it; sends `TopologyChanged` when it changed.
    pub(crate) async fn refresh_topology(&self) {
        let read = tokio::time::timeout(self.timeout, self.backend.slot_map()).await;
        let Ok(Ok(Some(ranges))) = read else {
            return;
        };
        if self
            .nodes
            .update(&ranges, |addr| self.breaker.node(self.timeout, addr))
        {
            tracing::info!(namespace = %self.namespace, ranges = ranges.len(), "cluster slot map changed");
            let _ = self.events.send(ConnectionEvent::TopologyChanged);
        }
    }
}
