//! Redis through the `redis` crate: a `ConnectionManager` for a single node, the async
//! cluster client for Redis Cluster. Both multiplex concurrent requests on one connection
//! per node, so no pool is needed, and concurrent requests are pipelined.
//!
//! Hits are plain reads (`GET`, `MGET` with tag versions, `PTTL`). Scripts run only on write
//! paths, where they compare the lock owner's token and the entry's generation. An entry, its
//! lock and its generation share a hash tag, so every pipeline and script here stays in one
//! cluster slot; tag keys live in their own slots and are read with separate requests.

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use futures_util::future::join_all;
use redis::{Cmd, FromRedisValue, Pipeline, Script, aio::ConnectionManager};

use super::{
    Backend, Batcher, ClaimReply, EntryKeys, FillReply, FillValue, Read, StoreFuture, StoredBytes,
};
use crate::Error;

/// Stores (or deletes) the entry only if the generation is the one captured before the load
/// and (when a token is given) the caller still owns the lock; releases the lock if owned.
/// Returns 1 when written, 0 when the lock was not the caller's, -1 when the generation moved
/// (a missing generation key never matches: it was lost, so an invalidation may be lost too).
static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local owns = ARGV[1] == '' or redis.call('GET', KEYS[2]) == ARGV[1]
          if owns and ARGV[1] ~= '' then redis.call('DEL', KEYS[2]) end
          if not owns then return 0 end
          if redis.call('GET', KEYS[3]) ~= ARGV[2] then return -1 end
          if ARGV[5] == '1' then redis.call('DEL', KEYS[1])
          else redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4]) end
          return 1",
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
    /// One node, and the batcher of its plain lookups (`None`: every lookup sends its own GET).
    Single(ConnectionManager, Option<Arc<Batcher>>),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

pub(crate) fn px(ttl: Duration) -> u64 {
    // PX needs at least 1 ms; a zero TTL would be an error reply.
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// An entry's bytes and its tags' versions.
type TaggedRead = (Option<Vec<u8>>, Vec<Option<u64>>);

fn remaining(pttl: i64) -> Option<Duration> {
    u64::try_from(pttl).ok().map(Duration::from_millis)
}

/// A tag version as stored: decimal digits of a `u64` (anything else reads as no version).
fn parse_version(raw: Option<Vec<u8>>) -> Option<u64> {
    let raw = raw?;
    if raw.is_empty() || raw.len() > 20 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let digit = |b: &u8| u64::from(b - b'0');
    if raw.len() < 20 {
        // Fewer than 20 digits cannot overflow.
        return Some(raw.iter().fold(0, |n, b| n * 10 + digit(b)));
    }
    raw.iter()
        .try_fold(0u64, |n, b| n.checked_mul(10)?.checked_add(digit(b)))
}

impl RedisStore {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        let result = match self {
            RedisStore::Single(conn, _) => cmd.query_async(&mut conn.clone()).await,
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
        };
        result.map_err(Error::Backend)
    }

    async fn query_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, Error> {
        let result = match self {
            RedisStore::Single(conn, _) => pipe.query_async(&mut conn.clone()).await,
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
            RedisStore::Single(conn, _) => invocation.invoke_async(&mut conn.clone()).await,
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(conn) => invocation.invoke_async(&mut conn.clone()).await,
        };
        result.map_err(Error::Backend)
    }

    /// The entry, its tags' current versions and (if asked) its remaining TTL: one round of
    /// plain reads. With tags, entry and versions come from one `MGET` (split per slot by the
    /// cluster client); the `PTTL` goes alongside.
    async fn read_entry(&self, key: &str, tags: &[String], with_ttl: bool) -> Result<Read, Error> {
        if tags.is_empty() && !with_ttl {
            // The common hit: one GET (or a share of an MGET), without joining reads.
            let bytes: Option<Vec<u8>> = match self {
                RedisStore::Single(conn, Some(batcher)) => batcher.get(conn, key).await?,
                _ => self.query(redis::cmd("GET").arg(key)).await?,
            };
            return Ok(Read {
                current: bytes.map(StoredBytes::Owned),
                ttl: None,
                tag_versions: Vec::new(),
            });
        }
        if !with_ttl {
            // A tagged hit: one MGET, without joining reads.
            let (bytes, tag_versions) = self.read_tagged(key, tags).await?;
            return Ok(Read {
                current: bytes.map(StoredBytes::Owned),
                ttl: None,
                tag_versions,
            });
        }
        let values = async {
            if tags.is_empty() {
                let bytes: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key)).await?;
                return Ok::<_, Error>((bytes, Vec::new()));
            }
            self.read_tagged(key, tags).await
        };
        let ttl = async {
            let pttl: i64 = self.query(redis::cmd("PTTL").arg(key)).await?;
            Ok::<_, Error>(remaining(pttl))
        };
        let (values, ttl) = futures_util::future::join(values, ttl).await;
        let (bytes, tag_versions) = values?;
        Ok(Read {
            current: bytes.map(StoredBytes::Owned),
            ttl: ttl?,
            tag_versions,
        })
    }

    /// The entry and its tags' versions, in one `MGET`.
    async fn read_tagged(&self, key: &str, tags: &[String]) -> Result<TaggedRead, Error> {
        let raw: Vec<Option<Vec<u8>>> = self.query(redis::cmd("MGET").arg(key).arg(tags)).await?;
        if raw.len() != tags.len() + 1 {
            return Err(Error::Encode(format!(
                "MGET returned {} values for {} keys",
                raw.len(),
                tags.len() + 1
            )));
        }
        let mut values = raw.into_iter();
        let bytes = values.next().flatten();
        Ok((bytes, values.map(parse_version).collect()))
    }

    async fn read_versions(&self, tags: &[String]) -> Result<Vec<Option<u64>>, Error> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<Vec<u8>>> = self.query(redis::cmd("MGET").arg(tags)).await?;
        Ok(raw.into_iter().map(parse_version).collect())
    }

    async fn capture(&self, tags: &[String], ttl: Duration) -> Result<Vec<u64>, Error> {
        let ms = px(ttl);
        let captures = tags.iter().map(|tag| async move {
            let candidate = fastrand::u64(1..);
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(tag)
                .arg(candidate)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .ignore();
            pipe.cmd("PEXPIRE").arg(tag).arg(ms).arg("GT").ignore();
            pipe.cmd("GET").arg(tag);
            let (raw,): (Option<Vec<u8>>,) = self.query_pipe(&pipe).await?;
            parse_version(raw).ok_or_else(|| Error::Encode(format!("tag {tag} holds no version")))
        });
        join_all(captures).await.into_iter().collect()
    }

    async fn claim_entry(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        lock_ttl: Duration,
        candidate: &str,
        generation_ttl: Duration,
    ) -> Result<ClaimReply, Error> {
        let mut pipe = redis::pipe();
        match token {
            Some(token) => pipe
                .cmd("SET")
                .arg(keys.lock)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(px(lock_ttl)),
            None => pipe.cmd("PING"),
        };
        pipe.cmd("SET")
            .arg(keys.generation)
            .arg(candidate)
            .arg("NX")
            .arg("PX")
            .arg(px(generation_ttl))
            .ignore();
        pipe.cmd("GET")
            .arg(keys.entry)
            .cmd("GET")
            .arg(keys.generation);
        let (ok, bytes, generation): (Option<String>, Option<Vec<u8>>, Option<String>) =
            self.query_pipe(&pipe).await?;
        Ok(ClaimReply {
            locked: token.is_some() && ok.is_some_and(|r| r == "OK"),
            current: bytes.map(StoredBytes::Owned),
            generation,
        })
    }

    async fn poll_entry(&self, keys: &EntryKeys<'_>) -> Result<(Option<StoredBytes>, bool), Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(keys.entry).cmd("EXISTS").arg(keys.lock);
        let (bytes, locked): (Option<Vec<u8>>, bool) = self.query_pipe(&pipe).await?;
        Ok((bytes.map(StoredBytes::Owned), locked))
    }

    async fn fill_entry(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        generation: &str,
        value: FillValue<'_>,
        ttl: Duration,
    ) -> Result<FillReply, Error> {
        let ms = px(ttl).to_string();
        let (bytes, delete): (&[u8], &[u8]) = match value {
            FillValue::Bytes(bytes) => (bytes, b"0"),
            FillValue::Delete => (b"", b"1"),
        };
        let args: [&[u8]; 5] = [
            token.unwrap_or("").as_bytes(),
            generation.as_bytes(),
            bytes,
            ms.as_bytes(),
            delete,
        ];
        let reply = self
            .invoke(&FILL, &[keys.entry, keys.lock, keys.generation], &args)
            .await?;
        Ok(match reply {
            1 => FillReply::Stored,
            0 => FillReply::RefusedLock,
            _ => FillReply::RefusedGeneration,
        })
    }

    async fn set_generation(
        &self,
        keys: &EntryKeys<'_>,
        generation: &str,
        generation_ttl: Duration,
        value: Option<(&[u8], Duration)>,
        drop_entry: bool,
    ) -> Result<(), Error> {
        // One MULTI: the new generation and the entry change together, generation first.
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("SET")
            .arg(keys.generation)
            .arg(generation)
            .arg("PX")
            .arg(px(generation_ttl))
            .ignore();
        if let Some((bytes, ttl)) = value {
            pipe.cmd("SET")
                .arg(keys.entry)
                .arg(bytes)
                .arg("PX")
                .arg(px(ttl))
                .ignore();
        } else if drop_entry {
            pipe.cmd("UNLINK").arg(keys.entry).ignore();
        }
        self.query_pipe::<()>(&pipe).await
    }
}

impl Backend for RedisStore {
    fn is_network(&self) -> bool {
        true
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

    fn delete_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if tags.is_empty() {
                return Ok(());
            }
            self.query::<i64>(redis::cmd("UNLINK").arg(tags))
                .await
                .map(drop)
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
        value: Option<(&'a [u8], Duration)>,
        drop_entry: bool,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.set_generation(keys, generation, generation_ttl, value, drop_entry))
    }

    fn renew<'a>(&'a self, lock: &'a str, token: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let ms = px(ttl).to_string();
            let renewed = self
                .invoke(&RENEW, &[lock], &[token.as_bytes(), ms.as_bytes()])
                .await?;
            Ok(renewed == 1)
        })
    }

    fn unlock<'a>(&'a self, lock: &'a str, token: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move { Ok(self.invoke(&UNLOCK, &[lock], &[token.as_bytes()]).await? == 1) })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.query::<String>(&redis::cmd("PING")).await.map(drop) })
    }

    fn redis_connection(&self) -> Option<ConnectionManager> {
        match self {
            RedisStore::Single(conn, _) => Some(conn.clone()),
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_are_decimal_u64s_and_anything_else_is_none() {
        let parse = |s: &str| parse_version(Some(s.as_bytes().to_vec()));
        assert_eq!(parse("0"), Some(0));
        assert_eq!(parse("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse("18446744073709551616"), None, "overflow");
        assert_eq!(parse(""), None);
        assert_eq!(parse("12a"), None);
        assert_eq!(parse("-1"), None);
        assert_eq!(parse(" 1"), None);
        assert_eq!(parse_version(None), None);
    }
}
