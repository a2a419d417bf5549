//! Redis through the `redis` crate: a `ConnectionManager` for a single node, the async
//! cluster client for Redis Cluster. Both multiplex concurrent requests on one connection
//! per node, so no pool is needed.
//!
//! Hits are plain reads (`GET`, or `GET` + `PTTL` in one pipeline). Scripts run only on the
//! miss path, where they compare the lock owner's token. An entry and its lock share a hash
//! tag, so every pipeline and script here stays in one cluster slot.

use std::{sync::LazyLock, time::Duration};

use redis::{Cmd, FromRedisValue, Pipeline, Script, aio::ConnectionManager};

use super::{Acquired, Polled, StoredBytes};
use crate::Error;

/// Sets the entry and releases the lock, only if the caller still owns the lock.
static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[2]) == ARGV[1] then
            redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
            redis.call('DEL', KEYS[2])
            return 1
          end
          return 0",
    )
});

/// Extends the lock, only if the caller still owns it.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('PEXPIRE', KEYS[1], ARGV[2])
          end
          return 0",
    )
});

/// Deletes the lock, only if the caller still owns it.
static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('DEL', KEYS[1])
          end
          return 0",
    )
});

/// The connection to Redis.
#[derive(Clone)]
pub(crate) enum RedisStore {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

fn px(ttl: Duration) -> u64 {
    // PX needs at least 1 ms; a zero TTL would be an error reply.
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
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

    async fn query_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, Error> {
        let result = match self {
            RedisStore::Single(conn) => pipe.query_async(&mut conn.clone()).await,
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(conn) => pipe.query_async(&mut conn.clone()).await,
        };
        result.map_err(Error::Backend)
    }

    async fn invoke(&self, script: &Script, keys: &[&str], args: &[&[u8]]) -> Result<i64, Error> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let result = match self {
            RedisStore::Single(conn) => invocation.invoke_async(&mut conn.clone()).await,
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(conn) => invocation.invoke_async(&mut conn.clone()).await,
        };
        result.map_err(Error::Backend)
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<StoredBytes>, Error> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key)).await?;
        Ok(bytes.map(StoredBytes::Owned))
    }

    pub(crate) async fn get_with_ttl(
        &self,
        key: &str,
    ) -> Result<(Option<StoredBytes>, Option<Duration>), Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
        let (bytes, pttl): (Option<Vec<u8>>, i64) = self.query_pipe(&pipe).await?;
        let remaining = u64::try_from(pttl).ok().map(Duration::from_millis);
        Ok((bytes.map(StoredBytes::Owned), remaining))
    }

    pub(crate) async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), Error> {
        self.query(redis::cmd("SET").arg(key).arg(value).arg("PX").arg(px(ttl)))
            .await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), Error> {
        self.query::<i64>(redis::cmd("UNLINK").arg(key))
            .await
            .map(drop)
    }

    pub(crate) async fn acquire(
        &self,
        key: &str,
        lock: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Acquired, Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(lock)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(px(ttl));
        pipe.cmd("GET").arg(key);
        let (ok, bytes): (Option<String>, Option<Vec<u8>>) = self.query_pipe(&pipe).await?;
        Ok(Acquired {
            locked: ok.is_some(),
            current: bytes.map(StoredBytes::Owned),
        })
    }

    pub(crate) async fn poll(&self, key: &str, lock: &str) -> Result<Polled, Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("EXISTS").arg(lock);
        let (bytes, locked): (Option<Vec<u8>>, bool) = self.query_pipe(&pipe).await?;
        Ok(Polled {
            current: bytes.map(StoredBytes::Owned),
            locked,
        })
    }

    pub(crate) async fn fill(
        &self,
        key: &str,
        lock: &str,
        token: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, Error> {
        let ms = px(ttl).to_string();
        Ok(self
            .invoke(
                &FILL,
                &[key, lock],
                &[token.as_bytes(), value, ms.as_bytes()],
            )
            .await?
            == 1)
    }

    pub(crate) async fn renew(
        &self,
        lock: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, Error> {
        let ms = px(ttl).to_string();
        Ok(self
            .invoke(&RENEW, &[lock], &[token.as_bytes(), ms.as_bytes()])
            .await?
            == 1)
    }

    pub(crate) async fn unlock(&self, lock: &str, token: &str) -> Result<bool, Error> {
        Ok(self.invoke(&UNLOCK, &[lock], &[token.as_bytes()]).await? == 1)
    }
}
