//! Keeping a cluster's slot map current: read at the first operation, every few seconds after,
//! and at once when a node's breaker opens (a failover moves slots to a promoted replica).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use tokio::sync::Notify;

use super::Connection;

/// How often the slot map is re-read when nothing prompts it.
const PERIOD: Duration = Duration::from_secs(5);

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
    wake: Notify,
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
        runtime.spawn(async move {
            let _ended = ended;
            loop {
                let Some(conn) = me.upgrade() else { return };
                conn.refresh_topology().await;
                let _ = tokio::time::timeout(PERIOD, conn.topology.wake.notified()).await;
            }
        });
    }

    /// Asks for a refresh now (a node's breaker opened).
    pub(crate) fn soon(&self) {
        self.wake.notify_one();
    }
}
