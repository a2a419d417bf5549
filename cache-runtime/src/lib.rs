//! Runtime of [`redis-cached`](https://docs.rs/redis-cached): key derivation, the entry
//! envelope, the Redis and embedded stores, the circuit breaker and the counters.
//!
//! Use it through the `redis-cached` facade crate; the items generated code needs are in
//! [`private`], which the facade re-exports as its hidden `__private` module.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
mod background;
mod builder;
mod cache;
mod connection;
pub mod envelope;
mod error;
mod first_level;
pub mod freshness;
mod helpers;
pub mod key;
mod read;
mod redact;
pub mod shape;
mod spec;
mod store;
mod telemetry;

pub use builder::CacheBuilder;
pub use cache::Cache;
pub use connection::{ConnectionEvent, MINIMUM_REDIS};
pub use error::Error;
pub use redact::redact_url;
pub use redis;
pub use telemetry::{
    Stats,
    fleet::{BUCKET as TELEMETRY_BUCKET, KEEP as TELEMETRY_KEEP},
};

/// Items for generated code only. Not part of the public API: may change in any release.
#[doc(hidden)]
pub mod private {
    pub use crate::{
        envelope::{Codec, Compression},
        first_level::{FirstLevelAccess, FirstLevelSpec, FirstLevelValue, first_level},
        helpers::{FromCacheError, evict_tags, into_error, invalidate, key_string, peek, put},
        key::{ArgsKey, KeyBuilder},
        read::{Begin, Load, Refresh, begin, cache_ref, default_cache, first_level_hit, refresh},
        shape::{
            ErrorProbe, Opt, Plain, ProbeConvertedError, ProbeOption, ProbePlain, ProbeResult,
            ProbeSharedError, ProbeUnsharedError, Res, ResOpt, Shape, ShapeProbe, require_plain,
        },
        spec::{FnSpec, IntoTtl},
        telemetry::FnTelemetry,
    };
}
