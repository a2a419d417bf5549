//! Redis through the `redis` crate: a `ConnectionManager` for a single node, the async
//! cluster client for Redis Cluster. Both multiplex concurrent requests on one connection
//! per node, so no pool is needed.

use std::time::Duration;

use redis::{Cmd, FromRedisValue, aio::ConnectionManager};

use super::StoredBytes;
use crate::Error;

/// The connection to Redis.
#[derive(Clone)]
pub(crate) enum RedisStore {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl RedisStore {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        let result = match self {
            RedisStore::Single(conn) => cmd.query_async(&mut conn.clone()).await,
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
        };
        result.map_err(Error::Backend)
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<StoredBytes>, Error> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key)).await?;
        Ok(bytes.map(StoredBytes::Owned))
    }

    pub(crate) async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), Error> {
        // PX needs at least 1 ms; a zero TTL would be an error reply.
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.query(redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ms))
            .await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), Error> {
        self.query::<i64>(redis::cmd("UNLINK").arg(key))
            .await
            .map(drop)
    }
}
