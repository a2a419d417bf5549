//! The invalidation stream: a connection of its own with `CLIENT TRACKING ON BCAST` over the
//! namespace, so Redis sends an invalidation for every change of a key in it (by this library,
//! by an operator's `DEL`, by `FLUSHDB`, eviction or expiry), whoever made it.
//!
//! The `redis` crate forgets tracking on reconnect and has no hook for it, so this task owns
//! the connection: it connects, arms tracking, outdates everything read before (invalidations
//! may have been missed while it was down), and then writes a canary key of its own every
//! quarter of the liveness timeout. The canary's invalidation coming back is the positive
//! signal that the stream works; entries are served only within the liveness timeout of the
//! last one. A disconnection, a failed write or a canary that does not come back within half
//! the timeout drops the connection and starts over.

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::Duration,
};

use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};

use super::FirstLevel;

/// How to reach Redis for the stream.
pub(crate) struct Tracking {
    pub(crate) client: redis::Client,
    /// The tracked prefix: `{namespace}:`.
    pub(crate) prefix: String,
    /// This process's canary key, outside the namespace's prefix so no other process gets its
    /// invalidations.
    pub(crate) canary: String,
    /// Deadline of each command and connection attempt.
    pub(crate) timeout: Duration,
    /// Tests only: ignore invalidations of entries and tags (as if they were slow to arrive),
    /// so what read-your-writes owes to the local drop is seen on its own.
    pub(crate) deaf: bool,
}

impl Tracking {
    pub(crate) fn new(client: redis::Client, namespace: &str, timeout: Duration) -> Tracking {
        Tracking {
            client,
            prefix: format!("{namespace}:"),
            canary: format!("{namespace};l1-canary:{:016x}", fastrand::u64(..)),
            timeout,
            deaf: false,
        }
    }
}

pub(super) fn spawn(level: &Arc<FirstLevel>) {
    let level = Arc::downgrade(level);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(run(level));
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
    if key == level.tracking.canary {
        level.liveness.confirm();
    } else if key.ends_with(":lock") || key.ends_with(":gen") {
        // Locks and generations: entry keys end with `}`, these never do.
    } else if key.starts_with(&level.tracking.prefix) && !level.tracking.deaf {
        // An entry's key or a tag's: a tag's stripe outdates the entries carrying it.
        level.forget_entry(key);
    }
}

async fn run(level: Weak<FirstLevel>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(connected) = connect(&level).await else {
            return;
        };
        match connected {
            Ok(conn) => {
                backoff = Duration::from_millis(50);
                follow(&level, conn).await;
            }
            Err(err) => {
                tracing::debug!(error = %err, "first level: cannot arm client tracking; retrying");
            }
        }
        let Some(level) = level.upgrade() else {
            return;
        };
        level.liveness.lose();
        drop(level);
        let jittered = backoff.mul_f64(0.5 + fastrand::f64());
        tokio::time::sleep(jittered).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Connects and arms tracking; then everything read before is outdated. `None`: the cache is
/// gone.
async fn connect(
    level: &Weak<FirstLevel>,
) -> Option<Result<redis::aio::MultiplexedConnection, redis::RedisError>> {
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
    let client = tracking.client.clone();
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
    Some(result)
}

/// Writes the canary every quarter of the liveness timeout and waits for it to come back;
/// returns when the stream is lost or the cache is gone.
async fn follow(level: &Weak<FirstLevel>, mut conn: redis::aio::MultiplexedConnection) {
    for round in 1u64.. {
        let Some(strong) = level.upgrade() else {
            return;
        };
        let timeout = strong.liveness.timeout;
        if !canary(&strong, &mut conn, round).await {
            return;
        }
        drop(strong);
        tokio::time::sleep(timeout / 4).await;
    }
}

/// One canary: written, and its invalidation back within half the liveness timeout.
async fn canary(
    level: &FirstLevel,
    conn: &mut redis::aio::MultiplexedConnection,
    round: u64,
) -> bool {
    let liveness = &level.liveness;
    let timeout = liveness.timeout;
    // Registered before the write, so a confirmation cannot slip between check and wait.
    let back = liveness.changed.notified();
    tokio::pin!(back);
    back.as_mut().enable();
    let sent = liveness.now().max(1);
    liveness.canary_sent.store(sent, Ordering::SeqCst);
    let mut set = redis::cmd("SET");
    set.arg(&level.tracking.canary)
        .arg(round)
        .arg("PX")
        .arg(u64::try_from(timeout.as_millis().max(1) * 10).unwrap_or(u64::MAX));
    let deadline = tokio::time::Instant::now() + timeout / 2;
    let written = tokio::time::timeout_at(deadline, set.query_async::<()>(conn)).await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!("first level: canary write failed; reconnecting");
        return false;
    }
    // Wait, until the deadline, for this canary's invalidation (or the stream's loss).
    while liveness.confirmed_at.load(Ordering::SeqCst) < sent {
        if liveness.lost_at.load(Ordering::SeqCst) >= sent {
            return false;
        }
        if tokio::time::timeout_at(deadline, back.as_mut())
            .await
            .is_err()
        {
            tracing::debug!("first level: canary did not come back in time; reconnecting");
            return false;
        }
        back.set(liveness.changed.notified());
        back.as_mut().enable();
    }
    true
}
