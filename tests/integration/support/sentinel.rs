//! A local Sentinel topology: a master, one replica and three sentinels (quorum 2), each a
//! private `redis-server` on a free loopback port, torn down on drop.

use std::time::{Duration, Instant};

use super::server::RedisServer;

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "mymaster";

/// How long the sentinels wait before they call a silent master down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

pub struct SentinelTopology {
    /// `[0]` the master at start, `[1]` its replica.
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<RedisServer>,
}

impl SentinelTopology {
    /// Starts the master, the replica (synced) and three sentinels that know the replica and
    /// each other, so a failover can start as soon as the master is down.
    pub async fn start() -> SentinelTopology {
        let master = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
        let config = format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
             sentinel failover-timeout {MASTER_NAME} 4000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            port = master.port(),
            down = DOWN_AFTER.as_millis(),
        );
        let sentinels: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_sentinel(&config))
            .collect();
        let topology = SentinelTopology {
            nodes: vec![master, replica],
            sentinels,
        };
        // Sentinels find the replica through the master's INFO and each other through hello
        // messages (every 2 s): wait until each knows both.
        let deadline = Instant::now() + Duration::from_secs(30);
        for sentinel in &topology.sentinels {
            loop {
                let master: Vec<String> = redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(MASTER_NAME)
                    .query_async(&mut sentinel.conn().await)
                    .await
                    .unwrap_or_default();
                let field = |name: &str| {
                    master
                        .iter()
                        .position(|f| f == name)
                        .and_then(|i| master.get(i + 1))
                        .cloned()
                        .unwrap_or_default()
                };
                if field("num-slaves") == "1" && field("num-other-sentinels") == "2" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sentinels did not discover the replica and each other"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // And the replica has synced (a failover needs a replica with a live link).
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut topology.nodes[1].conn().await)
                .await
                .unwrap_or_default();
            if info.contains("master_link_status:up") {
                break;
            }
            assert!(Instant::now() < deadline, "the replica never synced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        topology
    }

    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The port of the master the first answering sentinel names now.
    pub async fn master_port(&self) -> Option<u16> {
        for sentinel in &self.sentinels {
            if !sentinel.ping() {
                continue;
            }
            let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME)
                .query_async(&mut sentinel.conn().await)
                .await
                .ok()
                .flatten();
            if let Some((_, port)) = addr {
                return Some(port);
            }
        }
        None
    }
}
