//! Connecting to one Redis node: the settings every connection to it shares (TLS and its root
//! certificate, credentials, database, deadlines) and the two links a single-node store keeps:
//! a `ConnectionManager` for operations and a RESP3 client for the first level's invalidation
//! stream. Used for a node given by URL, and for each master Sentinel names.

use std::{sync::Arc, time::Duration};

use redis::{ConnectionInfo, aio::ConnectionManager, aio::ConnectionManagerConfig};

use super::replication::ReplicationWait;
use crate::{Error, redact::redact_url};

/// How to connect to a node, whatever its address.
#[derive(Clone)]
pub(crate) struct NodeConnector {
    /// Whether connections use TLS (`rediss://`).
    pub(crate) tls: bool,
    /// A root certificate (PEM) to trust instead of the system's.
    pub(crate) tls_root_certificate: Option<Vec<u8>>,
    /// Deadline of each connection attempt.
    pub(crate) timeout: Duration,
    /// Replicas that must acknowledge each invalidation, and how long to wait for them.
    pub(crate) replicas: Option<(u32, Duration)>,
    /// The namespace (the replication marker's key).
    pub(crate) namespace: String,
}

/// The links to one node.
#[derive(Clone)]
pub(crate) struct NodeLink {
    /// `host:port`, for logs and for telling masters apart.
    pub(crate) addr: String,
    /// Under Sentinel, the follower's epoch when this node became the master (0 otherwise).
    pub(crate) epoch: u64,
    /// Operations: multiplexed, reconnecting in the background.
    pub(crate) manager: ConnectionManager,
    /// The first level's invalidation stream (RESP3, for pushes).
    pub(crate) tracking: redis::Client,
    /// How invalidations wait for this node's replicas, if they do.
    pub(crate) replication: Option<Arc<ReplicationWait>>,
}

impl NodeConnector {
    pub(crate) fn client(&self, info: ConnectionInfo, label: &str) -> Result<redis::Client, Error> {
        let invalid =
            |e: redis::RedisError| Error::Config(format!("invalid redis url {label:?}: {e}"));
        #[cfg(feature = "tls-rustls")]
        if let (true, Some(pem)) = (self.tls, &self.tls_root_certificate) {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            };
            return redis::Client::build_with_tls(info, certificates).map_err(invalid);
        }
        let _ = &self.tls_root_certificate; // Used with `tls-rustls` only.
        redis::Client::open(info).map_err(invalid)
    }

    /// The links to the node `info` names (`url` only labels errors, without its password).
    /// Nothing is connected yet: the manager connects at its first operation.
    pub(crate) fn link(&self, info: ConnectionInfo, url: &str) -> Result<NodeLink, Error> {
        let label = redact_url(url);
        let addr = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
            _ => label.clone(),
        };
        // Requests are small and latency-bound: do not let Nagle hold them back.
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        let info = info.set_tcp_settings(tcp);
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let tracking = self.client(info.clone().set_redis_settings(resp3), &label)?;
        let client = self.client(info, &label)?;
        // Bounded retries with a per-process random minimum delay: the manager's own backoff
        // jitter is the same sequence in every process (see docs/decisions.md). No response
        // timeout of its own: every operation already runs under our deadline, which also
        // covers reconnect waits, and a second timer per request cost a measurable share of a
        // hit.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10 + fastrand::u64(0..40)))
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None);
        let lazy = |config| {
            client
                .get_connection_manager_lazy(config)
                .map_err(|e| Error::Config(format!("cannot set up redis connection: {e}")))
        };
        let manager = lazy(config.clone())?;
        let replication = match self.replicas {
            Some((replicas, wait)) => Some(Arc::new(ReplicationWait::new(
                lazy(config)?,
                replicas,
                wait,
                self.timeout,
                &self.namespace,
            ))),
            None => None,
        };
        Ok(NodeLink {
            addr,
            epoch: 0,
            manager,
            tracking,
            replication,
        })
    }
}
