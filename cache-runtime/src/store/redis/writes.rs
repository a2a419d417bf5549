//! The write side: the claim pipeline, the lock scripts, the checked fill and new
//! generations. Every pipeline and script here touches one entry's keys (one hash tag, one
//! cluster slot).

use std::{sync::LazyLock, time::Duration};

use redis::{Pipeline, Script};

use super::{RedisStore, px};
use crate::{
    Error,
    store::{AfterChange, ClaimReply, EntryChange, EntryKeys, FillReply, FillValue, StoredBytes},
};

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

impl RedisStore {
    pub(super) async fn claim_entry(
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
        // `NX GET` (Redis 7.0+): the generation as it was, or nothing when our candidate
        // became it, in one command.
        pipe.cmd("SET")
            .arg(keys.generation)
            .arg(candidate)
            .arg("NX")
            .arg("PX")
            .arg(px(generation_ttl))
            .arg("GET");
        // `MGET`, not `GET`: a value of another type at the key reads as absent (and is
        // overwritten by the fill) instead of failing the whole pipeline with `WRONGTYPE`.
        pipe.cmd("MGET").arg(keys.entry);
        let (ok, previous, entry): (Option<String>, Option<String>, Vec<Option<Vec<u8>>>) =
            self.query_pipe(&pipe).await?;
        let generation = Some(previous.unwrap_or_else(|| candidate.to_owned()));
        Ok(ClaimReply {
            locked: token.is_some() && ok.is_some_and(|r| r == "OK"),
            current: entry.into_iter().next().flatten().map(StoredBytes::Owned),
            generation,
        })
    }

    pub(super) async fn poll_entry(
        &self,
        keys: &EntryKeys<'_>,
    ) -> Result<(Option<StoredBytes>, bool), Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("MGET")
            .arg(keys.entry)
            .cmd("EXISTS")
            .arg(keys.lock);
        let (entry, locked): (Vec<Option<Vec<u8>>>, bool) = self.query_pipe(&pipe).await?;
        let bytes = entry.into_iter().next().flatten();
        Ok((bytes.map(StoredBytes::Owned), locked))
    }

    pub(super) async fn fill_entry(
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
        let reply: i64 = self
            .invoke(&FILL, &[keys.entry, keys.lock, keys.generation], &args)
            .await?;
        Ok(match reply {
            1 => FillReply::Stored,
            0 => FillReply::RefusedLock,
            _ => FillReply::RefusedGeneration,
        })
    }

    pub(super) async fn set_generation(
        &self,
        keys: &EntryKeys<'_>,
        generation: &str,
        generation_ttl: Duration,
        change: EntryChange<'_>,
    ) -> Result<AfterChange, Error> {
        // One MULTI: the new generation and the entry change together, generation first.
        let commands = |pipe: &mut Pipeline| {
            pipe.cmd("SET")
                .arg(keys.generation)
                .arg(generation)
                .arg("PX")
                .arg(px(generation_ttl))
                .ignore();
            match change {
                EntryChange::Keep => {}
                EntryChange::Drop => {
                    pipe.cmd("UNLINK").arg(keys.entry).ignore();
                }
                EntryChange::Put(bytes, ttl) => {
                    pipe.cmd("SET")
                        .arg(keys.entry)
                        .arg(bytes)
                        .arg("PX")
                        .arg(px(ttl))
                        .ignore();
                }
            }
        };
        if let EntryChange::Keep = change {
            let mut pipe = redis::pipe();
            pipe.atomic();
            commands(&mut pipe);
            self.query_pipe::<()>(&pipe).await?;
            return Ok(AfterChange::default());
        }
        self.invalidate(true, commands).await
    }

    /// Sends a change users make (an invalidation, a put), as one MULTI if `atomic`; what it
    /// still owes is waiting, on the same master, for its replicas (`replication.rs`) when
    /// invalidations wait for them.
    pub(super) async fn invalidate(
        &self,
        atomic: bool,
        commands: impl FnOnce(&mut Pipeline),
    ) -> Result<AfterChange, Error> {
        let mut pipe = redis::pipe();
        if atomic {
            pipe.atomic();
        }
        commands(&mut pipe);
        let master = match self {
            RedisStore::Single(master, _) => master,
            #[cfg(feature = "cluster")]
            RedisStore::Cluster(..) => {
                self.query_pipe::<()>(&pipe).await?;
                return Ok(AfterChange::default());
            }
        };
        // One link for the change and its wait: a switch of master between them must not
        // make the wait count another node's replicas.
        let link = master.link().map_err(Error::Backend)?;
        let result = pipe.query_async::<()>(&mut link.manager.clone()).await;
        master.saw(&result);
        result.map_err(Error::Backend)?;
        Ok(AfterChange(link.replication.clone()))
    }

    pub(super) async fn renew_lock(
        &self,
        lock: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, Error> {
        let ms = px(ttl).to_string();
        let renewed: i64 = self
            .invoke(&RENEW, &[lock], &[token.as_bytes(), ms.as_bytes()])
            .await?;
        Ok(renewed == 1)
    }

    pub(super) async fn unlock_lock(&self, lock: &str, token: &str) -> Result<bool, Error> {
        let unlocked: i64 = self.invoke(&UNLOCK, &[lock], &[token.as_bytes()]).await?;
        Ok(unlocked == 1)
    }
}
