//! The store operations, one method each, every one on one node. On a cluster, operations over
//! several keys (an entry with its tags, several tags) are split into one per key, sent
//! concurrently: one round of parallel reads, each behind its own node's breaker.

use std::time::Duration;

use futures_util::future::{join, join_all};

use super::Connection;
use crate::{
    Error,
    store::{
        Backend, ClaimReply, EntryChange, EntryKeys, FillReply, FillValue, Read, StoreFuture,
        StoredBytes,
    },
};

impl Connection {
    /// Whether several keys must be split into one operation each (they may live on several
    /// nodes).
    fn split(&self, keys: usize) -> bool {
        keys > 1 && self.backend.is_cluster()
    }

    pub(crate) async fn read(
        &self,
        key: &str,
        tags: &[String],
        with_ttl: bool,
    ) -> Result<Read, Error> {
        if !self.split(tags.len() + 1) {
            return self.run("get", key, |b| b.read(key, tags, with_ttl)).await;
        }
        let entry = self.run("get", key, |b| b.read(key, &[], with_ttl));
        let (entry, versions) = join(entry, self.tag_versions(tags)).await;
        let mut read = entry?;
        read.tag_versions = versions?;
        Ok(read)
    }

    /// Runs `op` over `tags`: once over all of them where they share a node, else once per tag,
    /// side by side, in the tags' order.
    async fn over_tags<'a, T: Send + 'a>(
        &'a self,
        name: &'static str,
        tags: &'a [String],
        op: impl Fn(&'a dyn Backend, &'a [String]) -> StoreFuture<'a, T> + Copy,
    ) -> Result<Vec<T>, Error> {
        match tags {
            [] => Ok(Vec::new()),
            [tag, ..] if !self.split(tags.len()) => {
                Ok(vec![self.run(name, tag, |b| op(b, tags)).await?])
            }
            _ => {
                let each = tags
                    .iter()
                    .map(|tag| self.run(name, tag, move |b| op(b, std::slice::from_ref(tag))));
                join_all(each).await.into_iter().collect()
            }
        }
    }

    pub(crate) async fn tag_versions(&self, tags: &[String]) -> Result<Vec<Option<u64>>, Error> {
        let parts = self
            .over_tags("tags", tags, |b, t| b.tag_versions(t))
            .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Captures tag versions before a load (none to capture costs no request).
    pub(crate) async fn capture_tags(
        &self,
        tags: &[String],
        ttl: Duration,
    ) -> Result<Vec<u64>, Error> {
        let parts = self
            .over_tags("capture_tags", tags, move |b, t| b.capture_tags(t, ttl))
            .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Invalidates tags; then, if asked to, waits for replicas (outside the breaker and the
    /// operation deadline).
    pub(crate) async fn delete_tags(&self, tags: &[String]) -> Result<(), Error> {
        let changed = self
            .over_tags("invalidate_tags", tags, |b, t| b.delete_tags(t))
            .await?;
        for after in changed {
            after.replicated().await?;
        }
        Ok(())
    }

    pub(crate) async fn claim(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        lock_ttl: Duration,
        candidate: &str,
        generation_ttl: Duration,
    ) -> Result<ClaimReply, Error> {
        self.run("claim", keys.entry, |b| {
            b.claim(keys, token, lock_ttl, candidate, generation_ttl)
        })
        .await
    }

    pub(crate) async fn poll(
        &self,
        keys: &EntryKeys<'_>,
    ) -> Result<(Option<StoredBytes>, bool), Error> {
        self.run("poll", keys.entry, |b| b.poll(keys)).await
    }

    pub(crate) async fn generation(&self, keys: &EntryKeys<'_>) -> Result<Option<String>, Error> {
        self.run("generation", keys.entry, |b| b.generation(keys))
            .await
    }

    pub(crate) async fn fill(
        &self,
        keys: &EntryKeys<'_>,
        token: Option<&str>,
        generation: &str,
        value: FillValue<'_>,
        ttl: Duration,
    ) -> Result<FillReply, Error> {
        self.run("fill", keys.entry, |b| {
            b.fill(keys, token, generation, value, ttl)
        })
        .await
    }

    pub(crate) async fn new_generation(
        &self,
        keys: &EntryKeys<'_>,
        generation: &str,
        generation_ttl: Duration,
        change: EntryChange<'_>,
    ) -> Result<(), Error> {
        // A change users make (invalidate, put) then waits for replicas if asked to, outside
        // the breaker and the operation deadline.
        self.run("generation", keys.entry, |b| {
            b.new_generation(keys, generation, generation_ttl, change)
        })
        .await?
        .replicated()
        .await
    }

    pub(crate) async fn renew(
        &self,
        lock: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, Error> {
        self.run("renew", lock, |b| b.renew(lock, token, ttl)).await
    }

    pub(crate) async fn unlock(&self, lock: &str, token: &str) -> Result<bool, Error> {
        self.run("unlock", lock, |b| b.unlock(lock, token)).await
    }
}
