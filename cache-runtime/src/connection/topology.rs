//! Keeping a cluster's slot map current: read at the first operation, every few seconds after
//! (every breaker probe period while a node's breaker is open), and soon after an operation
//! fails on the link (a failover moves slots to a promoted
//! replica; the cluster client may follow it before a breaker opens), at most every
//! [`MIN_GAP`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;

use super::Connection;

/// How often the slot map is re-read when nothing prompts it.
const PERIOD: Duration = Duration::from_secs(5);

/// The least time between two reads of the slot map.
const MIN_GAP: Duration = Duration::from_millis(100);

/// Lets a later operation start a new refresh task if this one is dropped (its runtime shut
/// down).
struct Ended(std::sync::Weak<Connection>);

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(conn) = self.0.upgrade() {
            conn.topology.running.store(false, Ordering::Release);
        }
    }
}

/// The refresh task of one connection.
#[derive(Default)]
pub(crate) struct Refresh {
    running: AtomicBool,
    /// Shared with the task, which holds no strong reference to the connection while it
    /// waits (a dropped cache's cluster client goes at once, not a period later).
    wake: Arc<Notify>,
}

impl Refresh {
    /// Starts the refresh task of a cluster connection (the caller checks it is one) unless it
    /// runs, or there is no runtime: then operations go through the connection's first breaker
    /// until one can start it.
    pub(crate) fn ensure(&self, conn: &Connection) {
        if self.running.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = conn.me.clone();
        // Built before the spawn: a task dropped before its first poll still clears the flag.
        let ended = Ended(me.clone());
        let wake = self.wake.clone();
        runtime.spawn(async move {
            let _ended = ended;
            loop {
                let Some(conn) = me.upgrade() else { return };
                conn.refresh_topology().await;
                drop(conn);
                tokio::time::sleep(MIN_GAP).await;
                // While a node's breaker is open a failover may be under way: re-read at the
                // probe period, so a promoted replica is used within about that long.
                let Some(period) = me.upgrade().map(|conn| {
                    if conn.is_degraded() {
                        conn.breaker.probe_every
                    } else {
                        PERIOD
                    }
                }) else {
                    return;
                };
                let _ = tokio::time::timeout(period, wake.notified()).await;
            }
        });
    }

    /// Asks for a refresh soon (an operation failed on the link).
    pub(crate) fn soon(&self) {
        self.wake.notify_one();
    }
}
