//! [`FnSpec`]: what the attribute says about one function, and the defaults it falls back to.

use std::time::Duration;

use crate::Cache;

/// Longest TTL a negative result gets by default.
const DEFAULT_NONE_TTL_CAP: Duration = Duration::from_secs(60);
/// How long a stampede lock lives without renewal, by default.
pub(crate) const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(10);
/// The default `max_load`, in `lock_ttl`s.
const MAX_LOAD_LOCK_TTLS: u32 = 3;
/// Bounds of the default `lock_wait` (twice the last load time).
const LOCK_WAIT_MIN: Duration = Duration::from_millis(100);
const LOCK_WAIT_MAX: Duration = Duration::from_secs(5);

/// What the attribute says about one function; built by generated code at each call.
#[derive(Debug, Clone)]
pub struct FnSpec {
    /// Stable name in keys: `name = "..."` or `module_path::fn`.
    pub name: &'static str,
    /// `version = N`.
    pub version: u32,
    /// Hash of the return type's tokens and `version`.
    pub fingerprint: u64,
    /// `ttl`; `None` uses the cache's default.
    pub ttl: Option<Duration>,
    /// `none_ttl`; `None` uses min(ttl, 60 s).
    pub none_ttl: Option<Duration>,
    /// `cache_none`.
    pub cache_none: bool,
    /// `jitter`: fraction of the TTL by which expiries are spread (shortened).
    pub jitter: f64,
    /// `stale`: how long past `ttl` an entry may be served while one caller refreshes it.
    pub stale: Duration,
    /// `early_refresh`: the XFetch beta.
    pub early_refresh: Option<f64>,
    /// `lock`: take a cross-process lock on a miss.
    pub lock: bool,
    /// `lock_ttl`; `None` is 10 s.
    pub lock_ttl: Option<Duration>,
    /// `lock_wait`; `None` is twice the last load time, within 100 ms..5 s.
    pub lock_wait: Option<Duration>,
    /// `max_load`; `None` is three times `lock_ttl`.
    pub max_load: Option<Duration>,
    /// `l1 = true` with `l1_ttl` and `l1_outage`; `None` without a first level.
    pub l1: Option<crate::first_level::FirstLevelSpec>,
    /// `compress = ...` (with `compress_over`); `None` uses the cache's
    /// [`compression`](crate::CacheBuilder::compression).
    pub compression: Option<crate::envelope::Compression>,
    /// `codec = ...`; `None` uses the cache's [`codec`](crate::CacheBuilder::codec).
    pub codec: Option<crate::envelope::Codec>,
    /// The function's telemetry (a `static` in generated code).
    pub telemetry: &'static crate::telemetry::FnTelemetry,
}

impl FnSpec {
    /// This function, as telemetry records it.
    pub(crate) fn id(&self) -> crate::telemetry::FnId {
        crate::telemetry::FnId {
            name: self.name,
            telemetry: self.telemetry,
        }
    }

    /// How this function's values are written: its own codec and compression, else the
    /// cache's.
    pub(crate) fn encoding(&self, cache: &Cache) -> crate::envelope::Encoding {
        crate::envelope::Encoding {
            codec: self.codec.unwrap_or(cache.inner().codec),
            compression: self.compression.unwrap_or(cache.inner().compression),
        }
    }

    pub(crate) fn ttl(&self, cache: &Cache) -> Duration {
        self.ttl.unwrap_or(cache.inner().default_ttl)
    }

    /// How long Redis keeps an entry: `ttl + stale` (before jitter).
    pub(crate) fn kept(&self, cache: &Cache) -> Duration {
        self.ttl(cache).saturating_add(self.stale)
    }

    pub(crate) fn none_ttl(&self, cache: &Cache) -> Duration {
        self.none_ttl
            .unwrap_or_else(|| self.ttl(cache).min(DEFAULT_NONE_TTL_CAP))
    }

    pub(crate) fn jittered(&self, ttl: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return ttl;
        }
        let cut = ttl.mul_f64(self.jitter.min(1.0) * fastrand::f64());
        ttl.saturating_sub(cut).max(Duration::from_millis(1))
    }

    /// `lock_ttl`, or the default. A zero (from a constant; a literal zero is a compile error)
    /// would make a lock that expires at once: it is reported once and the default is used.
    pub(crate) fn lock_ttl(&self) -> Duration {
        match self.lock_ttl {
            Some(ttl) if ttl.is_zero() => {
                static REPORTED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !REPORTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::error!(
                        function = self.name,
                        default = ?DEFAULT_LOCK_TTL,
                        "lock_ttl is zero; using the default"
                    );
                }
                DEFAULT_LOCK_TTL
            }
            ttl => ttl.unwrap_or(DEFAULT_LOCK_TTL),
        }
    }

    /// How long a load may run before its lock stops being renewed (and a background refresh
    /// is dropped).
    pub(crate) fn max_load(&self) -> Duration {
        self.max_load
            .unwrap_or_else(|| self.lock_ttl().saturating_mul(MAX_LOAD_LOCK_TTLS))
    }

    /// `lock_wait`, or twice this function's last load time in `cache`'s process, bounded.
    pub(crate) fn lock_wait(&self, cache: &Cache) -> Duration {
        self.lock_wait.unwrap_or_else(|| {
            cache
                .inner()
                .telemetry
                .last_load_time(self.id())
                .map_or(LOCK_WAIT_MAX, |load| {
                    load.saturating_mul(2).clamp(LOCK_WAIT_MIN, LOCK_WAIT_MAX)
                })
        })
    }

    /// Whether a hit needs the entry's remaining TTL (one `PTTL` in the same round trip): for
    /// `stale` and `early_refresh`, and for a first level, whose entries never outlive it.
    pub(crate) fn needs_age(&self, cache: &Cache) -> bool {
        !self.stale.is_zero()
            || self.early_refresh.is_some()
            || (self.l1.is_some() && cache.first_level().is_some())
    }
}

/// Converts a `ttl = EXPR` constant: whole seconds or a `Duration`.
pub trait IntoTtl {
    /// The TTL as a duration.
    fn into_ttl(self) -> Duration;
}

impl IntoTtl for u64 {
    fn into_ttl(self) -> Duration {
        Duration::from_secs(self)
    }
}

impl IntoTtl for u32 {
    fn into_ttl(self) -> Duration {
        Duration::from_secs(u64::from(self))
    }
}

impl IntoTtl for Duration {
    fn into_ttl(self) -> Duration {
        self
    }
}
