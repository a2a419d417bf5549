//! The background probe of an open breaker: one task per node, `PING` sent to that node (by
//! address on a cluster, so a dead master's probe never lands on a live one), once per period
//! with jitter, and a second time 50 ms after a failure (the client reconnects in the
//! background after the first). The first answer closes the breaker. The task ends when the
//! breaker closes, the node leaves the cluster's map, the cache is dropped, or its runtime
//! shuts down; then the next rejected call starts a new one.

use std::{sync::Arc, time::Duration};

use super::{Connection, nodes::Node};

/// How long after a failed probe a second one follows.
const RECONNECT_PROBE: Duration = Duration::from_millis(50);

/// Frees a node's background probe role when its task ends (or is dropped unpolled).
struct ProberEnded(Arc<Node>);

impl Drop for ProberEnded {
    fn drop(&mut self) {
        self.0.breaker.prober_ended();
    }
}

impl Connection {
    /// Starts the background probe of a node whose breaker is open, unless one runs (or there
    /// is no runtime to run it on: then callers probe).
    pub(super) fn ensure_prober(&self, node: &Node) {
        if node.breaker.has_prober() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(node) = self.nodes.shared(node) else {
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
                if !node.breaker.is_open() || !conn.nodes.contains(node) {
                    return;
                }
                for attempt in 0..2 {
                    if attempt > 0 {
                        tokio::time::sleep(RECONNECT_PROBE).await;
                    }
                    let addr = (!node.addr.is_empty()).then_some(node.addr.as_str());
                    let answer = tokio::time::timeout(conn.timeout, conn.backend.ping(addr)).await;
                    match answer {
                        Ok(Ok(())) => {
                            node.breaker.probed();
                            conn.answered(node);
                            return;
                        }
                        // The node did not answer: a report, and callers keep away.
                        Err(_) => node.breaker.probed(),
                        Ok(Err(err)) if super::is_link_failure(&err) => node.breaker.probed(),
                        // The probe could not be sent (the client has no connection under that
                        // address): no report, so callers probe through their own requests.
                        Ok(Err(_)) => {}
                    }
                }
            }
        });
    }
}
