//! The minimum Redis version, checked once per connection from `INFO server` after the first
//! answer. Below it (tagged claims use `PEXPIRE ... GT`, Redis 7.0), every operation would fail
//! its pipeline and count against the breaker; instead the cache runs uncached against that
//! server, says so once in the log, and explicit operations return
//! [`Error::UnsupportedServer`](crate::Error::UnsupportedServer).

use std::sync::atomic::{AtomicU8, Ordering};

use super::Connection;

/// The oldest Redis this library supports.
///
/// ```
/// assert_eq!(cache_runtime::MINIMUM_REDIS, "7.0");
/// ```
pub const MINIMUM_REDIS: &str = "7.0";
const MINIMUM: (u32, u32) = (7, 0);

const UNKNOWN: u8 = 0;
const CHECKING: u8 = 1;
const SUPPORTED: u8 = 2;
const TOO_OLD: u8 = 3;

/// Whether a `redis_version` string is at least [`MINIMUM_REDIS`]. Unparsable versions are
/// given the benefit of the doubt (Redis-compatible servers report all sorts).
pub(crate) fn supported(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.trim().parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= MINIMUM,
        (Some(Ok(major)), None) => major >= MINIMUM.0,
        _ => true,
    }
}

/// Puts a check that never concluded back to "unknown" when dropped.
struct Pending(std::sync::Weak<Connection>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(conn) = self.0.upgrade() {
            let _ = conn.version.state.compare_exchange(
                CHECKING,
                UNKNOWN,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }
}

/// The connection's verdict on its server's version.
#[derive(Default)]
pub(crate) struct VersionGate {
    state: AtomicU8,
    found: std::sync::OnceLock<String>,
}

impl VersionGate {
    /// The version found, when it is below the minimum.
    pub(crate) fn too_old(&self) -> Option<&str> {
        if self.state.load(Ordering::Relaxed) == TOO_OLD {
            self.found.get().map(String::as_str)
        } else {
            None
        }
    }

    /// After an answer: starts the one check, unless it ran (or runs).
    pub(crate) fn check_after_answer(&self, conn: &Connection) {
        if self.state.load(Ordering::Relaxed) != UNKNOWN
            || self
                .state
                .compare_exchange(UNKNOWN, CHECKING, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.state.store(UNKNOWN, Ordering::Release);
            return;
        };
        let me = conn.me.clone();
        // Built before the spawn: a check dropped unrun (its runtime shut down) is retried.
        let pending = Pending(me.clone());
        runtime.spawn(async move {
            // Dropped with the task; a no-op once the state left CHECKING.
            let _pending = pending;
            let Some(conn) = me.upgrade() else { return };
            let gate = &conn.version;
            let read = tokio::time::timeout(conn.timeout, conn.backend.server_version()).await;
            let state = match read {
                Ok(Ok(Some(version))) if !supported(&version) => {
                    tracing::error!(
                        namespace = %conn.namespace,
                        version,
                        minimum = MINIMUM_REDIS,
                        "redis is older than the minimum supported version; the cache runs uncached"
                    );
                    let _ = gate.found.set(version);
                    TOO_OLD
                }
                Ok(Ok(_)) => SUPPORTED,
                // The link failed: try again after a later answer.
                Err(_) => UNKNOWN,
                Ok(Err(err)) if super::is_link_failure(&err) => UNKNOWN,
                // The server refused or garbled the question (a renamed `INFO`, an ACL, a proxy):
                // assume it is supported rather than ask after every answer.
                Ok(Err(err)) => {
                    tracing::warn!(
                        namespace = %conn.namespace, error = %err,
                        "could not read the redis version; assuming it is supported"
                    );
                    SUPPORTED
                }
            };
            gate.state.store(state, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::supported;

    #[test]
    fn versions_from_seven_on_are_supported() {
        assert!(supported("7.0.15"));
        assert!(supported("7.2.4"));
        assert!(supported("8.0.0"));
        assert!(supported("255.255.255"));
        assert!(!supported("6.2.14"));
        assert!(!supported("5.0.7"));
        assert!(supported("7"));
        assert!(!supported("6"));
        assert!(supported("unknown"), "unparsable: not turned off");
    }
}
