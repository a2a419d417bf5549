//! Memory per function: the namespace scanned with `SCAN` in small batches (never `KEYS`),
//! `MEMORY USAGE` and `PTTL` on a sample of each function's entries, and the server's limit
//! and eviction policy from `INFO memory` (managed services block `CONFIG GET`).

use std::collections::HashMap;

use serde::Serialize;

use super::Admin;
use crate::Error;

/// Where a namespace's memory goes.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MemoryReport {
    /// The namespace.
    pub namespace: String,
    /// Keys the scan found under `{namespace}:`.
    pub keys: u64,
    /// Per function, largest first.
    pub functions: Vec<FunctionMemory>,
    /// Tag keys (`{namespace}:tag:{...}`).
    pub tag_keys: u64,
    /// Lock and generation keys (`...:lock`, `...:gen`).
    pub lock_keys: u64,
    /// The server's `used_memory`, in bytes.
    pub used_memory: u64,
    /// The server's `maxmemory` (0: no limit).
    pub maxmemory: u64,
    /// The server's `maxmemory_policy`.
    pub maxmemory_policy: String,
    /// What to change, where the policy or limit matters for a cache.
    pub advice: Vec<String>,
}

/// One function's entries.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FunctionMemory {
    /// The function's stable name (as in its keys).
    pub function: String,
    /// Entries found.
    pub entries: u64,
    /// Entries measured with `MEMORY USAGE`.
    pub sampled: u64,
    /// Estimated bytes of all entries: the sample's mean times `entries` (exact when every
    /// entry was sampled; otherwise within about 2 standard errors of the sample's mean with
    /// 95% confidence).
    pub bytes: u64,
    /// Shortest, median and longest remaining TTL in the sample, in seconds.
    pub ttl_secs: [u64; 3],
    /// The largest sampled entries and their bytes.
    pub largest: Vec<(String, u64)>,
}

/// Keys sampled per `SCAN` batch and per `MEMORY USAGE` pipeline.
const BATCH: usize = 200;

impl Admin<'_> {
    /// Scans the namespace and measures up to `sample` entries per function (reservoir
    /// sampling, so the sample is uniform whatever the scan order).
    pub async fn memory(&self, sample: usize) -> Result<MemoryReport, Error> {
        let mut conn = self.connection()?;
        let namespace = self.cache.namespace();
        let prefix = format!("{namespace}:");
        let tag_prefix = format!("{namespace}:tag:{{");
        let mut cursor: u64 = 0;
        let mut keys = 0u64;
        let (mut tag_keys, mut lock_keys) = (0u64, 0u64);
        let mut samples: HashMap<String, (u64, Vec<String>)> = HashMap::new();
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .query(
                    &mut conn,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{}*", glob_escape(&prefix)))
                        .arg("COUNT")
                        .arg(BATCH),
                )
                .await?;
            for key in batch {
                keys += 1;
                if key.starts_with(&tag_prefix) {
                    tag_keys += 1;
                } else if key.ends_with(":lock") || key.ends_with(":gen") {
                    lock_keys += 1;
                } else if let Some(function) = function_of(&key[prefix.len()..]) {
                    let (seen, kept) = samples.entry(function.to_owned()).or_default();
                    *seen += 1;
                    if kept.len() < sample {
                        kept.push(key);
                    } else if let Ok(slot) = usize::try_from(fastrand::u64(..*seen))
                        && slot < sample
                    {
                        kept[slot] = key;
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }

        let mut functions = Vec::new();
        for (function, (entries, kept)) in samples {
            let mut measured: Vec<(String, u64, i64)> = Vec::with_capacity(kept.len());
            for chunk in kept.chunks(BATCH) {
                let mut pipe = redis::pipe();
                for key in chunk {
                    pipe.cmd("MEMORY")
                        .arg("USAGE")
                        .arg(key)
                        .arg("SAMPLES")
                        .arg(0);
                    pipe.cmd("PTTL").arg(key);
                }
                let replies: Vec<Option<i64>> = self.pipeline(&mut conn, &pipe).await?;
                for (key, pair) in chunk.iter().zip(replies.chunks(2)) {
                    // A key that expired between the scan and the measure has no usage.
                    if let [Some(bytes), Some(ttl)] = pair {
                        measured.push((key.clone(), *bytes as u64, *ttl));
                    }
                }
            }
            let sampled = measured.len() as u64;
            let total: u64 = measured.iter().map(|m| m.1).sum();
            let bytes = if sampled == 0 {
                0
            } else {
                (total as f64 / sampled as f64 * entries as f64).round() as u64
            };
            let mut ttls: Vec<u64> = measured
                .iter()
                .map(|m| u64::try_from(m.2).unwrap_or(0) / 1000)
                .collect();
            ttls.sort_unstable();
            let ttl_secs = match ttls.as_slice() {
                [] => [0; 3],
                t => [t[0], t[t.len() / 2], t[t.len() - 1]],
            };
            measured.sort_by_key(|m| std::cmp::Reverse(m.1));
            functions.push(FunctionMemory {
                function,
                entries,
                sampled,
                bytes,
                ttl_secs,
                largest: measured.into_iter().take(5).map(|m| (m.0, m.1)).collect(),
            });
        }
        functions.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.function.cmp(&b.function)));

        let info: String = self
            .query(&mut conn, redis::cmd("INFO").arg("memory"))
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        let number = |name: &str| field(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        let maxmemory_policy = field("maxmemory_policy").unwrap_or_default();
        let maxmemory = number("maxmemory");
        Ok(MemoryReport {
            namespace: namespace.to_owned(),
            keys,
            functions,
            tag_keys,
            lock_keys,
            used_memory: number("used_memory"),
            maxmemory,
            advice: advice(maxmemory, &maxmemory_policy),
            maxmemory_policy,
        })
    }
}

/// The function of an entry key's part after `{namespace}:` (`{name}:v{N}:{{args}}`).
pub(crate) fn function_of(rest: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(at) = rest[from..].find(":v").map(|i| i + from) {
        let digits = rest[at + 2..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let end = at + 2 + digits;
        if at > 0 && digits > 0 && rest[end..].starts_with(":{") && rest.ends_with('}') {
            return Some(&rest[..at]);
        }
        from = at + 2;
    }
    None
}

/// Escapes glob characters of a `SCAN MATCH` prefix.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn advice(maxmemory: u64, policy: &str) -> Vec<String> {
    let mut advice = Vec::new();
    if maxmemory == 0 {
        advice.push(
            "maxmemory is 0 (no limit): Redis grows until the host runs out of memory; set \
             maxmemory so the eviction policy can act"
                .to_owned(),
        );
    }
    match policy {
        "noeviction" => advice.push(
            "maxmemory-policy is noeviction: once full, Redis refuses writes, so fills fail \
             (calls are still answered by their loaders); a cache wants allkeys-lru or \
             allkeys-lfu"
                .to_owned(),
        ),
        p if p.starts_with("volatile-") => advice.push(format!(
            "maxmemory-policy is {p}: fine for cache entries (every one has an expiry); keys \
             without an expiry from other uses of this Redis are never evicted"
        )),
        _ => {}
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_of_a_key_skips_versions_inside_its_path() {
        assert_eq!(function_of("get_user:v0:{42}"), Some("get_user"));
        assert_eq!(
            function_of("app::v1::get:v3:{a:v2:{b}}"),
            Some("app::v1::get")
        );
        assert_eq!(function_of("n:v7:{x}"), Some("n"));
        assert_eq!(function_of("no-version"), None);
        assert_eq!(function_of("n:v7:{x}:lock"), None);
    }
}
