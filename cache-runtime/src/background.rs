//! Writes that finish after the call that started them has returned: the fill after a load
//! (so a miss costs its caller two round trips, not three), the refresh of a stale entry, the
//! release of a lock whose load was cancelled. Counted, so [`Cache::wait_for_writes`] can wait
//! for them before a shutdown or in a test that reads Redis directly.
//!
//! [`Cache::wait_for_writes`]: crate::Cache::wait_for_writes

use std::{
    future::Future,
    sync::atomic::{AtomicUsize, Ordering},
};

use tokio::sync::Notify;

use crate::Cache;

#[derive(Default)]
pub(crate) struct Background {
    running: AtomicUsize,
    idle: Notify,
}

/// Held by a running background write; dropping it (done, cancelled or panicked) counts it out.
struct Running(Cache);

impl Drop for Running {
    fn drop(&mut self) {
        let background = &self.0.inner().background;
        if background.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            background.idle.notify_waiters();
        }
    }
}

impl Cache {
    /// Runs `task` in a Tokio task counted by [`wait_for_writes`](Self::wait_for_writes).
    /// Outside a Tokio runtime, gives the task back so the caller can await it itself.
    pub(crate) fn spawn_write<F>(&self, task: F) -> Result<(), F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(task);
        };
        self.inner()
            .background
            .running
            .fetch_add(1, Ordering::AcqRel);
        let running = Running(self.clone());
        runtime.spawn(async move {
            let _running = running;
            task.await;
        });
        Ok(())
    }

    /// Waits until every write this cache runs in the background has finished: fills that
    /// follow loads, refreshes of stale entries, lock releases.
    ///
    /// A call returns its loader's value as soon as the loader finishes, while the entry is
    /// stored in the background (see [`CacheBuilder::fill_in_background`]). Await this before
    /// a graceful shutdown, so no fill is lost, or in a test that reads Redis directly.
    ///
    /// [`CacheBuilder::fill_in_background`]: crate::CacheBuilder::fill_in_background
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let cache = cache_runtime::Cache::builder().url("mem://").build().await?;
    /// // ... serve requests ...
    /// cache.wait_for_writes().await;
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn wait_for_writes(&self) {
        let background = &self.inner().background;
        loop {
            let idle = background.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if background.running.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}
