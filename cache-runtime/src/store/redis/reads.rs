//! The read side: lookups (`GET`, `MGET` with tag versions, `PTTL`) and tag-version captures.
//! Plain reads only: no script runs on a hit.

use std::time::Duration;

use futures_util::future::join_all;

use super::{RedisStore, px};
use crate::{
    Error,
    store::{Read, StoredBytes, wrong_type_is_absent},
};

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
    /// The entry, its tags' current versions and (if asked) its remaining TTL: one round of
    /// plain reads. With tags, entry and versions come from one `MGET` (split per slot by the
    /// cluster client); the `PTTL` goes alongside.
    pub(super) async fn read_entry(
        &self,
        key: &str,
        tags: &[String],
        with_ttl: bool,
    ) -> Result<Read, Error> {
        if tags.is_empty() && !with_ttl {
            // The common hit: one GET (or a share of an MGET), without joining reads.
            let bytes = wrong_type_is_absent(match self {
                RedisStore::Single(master, Some(batcher)) => {
                    let conn = master.manager().map_err(Error::Backend)?;
                    let reply = batcher.get(&conn, key).await;
                    if let Err(Error::Backend(err)) = &reply {
                        master.saw_error(err);
                    }
                    reply
                }
                _ => self.query(redis::cmd("GET").arg(key)).await,
            })?;
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
                let bytes = wrong_type_is_absent(self.query(redis::cmd("GET").arg(key)).await)?;
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
    pub(super) async fn read_tagged(
        &self,
        key: &str,
        tags: &[String],
    ) -> Result<TaggedRead, Error> {
        let raw: Vec<Option<Vec<u8>>> = self.query(redis::cmd("MGET").arg(key).arg(tags)).await?;
        if raw.len() != tags.len() + 1 {
            return Err(Error::Protocol(format!(
                "MGET returned {} values for {} keys",
                raw.len(),
                tags.len() + 1
            )));
        }
        let mut values = raw.into_iter();
        let bytes = values.next().flatten();
        Ok((bytes, values.map(parse_version).collect()))
    }

    pub(super) async fn read_versions(&self, tags: &[String]) -> Result<Vec<Option<u64>>, Error> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<Vec<u8>>> = self.query(redis::cmd("MGET").arg(tags)).await?;
        Ok(raw.into_iter().map(parse_version).collect())
    }

    pub(super) async fn capture(&self, tags: &[String], ttl: Duration) -> Result<Vec<u64>, Error> {
        // Kept for twice the entry's lifetime, moved once less than its lifetime is left (both
        // within the longest expiry, so the move stays rare even for century-long TTLs).
        let cap = px(crate::store::MAX_EXPIRY);
        let low = px(ttl).min(cap / 2).to_string();
        let keep = px(ttl).saturating_mul(2).min(cap).to_string();
        let captures = tags.iter().map(|tag| {
            let (low, keep) = (&low, &keep);
            async move {
                let candidate = fastrand::u64(1..).to_string();
                let args: [&[u8]; 3] = [candidate.as_bytes(), low.as_bytes(), keep.as_bytes()];
                let raw: Option<Vec<u8>> = self.invoke(&CAPTURE, &[tag], &args).await?;
                Ok(parse_version(raw).unwrap_or(0))
            }
        });
        join_all(captures).await.into_iter().collect()
    }
}

/// A tag's current version, created (random) if missing or not a version (written by something
/// else: kept, it would make every entry with the tag miss for good), its key kept alive for at least the
/// entry's lifetime (the longest an entry recording the version lives). The expiry is moved
/// only when less than that is left (ARGV[2]), and then to twice it (ARGV[3]): every move is a
/// change Redis reports to the first levels of every process (an invalidation of the tag), so
/// it must be rare, not once per capture. Expiries go to Redis as the strings they came as
/// (Lua formats some large numbers as `1e+12`, which `SET` rejects on some versions).
static CAPTURE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local v = redis.call('GET', KEYS[1])
          if not v or #v > 20 or not string.match(v, '^%d+$') then
            redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
            return ARGV[1]
          end
          if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
            redis.call('PEXPIRE', KEYS[1], ARGV[3])
          end
          return v",
    )
});

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
