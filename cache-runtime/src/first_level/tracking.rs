//! The invalidation stream: a connection of its own with `CLIENT TRACKING ON BCAST` over the
//! namespace, so Redis sends an invalidation for every change of a key in it (by this library,
//! by an operator's `DEL`, by `FLUSHDB`, eviction or expiry), whoever made it.
//!
//! The `redis` crate forgets tracking on reconnect and has no hook for it, so this task owns
//! the connection: it connects, arms tracking, outdates everything read before (invalidations
//! may have been missed while it was down), and then writes a canary key of its own every
//! quarter of the liveness timeout, each round under a new name. That round's invalidation
//! coming back is the positive signal that the stream works; entries are served only within
//! the liveness timeout of the last one. Redis sends the invalidations of one event-loop turn
//! prefix by prefix in byte order, and the canary prefix `{namespace};` sorts after the
//! namespace's `{namespace}:`, so a canary's invalidation never arrives before those of
//! changes made before it. A disconnection, a failed write or a canary that does not come
//! back within half the timeout drops the connection and starts over.

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::Duration,
};

use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};

use super::FirstLevel;

/// Longest pause between attempts to re-establish the stream.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// The node a stream follows, as the store knows it (the master Sentinel names now, under
/// Sentinel). A trait here, so the first level does not reach up into the store.
pub(crate) trait StreamSource: Send + Sync {
    /// A RESP3 client for the stream, with the epoch the node became the master at; `None`
    /// while no master is known.
    fn tracking_client(&self) -> Option<(u64, redis::Client)>;

    /// Changes whenever the master does; `None` for a node given by URL.
    fn epochs(&self) -> Option<tokio::sync::watch::Receiver<u64>>;
}

/// How to reach Redis for the stream.
pub(crate) struct Tracking {
    /// The node followed.
    pub(crate) master: Box<dyn StreamSource>,
    /// The tracked prefix: `{namespace}:`.
    pub(crate) prefix: String,
    /// Tag keys: `{namespace}:tag:{`.
    tag_prefix: String,
    /// This process's canary keys, `{namespace};l1-canary:{id}:{round}`: outside the
    /// namespace's prefix, so no other process gets their invalidations.
    pub(crate) canary: String,
    /// Deadline of each command and connection attempt.
    pub(crate) timeout: Duration,
    /// Tests only: ignore invalidations of entries and tags (as if they were slow to arrive),
    /// so what read-your-writes owes to the local drop is seen on its own.
    pub(crate) deaf: bool,
    /// Where the task runs: the runtime the cache was built on.
    pub(crate) runtime: Option<tokio::runtime::Handle>,
}

impl Tracking {
    pub(crate) fn new(
        master: Box<dyn StreamSource>,
        namespace: &str,
        timeout: Duration,
    ) -> Tracking {
        Tracking {
            master,
            prefix: format!("{namespace}:"),
            tag_prefix: format!("{namespace}:tag:{{"),
            canary: format!("{namespace};l1-canary:{:016x}:", fastrand::u64(..)),
            timeout,
            deaf: false,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

/// Starts the task. While it runs (or is about to), `started` stays set; when it ends (the
/// cache is gone, or its runtime shut down), the next `l1` call starts it again.
pub(super) fn spawn(level: &Arc<FirstLevel>) {
    let start_on = |runtime: tokio::runtime::Handle| {
        let weak = Arc::downgrade(level);
        let ended = Ended(weak.clone());
        runtime.spawn(async move {
            let _ended = ended;
            run(weak).await;
        });
    };
    if let Some(runtime) = level.tracking.runtime.clone() {
        start_on(runtime);
        // The cache's runtime is gone (it was built in a runtime since shut down): the task
        // was dropped at once and cleared `started`. Follow Redis from the caller's runtime
        // instead, unless a concurrent first call already does.
        if level
            .started
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "first level: the runtime this cache was built on has shut down; its \
                 invalidation stream runs on the runtime of the calls instead"
            );
        }
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => start_on(runtime),
        Err(_) => level.started.store(false, Ordering::SeqCst),
    }
}

/// Clears `started` when the task ends, however it ends (its runtime dropped, a panic).
struct Ended(Weak<FirstLevel>);

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(level) = self.0.upgrade() {
            level.liveness.lose();
            level.started.store(false, Ordering::SeqCst);
        }
    }
}

/// Handles one push of connection number `link`, in the connection's own task (a few atomics
/// and a map removal per key).
fn on_push(level: &FirstLevel, link: u64, push: PushInfo) {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => {
                for key in keys {
                    if let Value::BulkString(key) = key {
                        on_key(level, key);
                    }
                }
            }
            // `FLUSHDB`, `FLUSHALL`: every key.
            _ => level.forget_all(),
        },
        // A connection given up earlier may report its end after its successor is armed.
        PushKind::Disconnection if level.liveness.link.load(Ordering::SeqCst) == link => {
            level.liveness.lose();
        }
        _ => {}
    }
}

fn on_key(level: &FirstLevel, key: &[u8]) {
    let Ok(key) = std::str::from_utf8(key) else {
        return;
    };
    let tracking = &level.tracking;
    if let Some(round) = key.strip_prefix(tracking.canary.as_str()) {
        if let Ok(round) = round.parse() {
            level.liveness.confirm(round);
        }
    } else if tracking.deaf || key.ends_with(":lock") || key.ends_with(":gen") {
        // Locks and generations: entry keys end with `}`, these never do.
    } else if key.starts_with(tracking.tag_prefix.as_str()) {
        level.forget_tag(key);
    } else if key.starts_with(tracking.prefix.as_str()) {
        level.forget_entry(key);
    }
}

async fn run(level: Weak<FirstLevel>) {
    let mut backoff = Duration::ZERO;
    let mut warned = false;
    loop {
        if level.upgrade().is_none_or(|level| level.is_stopped()) {
            return;
        }
        let Some(connected) = connect(&level).await else {
            return;
        };
        let problem = match connected {
            Ok((conn, master)) => match follow(&level, conn, master).await {
                // Confirmed at least once: the next attempt may come at once.
                Followed::Confirmed => {
                    backoff = Duration::ZERO;
                    warned = false;
                    None
                }
                Followed::Never(problem) => Some(problem),
                Followed::Gone => return,
            },
            Err(err) => Some(format!("cannot arm client tracking: {err}")),
        };
        if let Some(problem) = problem {
            // Connection refused while Redis is down is expected; a stream that never
            // confirms while Redis answers (ACLs, OOM refusing the canary, a replica) is not.
            if !warned && backoff >= MAX_BACKOFF {
                tracing::warn!(
                    problem,
                    "first level: Redis's invalidations cannot be followed; `l1` functions read \
                     Redis on every call until they can"
                );
                warned = true;
            } else {
                tracing::debug!(problem, "first level: stream not confirmed; retrying");
            }
        }
        let Some(strong) = level.upgrade() else {
            return;
        };
        strong.liveness.lose();
        strong.epochs.prune_tags();
        if strong.is_stopped() {
            return;
        }
        drop(strong);
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
        backoff = (backoff * 2).clamp(Duration::from_millis(50), MAX_BACKOFF);
    }
}

/// The master a stream follows: the epoch it became the master at, and the master's epochs
/// (Sentinel only); the stream must end as soon as they differ.
type MasterEpoch = Option<(u64, tokio::sync::watch::Receiver<u64>)>;

/// Connects and arms tracking; then everything read before is outdated. `None`: the cache is
/// gone.
async fn connect(
    level: &Weak<FirstLevel>,
) -> Option<Result<(redis::aio::MultiplexedConnection, MasterEpoch), redis::RedisError>> {
    let strong = level.upgrade()?;
    let tracking = &strong.tracking;
    let timeout = tracking.timeout;
    let link = strong.liveness.link.fetch_add(1, Ordering::SeqCst) + 1;
    let handler = {
        let level = level.clone();
        move |push: PushInfo| -> Result<(), ()> {
            let level = level.upgrade().ok_or(())?;
            on_push(&level, link, push);
            Ok(())
        }
    };
    let config = AsyncConnectionConfig::new()
        .set_push_sender(handler)
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    // The receiver first: a switch after it is seen as a change, one before it as an epoch
    // other than this client's.
    let epochs = tracking.master.epochs();
    let Some((epoch, client)) = tracking.master.tracking_client() else {
        return Some(Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            "no master known yet",
        ))));
    };
    let mut arm = redis::cmd("CLIENT");
    arm.arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(&tracking.prefix)
        .arg("PREFIX")
        .arg(&tracking.canary);
    drop(strong);
    let result = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        arm.query_async::<()>(&mut conn).await?;
        Ok(conn)
    }
    .await;
    if result.is_ok() {
        // From here on Redis reports every change; what was read before may have missed one.
        level.upgrade()?.forget_all();
    }
    Some(result.map(|conn| (conn, epochs.map(|rx| (epoch, rx)))))
}

/// How following a stream ended.
enum Followed {
    /// At least one canary came back before the stream was lost.
    Confirmed,
    /// None did: why.
    Never(String),
    /// The cache is gone.
    Gone,
}

/// Writes a canary every quarter of the liveness timeout and waits for it to come back; returns
/// when the stream is lost, the master changed (Sentinel: the stream must be made again on the
/// new one, and nothing is served until it is confirmed there) or the cache is gone.
async fn follow(
    level: &Weak<FirstLevel>,
    mut conn: redis::aio::MultiplexedConnection,
    mut master: MasterEpoch,
) -> Followed {
    let mut confirmed = false;
    loop {
        let Some(strong) = level.upgrade() else {
            return Followed::Gone;
        };
        if strong.is_stopped() {
            return Followed::Gone;
        }
        strong.epochs.prune_tags();
        let round = tokio::select! {
            round = canary(&strong, &mut conn) => round,
            () = switched(&mut master) => Err("the master changed".into()),
        };
        if let Err(problem) = round {
            return if confirmed {
                Followed::Confirmed
            } else {
                Followed::Never(problem)
            };
        }
        confirmed = true;
        // Until the next round, unless the stream is lost first.
        let liveness = &strong.liveness;
        let lost = liveness.changed.notified();
        tokio::pin!(lost);
        lost.as_mut().enable();
        let pause = tokio::time::sleep(liveness.timeout / 4);
        tokio::pin!(pause);
        loop {
            if liveness.lost_at.load(Ordering::SeqCst)
                >= liveness.confirmed_at.load(Ordering::SeqCst)
            {
                return Followed::Confirmed;
            }
            tokio::select! {
                () = &mut pause => break,
                () = switched(&mut master) => {
                    liveness.lose();
                    return Followed::Confirmed;
                }
                () = lost.as_mut() => {
                    lost.set(liveness.changed.notified());
                    lost.as_mut().enable();
                }
            }
        }
    }
}

/// Returns once the master is another than the stream's (at once if it already is, or if the
/// follower is gone); never for a node given by URL.
async fn switched(master: &mut MasterEpoch) {
    match master {
        Some((epoch, rx)) => {
            let epoch = *epoch;
            // Later epochs only: the follower stores the new link just before it announces
            // the new epoch, and a client taken in between is already the new master's.
            let _ = rx.wait_for(|now| *now > epoch).await;
        }
        None => std::future::pending().await,
    }
}

/// One canary round: written under a new name, and its invalidation back within half the
/// liveness timeout.
async fn canary(
    level: &FirstLevel,
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<(), String> {
    static ROUNDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let liveness = &level.liveness;
    let timeout = liveness.timeout;
    // Registered before the write, so a confirmation cannot slip between check and wait.
    let back = liveness.changed.notified();
    tokio::pin!(back);
    back.as_mut().enable();
    let round = ROUNDS.fetch_add(1, Ordering::Relaxed);
    let sent = liveness.now().max(1);
    *liveness.canary.lock().unwrap_or_else(|p| p.into_inner()) = Some((round, sent));
    let mut set = redis::cmd("SET");
    set.arg(format!("{}{round}", level.tracking.canary))
        .arg(1)
        .arg("PX")
        .arg(u64::try_from(timeout.as_millis().max(1)).unwrap_or(u64::MAX));
    let deadline = tokio::time::Instant::now() + timeout / 2;
    match tokio::time::timeout_at(deadline, set.query_async::<()>(conn)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(format!("canary write failed: {err}")),
        Err(_) => return Err("canary write timed out".into()),
    }
    // Wait, until the deadline, for this canary's invalidation (or the stream's loss).
    while liveness.confirmed_at.load(Ordering::SeqCst) < sent {
        if liveness.lost_at.load(Ordering::SeqCst) >= sent {
            return Err("connection lost".into());
        }
        if tokio::time::timeout_at(deadline, back.as_mut())
            .await
            .is_err()
        {
            return Err("the canary's invalidation did not come back in time".into());
        }
        back.set(liveness.changed.notified());
        back.as_mut().enable();
    }
    Ok(())
}
