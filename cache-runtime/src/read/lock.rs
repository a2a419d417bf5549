//! The cross-process side of a load: the claim (lock, generation and tag versions captured
//! before the loader runs), waiting for another process's lock, the lock as an owned guard, and
//! its renewal.
//!
//! A [`LockGuard`] is armed before the `SET NX` is sent, so a claim cancelled at any await
//! point still releases what it may have taken. It releases by token, so it never frees a lock
//! someone else holds. The fill consumes it (the fill script deletes the lock it owns).

use std::{
    convert::Infallible,
    future::Future,
    time::{Duration, Instant},
};

use crate::{
    Cache, Error,
    read::{
        entry::{generation_ttl, new_token, usable},
        flight::{LeaderGuard, Loaded},
        keys::Keys,
        later, within_operations,
    },
    shape::Shape,
    spec::FnSpec,
    store::{EntryChange, StoredBytes},
    telemetry::Event,
};

/// A lock this load holds, or is taking. Dropped while armed, it releases by token (in a
/// task, since drop cannot wait).
pub(crate) struct LockGuard {
    cache: Cache,
    key: String,
    token: String,
    armed: bool,
}

impl LockGuard {
    fn arm(cache: &Cache, keys: &Keys) -> LockGuard {
        LockGuard {
            cache: cache.clone(),
            key: keys.lock().to_owned(),
            token: new_token(),
            armed: true,
        }
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Nothing left to release: the lock was not taken, or the fill consumed it.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (cache, key, token) = (
            self.cache.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        // Outside a runtime the lock is left to expire.
        let _ = self.cache.spawn_write(async move {
            let _ = cache.conn().unlock(&key, &token).await;
        });
    }
}

/// What a load may write, decided before it starts.
pub(crate) struct Claim {
    /// The lock this load owns, if it took one.
    pub(crate) lock: Option<LockGuard>,
    /// The entry's generation when the load began; the fill is refused if it changed.
    pub(crate) generation: String,
    /// Tag versions when the load began; recorded in the entry.
    pub(crate) tag_versions: Vec<u64>,
    /// When the claim was sent: the value read with it was current at least then.
    pub(crate) sent: Instant,
}

/// How a load's result is written.
pub(crate) enum Fill {
    /// Store it if the claim still holds when the fill arrives.
    Store(Claim),
    /// Do not store (another process holds the lock and will); check the claim before handing
    /// the value to waiters.
    Check(Claim),
    /// Nothing can be stored or checked: the store did not answer.
    Nothing,
}

/// A claim and the entry read with it.
pub(crate) struct Claimed {
    pub(crate) claim: Claim,
    pub(crate) locked: bool,
    pub(crate) current: Option<StoredBytes>,
}

/// Takes the lock (if `lock`), creates or reads the generation and reads the entry, while
/// capturing tag versions: one round of concurrent requests.
pub(crate) async fn claim(
    cache: &Cache,
    spec: &FnSpec,
    keys: &Keys,
    lock: bool,
) -> Result<Claimed, Error> {
    let sent = Instant::now();
    let guard = lock.then(|| LockGuard::arm(cache, keys));
    let candidate = new_token();
    let conn = cache.conn();
    let entry_keys = keys.entry_keys();
    let (reply, tags) = futures_util::future::join(
        conn.claim(
            &entry_keys,
            guard.as_ref().map(LockGuard::token),
            spec.lock_ttl(),
            &candidate,
            generation_ttl(cache, spec),
        ),
        conn.capture_tags(&keys.tags, spec.kept(cache)),
    )
    .await;
    // On any error below, the armed guard releases whatever the claim took.
    let reply = reply?;
    let guard = match guard {
        Some(guard) if !reply.locked => {
            guard.disarm();
            None
        }
        guard => guard,
    };
    let tag_versions = tags?;
    let generation = reply
        .generation
        .ok_or_else(|| Error::Protocol("the claim returned no generation".into()))?;
    Ok(Claimed {
        locked: reply.locked,
        current: reply.current,
        claim: Claim {
            lock: guard,
            generation,
            tag_versions,
            sent,
        },
    })
}

/// For `NAME_refresh`: starts a new generation of the entry (so loads that began earlier cannot
/// fill) and captures its tags' versions.
pub(crate) async fn claim_for_refresh(
    cache: &Cache,
    spec: &FnSpec,
    keys: &Keys,
) -> Result<Claim, Error> {
    let sent = Instant::now();
    let generation = new_token();
    let conn = cache.conn();
    // Side by side: both only need to be done before the loader starts.
    let (bumped, tag_versions) = futures_util::future::join(
        new_generation(cache, spec, keys, &generation, EntryChange::Keep),
        conn.capture_tags(&keys.tags, spec.kept(cache)),
    )
    .await;
    bumped?;
    let tag_versions = tag_versions?;
    Ok(Claim {
        lock: None,
        generation,
        tag_versions,
        sent,
    })
}

/// `NAME_put`: a new generation (loads that began earlier can no longer fill) and the entry,
/// stored for `kept`, in one step.
pub(crate) async fn put_entry(
    cache: &Cache,
    spec: &FnSpec,
    keys: &Keys,
    bytes: &[u8],
    kept: Duration,
) -> Result<(), Error> {
    let change = EntryChange::Put(bytes, kept);
    new_generation(cache, spec, keys, &new_token(), change).await
}

/// `NAME_invalidate`: a new generation and the entry deleted, in one step. The lock is left to
/// its owner, whose fill is then refused and releases it.
pub(crate) async fn drop_entry(cache: &Cache, spec: &FnSpec, keys: &Keys) -> Result<(), Error> {
    new_generation(cache, spec, keys, &new_token(), EntryChange::Drop).await
}

async fn new_generation(
    cache: &Cache,
    spec: &FnSpec,
    keys: &Keys,
    generation: &str,
    change: EntryChange<'_>,
) -> Result<(), Error> {
    let ttl = generation_ttl(cache, spec);
    write_generation(cache, keys, generation, ttl, change).await
}

/// An operator's invalidation of an entry known by its key alone (the function's TTL unknown:
/// its generation lives `generation_ttl`).
pub(crate) async fn drop_entry_by_key(
    cache: &Cache,
    keys: &Keys,
    generation_ttl: Duration,
) -> Result<(), Error> {
    write_generation(cache, keys, &new_token(), generation_ttl, EntryChange::Drop).await
}

async fn write_generation(
    cache: &Cache,
    keys: &Keys,
    generation: &str,
    ttl: Duration,
    change: EntryChange<'_>,
) -> Result<(), Error> {
    cache
        .conn()
        .new_generation(&keys.entry_keys(), generation, ttl, change)
        .await
}

/// Runs `loader` with the lock's renewal beside it (never inside it: a renewal waiting on a
/// hung Redis does not pause the loader). Renewal stops once the load has run `max_load`, so a
/// hung loader frees its key for other processes after one more `lock_ttl`.
pub(crate) async fn renewing<F: Future>(
    cache: &Cache,
    spec: &FnSpec,
    keys: &Keys,
    lock: Option<&LockGuard>,
    loader: F,
) -> F::Output {
    let Some(lock) = lock else {
        return loader.await;
    };
    let renewal = async {
        let period = (spec.lock_ttl() / 3).max(std::time::Duration::from_millis(1));
        let stop = crate::read::later(spec.max_load());
        loop {
            tokio::time::sleep(period).await;
            if Instant::now() >= stop {
                tracing::warn!(
                    function = spec.name,
                    max_load = ?spec.max_load(),
                    "load outlived max_load; its lock is no longer renewed"
                );
                return std::future::pending::<Infallible>().await;
            }
            let renewed = cache
                .conn()
                .renew(keys.lock(), lock.token(), spec.lock_ttl())
                .await;
            if !matches!(renewed, Ok(true)) {
                tracing::debug!(
                    function = spec.name,
                    "lost the lock while loading; the result will not be stored"
                );
            }
        }
    };
    tokio::pin!(loader);
    tokio::pin!(renewal);
    tokio::select! {
        biased;
        output = &mut loader => output,
        never = &mut renewal => match never {},
    }
}

pub(crate) enum Led<T> {
    /// A value is in the store: another process's load, or a fill that landed meanwhile.
    Done(T, Loaded),
    /// Load here, writing as this says.
    Load(Fill),
}

/// The in-process leader of a miss: claim, or wait for the process that holds the lock.
pub(crate) async fn lead<S: Shape>(
    cache: &Cache,
    spec: &FnSpec,
    leader: &LeaderGuard,
    keys: &Keys,
    lock_wait: Duration,
) -> Led<S::Output> {
    let started = Instant::now();
    let conn = cache.conn();
    let patience = lock_wait.saturating_add(conn.timeout().saturating_mul(2));
    let mut delay = Duration::from_millis(1);
    loop {
        // Claiming: two operations' timeouts at most (the claim and the tag capture run
        // side by side).
        leader.set_deadline(within_operations(cache, 2));
        let Ok(claimed) = claim(cache, spec, keys, spec.lock).await else {
            return Led::Load(Fill::Nothing);
        };
        let versions: Vec<Option<u64>> = claimed
            .claim
            .tag_versions
            .iter()
            .map(|v| Some(*v))
            .collect();
        // A fill may have landed between our lookup and now. The claim's guard unlocks.
        if let Some(bytes) = &claimed.current
            && let Some(output) = usable::<S>(cache, spec, bytes, &versions)
        {
            let loaded = Loaded {
                bytes: bytes.to_vec().into(),
                valid_at: claimed.claim.sent,
                unverified: false,
            };
            return Led::Done(output, loaded);
        }
        if claimed.locked || !spec.lock {
            return Led::Load(Fill::Store(claimed.claim));
        }
        // Another process holds the lock: wait for its value, up to `lock_wait`.
        leader.set_deadline(later(patience));
        let claim = claimed.claim;
        loop {
            if started.elapsed() >= lock_wait {
                // Load here without storing (the lock holder will), checked for waiters.
                cache.record(spec, Event::LockTimedOut);
                tracing::debug!(
                    function = spec.name,
                    ?lock_wait,
                    "lock wait elapsed; loading without the lock"
                );
                return Led::Load(Fill::Check(claim));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(5));
            let sent = Instant::now();
            let entry_keys = keys.entry_keys();
            let (polled, versions) =
                futures_util::future::join(conn.poll(&entry_keys), conn.tag_versions(&keys.tags))
                    .await;
            let (Ok((current, locked)), Ok(versions)) = (polled, versions) else {
                return Led::Load(Fill::Nothing);
            };
            if let Some(bytes) = current
                && let Some(output) = usable::<S>(cache, spec, &bytes, &versions)
            {
                cache.record(spec, Event::LockWaited);
                let loaded = Loaded {
                    bytes: bytes.to_vec().into(),
                    valid_at: sent,
                    unverified: false,
                };
                return Led::Done(output, loaded);
            }
            if !locked {
                // Lock free and no usable value: the holder stored nothing, or died. Claim.
                break;
            }
        }
    }
}
