//! The builder's options checked together, before anything connects.

use std::time::Duration;

use crate::Error;

use super::{CacheBuilder, Target};

impl CacheBuilder {
    pub(super) fn validate(&self) -> Result<(), Error> {
        let ns = &self.namespace;
        // A `:` would make keys ambiguous: namespace `a:b` with function `c` and namespace `a`
        // with function `b:c` would share every key.
        if ns.is_empty() || ns.contains(['{', '}', ':']) || ns.contains(char::is_whitespace) {
            return Err(Error::Config(format!(
                "namespace {ns:?} must be non-empty and contain no `:`, braces or whitespace \
                 (use `-`, `_` or `.` to separate its parts, as in \"myapp-prod\")"
            )));
        }
        if self.default_ttl.is_zero() {
            return Err(Error::Config(
                "default_ttl must be greater than zero".into(),
            ));
        }
        if self.telemetry.interval < Duration::from_millis(100) {
            return Err(Error::Config(
                "telemetry_interval must be at least 100 ms".into(),
            ));
        }
        if self.operation_timeout.is_zero() {
            return Err(Error::Config(
                "operation_timeout must be greater than zero".into(),
            ));
        }
        if self.l1.capacity == 0 || self.l1.max_entries == 0 {
            return Err(Error::Config(
                "l1_capacity and l1_max_entries must be greater than zero".into(),
            ));
        }
        let liveness = Duration::from_millis(20)..=Duration::from_secs(3600);
        if !liveness.contains(&self.l1.liveness) {
            return Err(Error::Config(format!(
                "l1_liveness must be between 20 ms and 1 hour (a canary round trip must fit in \
                 half of it), not {:?}",
                self.l1.liveness
            )));
        }
        let sentinel = matches!(self.target, Target::Sentinel(..));
        let options = &self.sentinel_master;
        if !sentinel
            && (options.username.is_some() || options.password.is_some() || options.db.is_some())
        {
            return Err(Error::Config(
                "sentinel_master_auth and sentinel_master_db apply under sentinel(...) only: put \
                 the password and database in the URL"
                    .into(),
            ));
        }
        if let Some((replicas, timeout)) = self.invalidation_replicas {
            if replicas == 0 || timeout.is_zero() {
                return Err(Error::Config(
                    "invalidation_replicas needs at least one replica and a timeout above zero"
                        .into(),
                ));
            }
            let redis_node = match &self.target {
                Target::Url(url) => !url.starts_with("mem://"),
                Target::Sentinel(..) => true,
                #[cfg(feature = "cluster")]
                Target::Cluster(_) => false,
            };
            if !redis_node {
                return Err(Error::Config(
                    "invalidation_replicas needs a single Redis node or sentinel(...): the \
                     embedded store has no replicas, and on a cluster it is not supported"
                        .into(),
                ));
            }
        }
        if self.max_value_size == 0 {
            return Err(Error::Config(
                "max_value_size must be greater than zero".into(),
            ));
        }
        Ok(())
    }
}
