//! Where entries live: Redis (single node or cluster) or the embedded in-process store, behind
//! one [`Backend`] trait.
//!
//! A backend moves bytes with an expiry and keeps the small values around an entry: its lock
//! (owner token), its generation (a random token replaced by invalidation, put and refresh, so a
//! load that began earlier cannot fill), and tag versions. Deadlines, breakers and counting are
//! layered on top by [`crate::connection`]; the envelope and the read path by [`crate::read`].

mod batch;
mod memory;
mod redis;

use std::{future::Future, ops::Deref, pin::Pin, sync::Arc, time::Duration};

pub(crate) use self::batch::Batcher;
pub(crate) use self::memory::MemoryStore;
pub(crate) use self::redis::{
    Master, RedisStore,
    node::{NodeConnector, NodeLink},
    sentinel::{SentinelConfig, SentinelMaster},
};
use crate::Error;

/// What a change users make (an invalidation, a put) still owes once it landed: waiting for
/// replicas, when [`invalidation_replicas`](crate::CacheBuilder::invalidation_replicas) asks
/// for it, on the node that took the change. Waited for outside the breaker and the operation
/// deadline: a slow replica says nothing about the master.
#[derive(Default)]
#[must_use = "an invalidation is not done until its replicas are waited for"]
pub(crate) struct AfterChange(Option<Arc<self::redis::replication::ReplicationWait>>);

impl AfterChange {
    /// Waits for the replicas, if asked to; `NotReplicated` when too few acknowledged.
    pub(crate) async fn replicated(self) -> Result<(), Error> {
        match self.0 {
            Some(wait) => wait.after_change().await,
            None => Ok(()),
        }
    }
}

/// A `GET` of an entry: a value of another type at the key (a hash, a list written by something
/// else) answers `WRONGTYPE`; that is a miss, and the fill's `SET` overwrites it, not a failure.
pub(crate) fn wrong_type_is_absent(
    got: Result<Option<Vec<u8>>, Error>,
) -> Result<Option<Vec<u8>>, Error> {
    match got {
        Err(Error::Backend(err)) if err.code() == Some("WRONGTYPE") => Ok(None),
        got => got,
    }
}

/// The longest expiry written: a century. Redis rejects an expiry past its clock's range, so a
/// TTL meaning "forever" is stored with this one.
pub(crate) const MAX_EXPIRY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A slot range served by a cluster master at `host:port`, as `CLUSTER SLOTS` reports it.
pub(crate) type SlotRange = (u16, u16, String);

/// A backend operation in flight.
pub(crate) type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Bytes read from a store: owned when they came over the network, shared when in-process.
#[derive(Debug, Clone)]
pub enum StoredBytes {
    /// Read from Redis.
    Owned(Vec<u8>),
    /// Read from the embedded store.
    Shared(Arc<[u8]>),
}

impl Deref for StoredBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            StoredBytes::Owned(v) => v,
            StoredBytes::Shared(v) => v,
        }
    }
}

/// The keys around one entry; all share the entry's hash tag (one cluster slot).
pub(crate) struct EntryKeys<'a> {
    pub(crate) entry: &'a str,
    pub(crate) lock: &'a str,
    pub(crate) generation: &'a str,
}

/// A lookup: the entry, its remaining TTL if asked for, and its tags' current versions.
pub(crate) struct Read {
    pub(crate) current: Option<StoredBytes>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tag_versions: Vec<Option<u64>>,
}

/// The answer to a claim: whether the lock was taken, the entry and its generation then.
pub(crate) struct ClaimReply {
    pub(crate) locked: bool,
    pub(crate) current: Option<StoredBytes>,
    /// The entry's generation (created by the claim when it was missing).
    pub(crate) generation: Option<String>,
}

/// What a fill should leave under the entry's key.
#[derive(Clone, Copy)]
pub(crate) enum FillValue<'a> {
    /// Store these bytes.
    Bytes(&'a [u8]),
    /// Delete the entry (an uncached `None` replaces what was there).
    Delete,
}

/// What a new generation does to the entry.
#[derive(Clone, Copy)]
pub(crate) enum EntryChange<'a> {
    /// Nothing: loads that began earlier can no longer fill (`NAME_refresh`, before loading).
    Keep,
    /// Delete it (`NAME_invalidate`).
    Drop,
    /// Store these bytes for this long (`NAME_put`).
    Put(&'a [u8], Duration),
}

/// The answer to a fill: stored, or which check refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FillReply {
    Stored,
    /// The lock is no longer the load's (it expired and was taken).
    RefusedLock,
    /// The generation changed (invalidate, put, refresh) or its key was lost.
    RefusedGeneration,
}

/// One kind of store. Every method is one round trip (or none, in process).
pub(crate) trait Backend: Send + Sync + 'static {
    /// Whether operations cross the network (and so need deadlines and a breaker).
    fn is_network(&self) -> bool;

    /// Whether this is a Redis Cluster (one breaker per master, a slot map to keep).
    fn is_cluster(&self) -> bool {
        false
    }

    /// The entry with its tags' versions (and its remaining TTL when `with_ttl`).
    fn read<'a>(
        &'a self,
        key: &'a str,
        tags: &'a [String],
        with_ttl: bool,
    ) -> StoreFuture<'a, Read>;

    /// Current tag versions (`None`: never captured, invalidated or expired).
    fn tag_versions<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, Vec<Option<u64>>>;

    /// Tag versions for a load about to start: created where missing, kept alive for `ttl`.
    fn capture_tags<'a>(&'a self, tags: &'a [String], ttl: Duration) -> StoreFuture<'a, Vec<u64>>;

    /// Invalidates tags: their versions disappear.
    fn delete_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, AfterChange>;

    /// Takes the lock with `token` if given and free (`SET NX PX`), creates the generation as
    /// `candidate` if missing, and reads the entry and the generation.
    fn claim<'a>(
        &'a self,
        keys: &'a EntryKeys<'a>,
        token: Option<&'a str>,
        lock_ttl: Duration,
        candidate: &'a str,
        generation_ttl: Duration,
    ) -> StoreFuture<'a, ClaimReply>;

    /// The entry and whether its lock is held.
    fn poll<'a>(&'a self, keys: &'a EntryKeys<'a>) -> StoreFuture<'a, (Option<StoredBytes>, bool)>;

    /// The entry's current generation.
    fn generation<'a>(&'a self, keys: &'a EntryKeys<'a>) -> StoreFuture<'a, Option<String>>;

    /// Writes (or deletes) the entry only if its generation is still `generation` and, when
    /// `token` is given, the lock is still the token's (releasing it either way if owned).
    fn fill<'a>(
        &'a self,
        keys: &'a EntryKeys<'a>,
        token: Option<&'a str>,
        generation: &'a str,
        value: FillValue<'a>,
        ttl: Duration,
    ) -> StoreFuture<'a, FillReply>;

    /// Sets a new generation and changes the entry as `change` says, together. The lock is left
    /// to its owner.
    fn new_generation<'a>(
        &'a self,
        keys: &'a EntryKeys<'a>,
        generation: &'a str,
        generation_ttl: Duration,
        change: EntryChange<'a>,
    ) -> StoreFuture<'a, AfterChange>;

    /// Extends `lock`, only if `token` still owns it.
    fn renew<'a>(&'a self, lock: &'a str, token: &'a str, ttl: Duration) -> StoreFuture<'a, bool>;

    /// Releases `lock`, only if `token` owns it.
    fn unlock<'a>(&'a self, lock: &'a str, token: &'a str) -> StoreFuture<'a, bool>;

    /// Checks that a node answers: the cluster node at `addr` (`host:port`), else the only one.
    fn ping<'a>(&'a self, addr: Option<&'a str>) -> StoreFuture<'a, ()>;

    /// The server's version as `INFO server` reports it (`redis_version`); `None` when the
    /// store is not a Redis server.
    fn server_version(&self) -> StoreFuture<'_, Option<String>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// An operation failed on the link or timed out (Sentinel: the master may have moved).
    fn link_failed(&self) {}

    /// Whether this is one Redis node (by URL or through Sentinel), where the fleet counters
    /// and operator views live.
    fn is_single_redis(&self) -> bool {
        false
    }

    /// Times the master changed (Sentinel); 0 for any other store.
    fn master_switches(&self) -> u64 {
        0
    }

    /// Changes whenever the master does (Sentinel); `None` for any other store.
    fn master_epochs(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// A cluster's masters by slot range (`CLUSTER SLOTS`); `None` when not a cluster.
    fn slot_map(&self) -> StoreFuture<'_, Option<Vec<SlotRange>>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// The single-node connection, for commands users write by hand.
    fn redis_connection(&self) -> Option<::redis::aio::ConnectionManager> {
        None
    }
}
