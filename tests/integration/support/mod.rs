//! Test support: private `redis-server` processes on free loopback ports.
//!
//! Never touches the machine's shared Redis on 6379. A missing `redis-server` is a test
//! failure with instructions, never a silent skip (`scripts/test.sh` installs it).

pub mod acl;
pub mod cluster;
pub mod sentinel;
pub mod server;
pub mod tls;

use std::time::{Duration, Instant};

pub use cluster::RedisCluster;
pub use sentinel::SentinelTopology;
pub use server::RedisServer;

/// Failover tests run one at a time (each starts five or six servers and waits out a
/// failover; on two cores, two at once would time each other out).
pub static ONE_TOPOLOGY_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Polls `condition` until it holds or `deadline` passes; panics with `what` on timeout.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
