//! Redis through the `redis` crate: a `ConnectionManager` for a single node, the async
//! cluster client for Redis Cluster. Both multiplex concurrent requests on one connection
//! per node, so no pool is needed, and concurrent requests are pipelined.
//!
//! Hits are plain reads (`GET`, `MGET` with tag versions, `PTTL`). Scripts run only on write
//! paths, where they compare the lock owner's token and the entry's generation. An entry, its
//! lock and its generation share a hash tag, so every pipeline and script here stays in one
//! cluster slot; tag keys live in their own slots and are read with separate requests.

pub(crate) mod node;
mod reads;
pub(crate) mod replication;
pub(crate) mod sentinel;
mod writes;

use std::{borrow::Cow, sync::Arc, time::Duration};

use redis::{Cmd, FromRedisValue, Pipeline, RedisError, Script, aio::ConnectionManager};
use tokio::sync::watch;

use self::{node::NodeLink, sentinel::SentinelMaster};
use super::{
    AfterChange, Backend, Batcher, ClaimReply, EntryChange, EntryKeys, FillReply, FillValue, Read,
    StoreFuture, StoredBytes,
};
use crate::{Error, first_level::StreamSource};

/// The connection to Redis.
#[derive(Clone)]
pub(crate) enum RedisStore {
    /// One node, and the batcher of its plain lookups (`None`: every lookup sends its own GET).
    Single(Master, Option<Arc<Batcher>>),
    #[cfg(feature = "cluster")]
    /// The cluster, and the host of its first configured node, which stands in for a master
    /// whose host `CLUSTER SLOTS` leaves empty or unknown (as the cluster client does).
    Cluster(redis::cluster_async::ClusterConnection, Arc<str>),
}

/// The node a single-node store talks to: the one its URL names, or the master Sentinel
/// names now.
#[derive(Clone)]
pub(crate) enum Master {
    Fixed(Arc<NodeLink>),
    Sentinel(Arc<SentinelMaster>),
}

impl Master {
    /// The connection for one operation (a link error while Sentinel has named no master):
    /// borrowed for a fixed node, so a batched hit clones nothing it did not before.
    fn manager(&self) -> Result<Cow<'_, ConnectionManager>, RedisError> {
        match self {
            Master::Fixed(link) => Ok(Cow::Borrowed(&link.manager)),
            Master::Sentinel(master) => master.manager().map(Cow::Owned),
        }
    }

    /// Notes an operation's outcome: under Sentinel, a failure may mean the master moved.
    fn saw<T>(&self, result: &Result<T, RedisError>) {
        if let Err(err) = result {
            self.saw_error(err);
        }
    }

    /// Notes an operation's error (see [`saw`](Self::saw)).
    fn saw_error(&self, err: &RedisError) {
        if let Master::Sentinel(master) = self {
            master.saw(err);
        }
    }

    /// The links to the master of the moment (a link error while Sentinel has named none).
    fn link(&self) -> Result<Arc<NodeLink>, RedisError> {
        match self {
            Master::Fixed(link) => Ok(link.clone()),
            Master::Sentinel(master) => master.link(),
        }
    }

    /// Times the master changed since the cache was built (Sentinel only: the first
    /// resolution counts).
    pub(crate) fn switches(&self) -> u64 {
        match self {
            Master::Fixed(_) => 0,
            Master::Sentinel(master) => master.switches(),
        }
    }
}

impl StreamSource for Master {
    fn tracking_client(&self) -> Option<(u64, redis::Client)> {
        match self {
            Master::Fixed(link) => Some((0, link.tracking.clone())),
            Master::Sentinel(master) => master
                .current()
                .map(|link| (link.epoch, link.tracking.clone())),
        }
    }

    fn epochs(&self) -> Option<watch::Receiver<u64>> {
        match self {
            Master::Fixed(_) => None,
            Master::Sentinel(master) => Some(master.epochs()),
        }
    }
}

/// A TTL as `PX` milliseconds: at least 1 (a zero TTL would be an error reply) and at most
/// [`MAX_EXPIRY`](super::MAX_EXPIRY).
pub(crate) fn px(ttl: Duration) -> u64 {
    let max = u64::try_from(super::MAX_EXPIRY.as_millis()).unwrap_or(u64::MAX);
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, max)
}

impl RedisStore {
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        let result = match self {
            RedisStore::Single(master, _) => {
                let mut conn = master.manager().map_err(Error::Backend)?.into_owned();
                let result = cmd.query_async(&mut conn).await;
                master.saw(&result);
                result
            }
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(conn, _) => cmd.query_async(&mut conn.clone()).await,
        };
        result.map_err(Error::Backend)
    }

    pub(super) async fn query_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, Error> {
        let result = match self {
            RedisStore::Single(master, _) => {
                let mut conn = master.manager().map_err(Error::Backend)?.into_owned();
                let result = pipe.query_async(&mut conn).await;
                master.saw(&result);
                result
            }
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(conn, _) => pipe.query_async(&mut conn.clone()).await,
        };
        result.map_err(Error::Backend)
    }

    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, Error> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let result = match self {
            RedisStore::Single(master, _) => {
                let mut conn = master.manager().map_err(Error::Backend)?.into_owned();
                let result = invocation.invoke_async(&mut conn).await;
                master.saw(&result);
                result
            }
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(conn, _) => invocation.invoke_async(&mut conn.clone()).await,
        };
        result.map_err(Error::Backend)
    }
}

/// `CLUSTER SLOTS`: `[[start, end, [host, port, ...], replicas...], ...]`, masters only. An
/// empty, unknown (`?`) or missing host is the `fallback_host`.
#[cfg(feature = "cluster")]
fn parse_slots(reply: redis::Value, fallback_host: &str) -> Vec<super::SlotRange> {
    use redis::Value;
    let int = |v: &Value| match v {
        Value::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let Value::Array(ranges) = reply else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|range| {
            let Value::Array(fields) = range else {
                return None;
            };
            let (start, end) = (int(fields.first()?)?, int(fields.get(1)?)?);
            let Value::Array(master) = fields.get(2)? else {
                return None;
            };
            let port = match master.get(1)? {
                Value::Int(p) => *p,
                _ => return None,
            };
            let host = master
                .first()
                .and_then(text)
                .filter(|h| !h.is_empty() && h != "?")
                .unwrap_or_else(|| fallback_host.to_owned());
            Some((start, end, format!("{host}:{port}")))
        })
        .collect()
}

impl Backend for RedisStore {
    fn is_network(&self) -> bool {
        true
    }

    fn is_cluster(&self) -> bool {
        !matches!(self, RedisStore::Single(..))
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        tags: &'a [String],
        with_ttl: bool,
    ) -> StoreFuture<'a, Read> {
        Box::pin(self.read_entry(key, tags, with_ttl))
    }

    fn tag_versions<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, Vec<Option<u64>>> {
        Box::pin(self.read_versions(tags))
    }

    fn capture_tags<'a>(&'a self, tags: &'a [String], ttl: Duration) -> StoreFuture<'a, Vec<u64>> {
        Box::pin(self.capture(tags, ttl))
    }

    fn delete_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, AfterChange> {
        Box::pin(async move {
            if tags.is_empty() {
                return Ok(AfterChange::default());
            }
            self.invalidate(false, |pipe| {
                pipe.cmd("UNLINK").arg(tags).ignore();
            })
            .await
        })
    }

    fn claim<'a>(
        &'a self,
        keys: &'a EntryKeys<'a>,
        token: Option<&'a str>,
        lock_ttl: Duration,
        candidate: &'a str,
        generation_ttl: Duration,
    ) -> StoreFuture<'a, ClaimReply> {
        Box::pin(self.claim_entry(keys, token, lock_ttl, candidate, generation_ttl))
    }

    fn poll<'a>(&'a self, keys: &'a EntryKeys<'a>) -> StoreFuture<'a, (Option<StoredBytes>, bool)> {
        Box::pin(self.poll_entry(keys))
    }

    fn generation<'a>(&'a self, keys: &'a EntryKeys<'a>) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move { self.query(redis::cmd("GET").arg(keys.generation)).await })
    }

    fn fill<'a>(
        &'a self,
        keys: &'a EntryKeys<'a>,
        token: Option<&'a str>,
        generation: &'a str,
        value: FillValue<'a>,
        ttl: Duration,
    ) -> StoreFuture<'a, FillReply> {
        Box::pin(self.fill_entry(keys, token, generation, value, ttl))
    }

    fn new_generation<'a>(
        &'a self,
        keys: &'a EntryKeys<'a>,
        generation: &'a str,
        generation_ttl: Duration,
        change: EntryChange<'a>,
    ) -> StoreFuture<'a, AfterChange> {
        Box::pin(self.set_generation(keys, generation, generation_ttl, change))
    }

    fn renew<'a>(&'a self, lock: &'a str, token: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(self.renew_lock(lock, token, ttl))
    }

    fn unlock<'a>(&'a self, lock: &'a str, token: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.unlock_lock(lock, token))
    }

    fn ping<'a>(&'a self, addr: Option<&'a str>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            match (self, addr) {
                // By address, never by slot: a slot's dead master would make the client fall
                // back to a random live node, and the probe would answer for the wrong one.
                #[cfg(feature = "cluster")]
                (RedisStore::Cluster(conn, _), Some(addr)) => {
                    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
                        Error::Config(format!("cluster node address {addr:?} has no port"))
                    })?;
                    let port = port.parse().map_err(|_| {
                        Error::Config(format!("cluster node address {addr:?} has no port"))
                    })?;
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.to_owned(),
                        port,
                    });
                    conn.clone()
                        .route_command(redis::cmd("PING"), route)
                        .await
                        .map(drop)
                        .map_err(Error::Backend)
                }
                _ => self.query::<String>(&redis::cmd("PING")).await.map(drop),
            }
        })
    }

    fn server_version(&self) -> StoreFuture<'_, Option<String>> {
        Box::pin(async move {
            let info: String = match self {
                RedisStore::Single(..) => self.query(redis::cmd("INFO").arg("server")).await?,
                // The cluster client sends `INFO` to every master and answers a map; one node
                // is enough (a cluster runs one version, rolling upgrades aside).
                #[cfg(feature = "cluster")]
                RedisStore::Cluster(conn, _) => {
                    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
                    let mut cmd = redis::cmd("INFO");
                    cmd.arg("server");
                    let reply = conn
                        .clone()
                        .route_command(cmd, route)
                        .await
                        .map_err(Error::Backend)?;
                    redis::FromRedisValue::from_redis_value(reply)
                        .map_err(|e| Error::Protocol(format!("INFO server: {e}")))?
                }
            };
            Ok(info.lines().find_map(|line| {
                line.strip_prefix("redis_version:")
                    .map(|v| v.trim().to_owned())
            }))
        })
    }

    fn slot_map(&self) -> StoreFuture<'_, Option<Vec<super::SlotRange>>> {
        Box::pin(async move {
            match self {
                RedisStore::Single(..) => Ok(None),
                #[cfg(feature = "cluster")]
                RedisStore::Cluster(_, fallback_host) => {
                    let reply: redis::Value =
                        self.query(redis::cmd("CLUSTER").arg("SLOTS")).await?;
                    Ok(Some(parse_slots(reply, fallback_host)))
                }
            }
        })
    }

    fn link_failed(&self) {
        if let RedisStore::Single(Master::Sentinel(master), _) = self {
            master.prompt();
        }
    }

    fn is_single_redis(&self) -> bool {
        matches!(self, RedisStore::Single(..))
    }

    fn master_switches(&self) -> u64 {
        match self {
            RedisStore::Single(master, _) => master.switches(),
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(..) => 0,
        }
    }

    fn master_epochs(&self) -> Option<watch::Receiver<u64>> {
        match self {
            RedisStore::Single(master, _) => master.epochs(),
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(..) => None,
        }
    }

    fn redis_connection(&self) -> Option<ConnectionManager> {
        match self {
            RedisStore::Single(master, _) => master.manager().ok().map(Cow::into_owned),
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(..) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::px;

    #[test]
    fn px_is_within_what_redis_accepts() {
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_millis(1500)), 1500);
        assert_eq!(px(Duration::MAX), 100 * 365 * 24 * 3600 * 1000);
    }
}
