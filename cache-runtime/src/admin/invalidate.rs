//! Operator invalidation: by exact entry key or by tag, through the library's own
//! invalidation (a new generation, or the tags' versions), recorded in a capped audit stream
//! `{namespace};audit`.

use std::time::Duration;

use serde::Serialize;

use super::{Admin, memory::function_of};
use crate::{
    Error,
    read::{Keys, drop_entry_by_key},
};

/// Audit records kept (approximately: `XADD ... MAXLEN ~`).
const AUDIT_KEEP: usize = 10_000;
/// How long an operator's new generation lives (the function's TTL is unknown here): loads
/// that began before it cannot fill for this long, nor after (a lost generation refuses them).
const GENERATION_TTL: Duration = Duration::from_secs(3600);

/// One operator action, as the audit stream holds it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AuditRecord {
    /// Who asked (user and host, as the caller gave it).
    pub who: String,
    /// What was done (`invalidate key K`, `invalidate tags T1 T2`).
    pub what: String,
    /// How it ended (`ok` or the error).
    pub outcome: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl Admin<'_> {
    /// Invalidates one entry by its exact key (`{namespace}:{function}:v{N}:{{args}}`, as
    /// `redis-cached hot` or `NAME_key` show it): every process stops serving it, and loads in
    /// flight cannot store theirs. Recorded in the audit stream as done by `who`. Returns
    /// whether an entry was there (a new generation is written either way, so a load in flight
    /// is refused even when the entry was not stored yet).
    ///
    /// # Errors
    ///
    /// [`Error::NotAnEntryKey`] for a key outside the namespace or a lock, generation or tag
    /// key; a store error when Redis cannot be reached.
    pub async fn invalidate_key(&self, key: &str, who: &str) -> Result<bool, Error> {
        let prefix = format!("{}:", self.cache.namespace());
        let is_entry = key
            .strip_prefix(&prefix)
            .is_some_and(|rest| !rest.starts_with("tag:{") && function_of(rest).is_some());
        if !is_entry {
            return Err(Error::NotAnEntryKey(key.to_owned()));
        }
        let mut conn = self.connection()?;
        let existed: bool = match self.query(&mut conn, redis::cmd("EXISTS").arg(key)).await {
            Ok(existed) => existed,
            Err(err) => {
                let failed = Err(err);
                self.audit(who, format!("invalidate key {key}"), &failed)
                    .await;
                return failed.map(|()| false);
            }
        };
        let keys = Keys::for_entry(key.to_owned());
        self.cache.inner().flights.detach(&keys.entry);
        let done = self
            .cache
            .changing_entry(
                &keys.entry,
                drop_entry_by_key(self.cache, &keys, GENERATION_TTL),
            )
            .await;
        let what = if existed {
            format!("invalidate key {key}")
        } else {
            format!("invalidate key {key} (no entry was there)")
        };
        self.audit(who, what, &done).await;
        done.map(|()| existed)
    }

    /// Invalidates tags ([`Cache::invalidate_tags`](crate::Cache::invalidate_tags)), recorded
    /// in the audit stream as done by `who`.
    ///
    /// # Errors
    ///
    /// A store error when Redis cannot be reached: nothing was invalidated.
    pub async fn invalidate_tags(&self, tags: &[String], who: &str) -> Result<(), Error> {
        let done = self.cache.invalidate_tags(tags).await;
        self.audit(who, format!("invalidate tags {}", tags.join(" ")), &done)
            .await;
        done
    }

    /// The newest `count` audit records, newest first.
    pub async fn audit_log(&self, count: usize) -> Result<Vec<AuditRecord>, Error> {
        let mut conn = self.connection()?;
        let reply: Vec<(String, Vec<(String, String)>)> = self
            .query(
                &mut conn,
                redis::cmd("XREVRANGE")
                    .arg(audit_key(self.cache.namespace()))
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        Ok(reply
            .into_iter()
            .map(|(id, fields)| {
                let get = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                AuditRecord {
                    who: get("who"),
                    what: get("what"),
                    outcome: get("outcome"),
                    at_ms: id
                        .split_once('-')
                        .and_then(|(ms, _)| ms.parse().ok())
                        .unwrap_or(0),
                }
            })
            .collect())
    }

    /// Appends an action to the audit stream; a failure to record is logged, never hides the
    /// action's own result.
    async fn audit(&self, who: &str, what: String, done: &Result<(), Error>) {
        let outcome = match done {
            Ok(()) => "ok".to_owned(),
            Err(err) => err.to_string(),
        };
        let recorded = match self.connection() {
            Ok(mut conn) => {
                let mut command = redis::cmd("XADD");
                command
                    .arg(audit_key(self.cache.namespace()))
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(AUDIT_KEEP)
                    .arg("*")
                    .arg("who")
                    .arg(who)
                    .arg("what")
                    .arg(&what)
                    .arg("outcome")
                    .arg(&outcome);
                self.query::<String>(&mut conn, &command).await.map(drop)
            }
            Err(err) => Err(err),
        };
        if let Err(err) = recorded {
            tracing::warn!(who, what, outcome, error = %err, "operator action not recorded in the audit stream");
        }
    }
}

/// The audit stream of a namespace.
pub fn audit_key(namespace: &str) -> String {
    format!("{namespace};audit")
}
