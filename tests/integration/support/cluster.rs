//! A local 3-master Redis Cluster of private `redis-server` processes.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use super::server::RedisServer;

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters, joins them with `redis-cli --cluster create`, and waits until
    /// every node reports `cluster_state:ok`.
    pub async fn start() -> RedisCluster {
        Self::start_with_replicas(0).await
    }

    /// Starts three masters with `replicas` replicas each (`nodes[..3]` are the masters,
    /// as `redis-cli --cluster create` assigns them), and waits until every node reports
    /// `cluster_state:ok` and every replica has synced.
    pub async fn start_with_replicas(replicas: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    // With a master down, the other masters keep serving their slots.
                    "--cluster-require-full-coverage",
                    "no",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli (installed with redis-server) must be on PATH");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &cluster.nodes {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut node.conn().await)
                    .await
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster did not reach cluster_state:ok"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for node in &cluster.nodes[3..] {
            loop {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut node.conn().await)
                    .await
                    .unwrap_or_default();
                if info.contains("role:slave") && info.contains("master_link_status:up") {
                    break;
                }
                assert!(Instant::now() < deadline, "a replica never synced");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        cluster
    }

    /// The index in `nodes` of the replica of master `index` (by `CLUSTER NODES`).
    pub async fn replica_of(&self, index: usize) -> usize {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut self.nodes[index].conn().await)
            .await
            .expect("CLUSTER NODES");
        let id_of = |port: u16| {
            nodes
                .lines()
                .find(|l| {
                    l.split(' ')
                        .nth(1)
                        .is_some_and(|a| a.starts_with(&format!("127.0.0.1:{port}@")))
                })
                .and_then(|l| l.split(' ').next())
                .map(str::to_owned)
        };
        let master = id_of(self.nodes[index].port()).expect("the master's node id");
        (0..self.nodes.len())
            .find(|&i| {
                let Some(id) = id_of(self.nodes[i].port()) else {
                    return false;
                };
                nodes.lines().any(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    f[0] == id && f.get(3) == Some(&master.as_str())
                })
            })
            .expect("master has a replica")
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
