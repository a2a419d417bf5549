//! Connection events: what a subscriber (the first level re-arming tracking, a Sentinel client
//! re-resolving its master, an operator's log) learns about the link to Redis.
//!
//! The `redis` crate 1.8 has no hook for connects and reconnects, so events are inferred from
//! the cache's own operations and probes: the first answer is `Connected`, a connection-level
//! failure (refused, dropped, timed out) after answers is `Disconnected`, and the next answer
//! after that is `Reconnected`. Server error replies say nothing about the link and send
//! nothing. Each node has its own link state: a node that stays down sends one `Disconnected`,
//! not one per failed call, and answers from other nodes meanwhile send nothing.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::broadcast;

/// A change in the link between a [`Cache`](crate::Cache) and Redis.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use cache_runtime::{Cache, ConnectionEvent};
///
/// let cache = Cache::builder().url("redis://127.0.0.1:1").build().await?;
/// let mut events = cache.connection_events();
/// tokio::spawn(async move {
///     while let Ok(event) = events.recv().await {
///         if event == ConnectionEvent::Reconnected {
///             // re-arm whatever a reconnect loses
///         }
///     }
/// });
/// # Ok::<(), cache_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// Redis answered for the first time.
    Connected,
    /// Redis stopped answering (refused, dropped or timed out) after it had answered.
    Disconnected,
    /// Redis answered again after a `Disconnected`: per-connection state (client tracking,
    /// subscriptions, `CLIENT` settings) must be assumed lost.
    Reconnected,
    /// The cluster's slot map changed (a failover, a resharding, a node added or removed).
    TopologyChanged,
}

const NEVER: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;
const DOWN_NEVER_UP: u8 = 3;

/// Where events are sent.
pub(crate) type Sender = broadcast::Sender<ConnectionEvent>;

/// A new channel for events.
pub(crate) fn channel() -> Sender {
    broadcast::Sender::new(64)
}

/// The state of the link to one node.
pub(crate) struct Link {
    state: AtomicU8,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            state: AtomicU8::new(NEVER),
        }
    }
}

impl Link {
    /// The node answered.
    pub(crate) fn answered(&self, events: &Sender) {
        // One load on every call; the swap only on a change.
        if self.state.load(Ordering::Relaxed) == UP {
            return;
        }
        let event = match self.state.swap(UP, Ordering::AcqRel) {
            UP => return,
            DOWN => ConnectionEvent::Reconnected,
            _ => ConnectionEvent::Connected,
        };
        let _ = events.send(event);
    }

    /// The link to the node failed.
    pub(crate) fn lost(&self, events: &Sender) {
        let state = self.state.load(Ordering::Relaxed);
        if state == DOWN || state == DOWN_NEVER_UP {
            return;
        }
        let next = if state == UP { DOWN } else { DOWN_NEVER_UP };
        if self
            .state
            .compare_exchange(state, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            && state == UP
        {
            let _ = events.send(ConnectionEvent::Disconnected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_the_link_without_repeating() {
        let (events, link) = (channel(), Link::default());
        let mut rx = events.subscribe();
        link.lost(&events); // never up: nothing to report
        link.answered(&events);
        link.answered(&events);
        link.lost(&events);
        link.lost(&events);
        link.answered(&events);
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            got,
            [
                ConnectionEvent::Connected,
                ConnectionEvent::Disconnected,
                ConnectionEvent::Reconnected
            ]
        );
    }
}
