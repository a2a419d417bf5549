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
//! not one each in a queue.
//!
//! Rounds run in tasks of their own, so a caller that gives up (its deadline, a cancelled
//! request) cancels nothing another caller waits on. A round that fails or times out says
//! nothing about the link to the master (the change was applied): the caller gets
//! `NotReplicated`, and no breaker moves.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::aio::ConnectionManager;
use tokio::sync::watch;

use crate::Error;

/// The longest `WAIT` the cache sends (Redis rejects absurd timeouts after the change landed).
const MAX_WAIT: Duration = Duration::from_secs(600);

/// How long a caller may wait after its change: the round in flight and its own, each the
/// `WAIT` plus a round trip's allowance.
pub(crate) fn longest(wait: Duration, op_timeout: Duration) -> Duration {
    round_timeout(wait, op_timeout)
        .saturating_mul(2)
        .saturating_add(Duration::from_millis(50))
}

fn round_timeout(wait: Duration, op_timeout: Duration) -> Duration {
    wait.min(MAX_WAIT).saturating_add(op_timeout)
}

/// Which rounds were asked for and begun (under one lock).
#[derive(Default)]
struct Rounds {
    /// The last round begun.
    begun: u64,
    /// The highest round a caller needs.
    wanted: u64,
    /// A round is running.
    running: bool,
}

/// What the finished rounds showed.
#[derive(Clone, Copy, Default)]
struct Finished {
    /// The last round finished.
    round: u64,
    /// The last round that enough replicas acknowledged (it covers every earlier change).
    ok_through: u64,
    /// Replicas that acknowledged the last round (0 when it failed).
    acked: u32,
}

/// How one node's invalidations wait for its replicas.
pub(crate) struct ReplicationWait {
    /// The wait's own connection (never the shared one: `WAIT` blocks it).
    manager: ConnectionManager,
    replicas: u32,
    wait: Duration,
    op_timeout: Duration,
    /// The marker each round writes: `{namespace};replication` (one small key, kept a day).
    marker: String,
    rounds: Mutex<Rounds>,
    finished: watch::Sender<Finished>,
}

impl ReplicationWait {
    pub(crate) fn new(
        manager: ConnectionManager,
        replicas: u32,
        wait: Duration,
        op_timeout: Duration,
        namespace: &str,
    ) -> ReplicationWait {
        ReplicationWait {
            manager,
            replicas,
            wait: wait.min(MAX_WAIT),
            op_timeout,
            marker: format!("{namespace};replication"),
            rounds: Mutex::new(Rounds::default()),
            finished: watch::Sender::new(Finished::default()),
        }
    }

    fn rounds(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `replicas` replicas have every change completed before this call; call it
    /// right after the change's reply.
    pub(crate) async fn after_change(self: &Arc<Self>) -> Result<(), Error> {
        let mut finished = self.finished.subscribe();
        // A round begun from now on covers the change; one already begun may not.
        let needed = {
            let mut rounds = self.rounds();
            let needed = rounds.begun + 1;
            rounds.wanted = rounds.wanted.max(needed);
            needed
        };
        self.start_round();
        let deadline = longest(self.wait, self.op_timeout);
        let seen = tokio::time::timeout(deadline, finished.wait_for(|f| f.round >= needed))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|f| *f);
        match seen {
            Some(f) if f.ok_through >= needed => Ok(()),
            Some(f) => Err(Error::NotReplicated {
                acked: f.acked,
                wanted: self.replicas,
            }),
            None => Err(Error::NotReplicated {
                acked: 0,
                wanted: self.replicas,
            }),
        }
    }

    /// Starts the next round if one is wanted and none runs.
    fn start_round(self: &Arc<Self>) {
        let round = {
            let mut rounds = self.rounds();
            if rounds.running || rounds.wanted <= rounds.begun {
                return;
            }
            rounds.running = true;
            rounds.begun += 1;
            rounds.begun
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.end_round(round, None);
            return;
        };
        // Ends the round whatever happens to the task (its runtime shutting down included).
        let guard = RoundGuard {
            wait: self.clone(),
            round,
            acked: None,
        };
        runtime.spawn(async move {
            let mut guard = guard;
            guard.acked = guard.wait.round().await;
        });
    }

    fn end_round(self: &Arc<Self>, round: u64, acked: Option<u32>) {
        self.finished.send_modify(|f| {
            f.round = f.round.max(round);
            f.acked = acked.unwrap_or(0);
            if acked.is_some_and(|n| n >= self.replicas) {
                f.ok_through = f.ok_through.max(round);
            }
        });
        self.rounds().running = false;
        // Callers whose change completed during this round need the next.
        self.start_round();
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
            round_timeout(self.wait, self.op_timeout),
            pipe.query_async::<(u32,)>(&mut self.manager.clone()),
        )
        .await;
        match answer {
            Ok(Ok((acked,))) => Some(acked),
            Ok(Err(err)) => {
                // Out of memory with `noeviction` refuses the marker: say so once in a while.
                tracing::debug!(error = %err, "waiting for replicas failed");
                None
            }
            Err(_) => None,
        }
    }
}

/// Ends its round when dropped: finished normally, or its task dropped.
struct RoundGuard {
    wait: Arc<ReplicationWait>,
    round: u64,
    acked: Option<u32>,
}

impl Drop for RoundGuard {
    fn drop(&mut self) {
        self.wait.end_round(self.round, self.acked);
    }
}
