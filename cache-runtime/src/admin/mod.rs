//! Operator views and actions over a namespace, across every process that reports to it (see
//! [`CacheBuilder::fleet_telemetry`](crate::CacheBuilder::fleet_telemetry)): what the
//! `redis-cached` command line shows and does. Reached through [`Cache::admin`].
//!
//! Every view reads Redis only: fleet counters and hot keys from the keys the processes flush,
//! memory by sampling the namespace with `SCAN` in small batches (never `KEYS`). Actions go
//! through the library's own invalidation (generations and tags), so an in-flight load cannot
//! put an old value back, and each is recorded in a capped audit stream.

mod invalidate;
mod memory;
mod stats;

use redis::aio::ConnectionManager;

pub use self::{
    invalidate::AuditRecord,
    memory::{FunctionMemory, MemoryReport},
    stats::{FleetStats, FunctionStats, HotKey, ServerHotKeys},
};
use crate::{Cache, Error};

/// Operator views and actions over this cache's namespace. Single-node Redis only.
///
/// ```no_run
/// # async fn run() -> Result<(), cache_runtime::Error> {
/// use std::time::Duration;
/// let cache = cache_runtime::Cache::builder()
///     .url("redis://127.0.0.1:6379")
///     .namespace("myapp")
///     .build()
///     .await?;
/// let stats = cache.admin().stats(Duration::from_secs(60)).await?;
/// for function in &stats.functions {
///     println!("{}: {:.1}% hits", function.function, function.hit_rate * 100.0);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Admin<'a> {
    cache: &'a Cache,
}

impl Cache {
    /// Operator views and actions over this cache's namespace: fleet statistics, hot keys,
    /// memory, invalidation with an audit trail.
    pub fn admin(&self) -> Admin<'_> {
        Admin { cache: self }
    }
}

impl Admin<'_> {
    /// The namespace's connection, or an error saying why there is none.
    fn connection(&self) -> Result<ConnectionManager, Error> {
        self.cache.redis_connection().ok_or_else(|| {
            Error::Config(
                "operator views need a single Redis node or Sentinel (not the embedded store or a \
                 cluster), and under Sentinel a known master"
                    .into(),
            )
        })
    }

    /// Runs `command` under the admin deadline.
    async fn query<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
        command: &redis::Cmd,
    ) -> Result<T, Error> {
        self.within_deadline(command.query_async(conn)).await
    }

    /// Runs `pipe` under the admin deadline.
    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
        pipe: &redis::Pipeline,
    ) -> Result<T, Error> {
        self.within_deadline(pipe.query_async(conn)).await
    }

    /// Four times the cache's operation timeout: operator reads may be larger than a call's.
    async fn within_deadline<T>(
        &self,
        reply: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        let timeout = self.cache.conn().timeout().saturating_mul(4);
        match tokio::time::timeout(timeout, reply).await {
            Ok(reply) => reply.map_err(Error::from),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }
}
