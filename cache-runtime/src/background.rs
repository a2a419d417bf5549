//! Writes that finish after the call that started them has returned: the fill after a load
//! (so a miss costs its caller two round trips, not three), the refresh of a stale entry, the
//! release of a lock whose load was cancelled. Counted, so [`Cache::wait_for_writes`] can wait
//! for them before a shutdown or in a test that reads Redis directly.
//!
//! [`Cache::wait_for_writes`]: crate::Cache::wait_for_writes

use std::{
    future::Future,
    sync::atomic::{AtomicUsize, Ordering},
    task::{Context, Waker},
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
        self.spawn_counted(&runtime, Box::pin(task));
        Ok(())
    }

    /// [`spawn_write`](Self::spawn_write) for a task that starts with a request (a fill): polls
    /// it once here, so the request is on its way before the task is handed off.
    ///
    /// The first hand-off to another task after a wake-up wakes a parked worker thread
    /// (measured 25-65 µs on a 2-core VM). Sending the request is such a hand-off (to the
    /// connection's driver), one a caller storing its own value pays anyway; spawning after
    /// it costs about 1 µs. Only for tasks whose first poll does no more than that: a loader
    /// must not run its first steps on the caller's time.
    pub(crate) fn start_write<F>(&self, task: F) -> Result<(), F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(task);
        };
        let mut task = Box::pin(task);
        if task
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            // Polled again in its own task, which then registers its own waker.
            self.spawn_counted(&runtime, task);
        }
        Ok(())
    }

    fn spawn_counted(
        &self,
        runtime: &tokio::runtime::Handle,
        task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    ) {
        self.inner()
            .background
            .running
            .fetch_add(1, Ordering::AcqRel);
        let running = Running(self.clone());
        runtime.spawn(async move {
            let _running = running;
            task.await;
        });
    }

    /// Shuts the cache's background work down before the process exits: stops following
    /// Redis's invalidations (the first level is off from here on), waits for every pending
    /// write, as [`wait_for_writes`](Self::wait_for_writes) does, then sends the fleet
    /// counters one last time and stops their periodic flush.
    ///
    /// The installed default cache lives in a static and is never dropped, so call this at the
    /// end of a graceful shutdown. Calls made afterwards still work, against Redis only; writes
    /// they start in the background are waited for by the next `wait_for_writes`.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let cache = cache_runtime::Cache::builder().url("mem://").build().await?;
    /// cache.install();
    /// // ... serve requests ...
    /// cache.shutdown().await;
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn shutdown(&self) {
        if let Some(level) = &self.inner().first_level {
            level.stop();
        }
        self.wait_for_writes().await;
        self.inner().telemetry.stop();
        if let Err(err) = self.flush_telemetry().await {
            tracing::debug!(namespace = self.namespace(), error = %err, "last fleet counters not flushed");
        }
    }

    /// Sends this process's fleet counters and hot keys now (they are also sent every
    /// `CacheBuilder::telemetry_interval`, and by [`shutdown`](Self::shutdown)). Nothing to
    /// send without Redis (the embedded store) or on a cluster.
    ///
    /// # Errors
    ///
    /// When Redis is unreachable: what this flush carried is lost (at most one interval).
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let cache = cache_runtime::Cache::builder().url("mem://").build().await?;
    /// cache.flush_telemetry().await?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn flush_telemetry(&self) -> Result<(), crate::Error> {
        let telemetry = &self.inner().telemetry;
        let Some(mut conn) = self.redis_connection().filter(|_| telemetry.fleet) else {
            return Ok(());
        };
        if self.is_degraded() {
            return Err(crate::Error::Unavailable);
        }
        // One flush at a time: each sends what changed since the one before.
        let mut flushed = telemetry.flushed.lock().await;
        let pipe = flushed.pipeline(
            self.namespace(),
            &telemetry.functions(),
            &telemetry.process,
            std::time::SystemTime::now(),
        );
        // Off every call's path: a deadline of its own, not the calls' operation timeout.
        let timeout = self.conn().timeout().max(std::time::Duration::from_secs(2));
        match tokio::time::timeout(timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(reply) => reply.map_err(crate::Error::from),
            Err(_) => Err(crate::Error::Timeout(timeout)),
        }
    }

    /// Flushes the fleet counters every `every` until the cache is dropped or shut down.
    pub(crate) fn start_telemetry_flush(&self, every: std::time::Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                namespace = self.namespace(),
                "built outside a Tokio runtime: fleet counters are sent only by \
                 flush_telemetry() and shutdown()"
            );
            return;
        };
        let weak = self.downgrade();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(cache) = Cache::upgrade(&weak) else {
                    return;
                };
                if cache.inner().telemetry.is_stopped() {
                    return;
                }
                if let Err(err) = cache.flush_telemetry().await {
                    tracing::debug!(namespace = cache.namespace(), error = %err, "fleet counters not flushed");
                }
            }
        });
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
