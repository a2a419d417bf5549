//! Waiting for replicas after an invalidation (`CacheBuilder::invalidation_replicas`), by
//! group commit.
//!
//! `WAIT` counts the writes of the connection it is sent on, up to that connection's last
//! write, and blocks that connection until it answers. So the change itself goes on the shared
//! connection as any write does, and the wait on a connection of its own, in rounds: a round
//! writes a marker (its connection's last write is then later than every change completed
//! before the round began; replication offsets are global, so acknowledging the marker means
//! acknowledging them) and sends `WAIT`. Callers whose change completed while a round was in
//! flight share the next one: a burst of invalidations costs one or two replica round trips,
//! not one each in a queue. A round that fails or times out says nothing about the link to the
//! master (the change was applied): the caller gets `NotReplicated`, and no breaker moves.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use redis::aio::ConnectionManager;

use crate::Error;

/// The longest `WAIT` the cache sends (Redis rejects absurd timeouts after the change landed).
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// How one node's invalidations wait for its replicas.
pub(crate) struct ReplicationWait {
    /// The wait's own connection (never the shared one: `WAIT` blocks it).
    manager: ConnectionManager,
    replicas: u32,
    wait: Duration,
    /// The marker each round writes: `{namespace};replication` (one small key, kept a day).
    marker: String,
    /// Rounds begun.
    begun: AtomicU64,
    /// One round at a time; the last finished round and how many replicas acknowledged it
    /// (`None`: it failed).
    rounds: tokio::sync::Mutex<(u64, Option<u32>)>,
}

impl ReplicationWait {
    pub(crate) fn new(
        manager: ConnectionManager,
        replicas: u32,
        wait: Duration,
        namespace: &str,
    ) -> ReplicationWait {
        ReplicationWait {
            manager,
            replicas,
            wait: wait.min(MAX_WAIT),
            marker: format!("{namespace};replication"),
            begun: AtomicU64::new(0),
            rounds: tokio::sync::Mutex::new((0, None)),
        }
    }

    /// The longest a caller may wait: the round in flight, then its own.
    pub(crate) fn longest(&self) -> Duration {
        self.wait
            .saturating_mul(2)
            .saturating_add(Duration::from_millis(50))
    }

    /// Waits until `replicas` replicas have every change completed before this call; call it
    /// after the change's reply.
    pub(crate) async fn after_change(&self) -> Result<(), Error> {
        // A round that begins from now on covers the change; one already begun may not.
        let needed = self.begun.load(Ordering::Acquire) + 1;
        let acked = tokio::time::timeout(self.longest(), async {
            let mut rounds = self.rounds.lock().await;
            if rounds.0 < needed {
                let round = self.begun.fetch_add(1, Ordering::AcqRel) + 1;
                let acked = self.round().await;
                *rounds = (round, acked);
            }
            rounds.1
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
        if acked < self.replicas {
            return Err(Error::NotReplicated {
                acked,
                wanted: self.replicas,
            });
        }
        Ok(())
    }

    /// One round: the marker and `WAIT` in one write; the replicas that acknowledged it.
    async fn round(&self) -> Option<u32> {
        let millis = u64::try_from(self.wait.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&self.marker)
            .arg(1)
            .arg("PX")
            .arg(86_400_000)
            .ignore();
        pipe.cmd("WAIT").arg(self.replicas).arg(millis);
        let answer = tokio::time::timeout(
            self.wait.saturating_add(Duration::from_millis(25)),
            pipe.query_async::<(u32,)>(&mut self.manager.clone()),
        )
        .await;
        match answer {
            Ok(Ok((acked,))) => Some(acked),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "waiting for replicas failed");
                None
            }
            Err(_) => None,
        }
    }
}
