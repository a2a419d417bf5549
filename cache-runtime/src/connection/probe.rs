//! The background probe of an open breaker: one task per node, `PING` sent to that node (by
//! address on a cluster, so a dead master's probe never lands on a live one), once per period
//! with jitter (at once when Sentinel names a new master), followed 50 and 150 ms later by two
//! more while it fails (the client reconnects in the background after the first). The first
//! answer closes the breaker. The task ends when the breaker closes, the node leaves the
//! cluster's map, the cache is dropped, or its runtime shuts down; then the next rejected call
//! starts a new one.

use std::{sync::Arc, time::Duration};

use super::{Connection, nodes::Node};

/// After a failed probe, the delays of the follow-up probes: the client reconnects in the
/// background after a failure, so a restarted server is found within about 150 ms of the
/// period's probe rather than a whole period later.
const FOLLOW_UPS: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(100)];

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
        // Under Sentinel, a new master is probed at once rather than a period later.
        let mut switched = self.backend.master_epochs();
        // Built before the spawn: a task dropped before its first poll still frees the role.
        let ended = ProberEnded(node);
        runtime.spawn(async move {
            let node = &ended.0;
            loop {
                let pause = tokio::time::sleep(node.breaker.next_probe_in());
                match &mut switched {
                    Some(epochs) => {
                        tokio::select! {
                            () = pause => {}
                            _ = epochs.changed() => {}
                        }
                    }
                    None => pause.await,
                }
                let Some(conn) = me.upgrade() else { return };
                if !node.breaker.is_open() || !conn.nodes.contains(node) {
                    return;
                }
                for delay in std::iter::once(Duration::ZERO).chain(FOLLOW_UPS) {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
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
