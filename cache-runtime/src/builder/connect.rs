//! Connecting a builder to its store: TLS checks, the node connector, a single node, the
//! master Sentinel names, or a cluster.

use crate::{
    Error,
    redact::redact_url,
    store::{NodeConnector, SentinelConfig, SentinelMaster},
};

use super::{CacheBuilder, Target};

/// `rediss://` needs rustls with a crypto provider installed: rustls panics at the first
/// connection without one, so `build()` says so instead.
fn check_tls_provider() -> Result<(), Error> {
    #[cfg(feature = "tls-rustls")]
    {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(Error::Config(
                "rediss:// needs a rustls CryptoProvider installed before build(): call \
                 rustls::crypto::ring::default_provider().install_default() (or aws_lc_rs) at \
                 start-up"
                    .into(),
            ));
        }
        Ok(())
    }
    #[cfg(not(feature = "tls-rustls"))]
    Err(Error::Config(
        "rediss:// URLs need the `tls-rustls` feature of redis-cached".into(),
    ))
}

impl CacheBuilder {
    /// How to connect to a node; `tls` for `rediss://`, whose root certificate is checked here.
    fn connector(&self, tls: bool, url: &str) -> Result<NodeConnector, Error> {
        if tls {
            check_tls_provider()?;
            if let Some(pem) = &self.tls_root_certificate
                && !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----")
            {
                return Err(Error::Config(
                    "tls_root_certificate holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                        .into(),
                ));
            }
        } else if self.tls_root_certificate.is_some() {
            return Err(Error::Config(format!(
                "tls_root_certificate is set but {:?} is not a rediss:// URL",
                redact_url(url)
            )));
        }
        Ok(NodeConnector {
            tls,
            tls_root_certificate: self.tls_root_certificate.clone(),
            timeout: self.operation_timeout,
            replicas: self.invalidation_replicas,
            namespace: self.namespace.clone(),
        })
    }

    /// The links to the node `url` names.
    pub(super) fn connect_single(&self, url: &str) -> Result<crate::store::NodeLink, Error> {
        if ![
            "redis://",
            "rediss://",
            "redis+unix://",
            "unix://",
            "valkey://",
            "valkeys://",
        ]
        .iter()
        .any(|scheme| url.starts_with(scheme))
        {
            return Err(Error::Config(format!(
                "unsupported cache url {:?}: expected redis://, rediss://, redis+unix:// or mem://",
                redact_url(url)
            )));
        }
        let tls = url.starts_with("rediss://") || url.starts_with("valkeys://");
        let connector = self.connector(tls, url)?;
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| Error::Config(format!("invalid redis url {:?}: {e}", redact_url(url))))?;
        connector.link(info, url)
    }

    /// The follower of the master the sentinels name, after one attempt (within the
    /// operation timeout) to resolve it.
    pub(super) async fn connect_sentinel(&self) -> Result<std::sync::Arc<SentinelMaster>, Error> {
        let Target::Sentinel(sentinels, name) = &self.target else {
            return Err(Error::Config("not a sentinel target".into()));
        };
        if sentinels.is_empty() || name.is_empty() {
            return Err(Error::Config(
                "sentinel(...) needs at least one sentinel URL and the master's name".into(),
            ));
        }
        let tls = sentinels[0].starts_with("rediss://");
        for url in sentinels {
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                return Err(Error::Config(format!(
                    "unsupported sentinel url {:?}: expected redis:// or rediss://",
                    redact_url(url)
                )));
            }
            if url.starts_with("rediss://") != tls {
                return Err(Error::Config(
                    "sentinel URLs mix redis:// and rediss://: use one for all".into(),
                ));
            }
        }
        let connector = self.connector(tls, &sentinels[0])?;
        let options = &self.sentinel_master;
        let mut master = redis::RedisConnectionInfo::default();
        if let Some(username) = &options.username {
            master = master.set_username(username);
        }
        if let Some(password) = &options.password {
            master = master.set_password(password);
        }
        if let Some(db) = options.db {
            master = master.set_db(db);
        }
        // A sentinel listed twice would count twice towards a majority.
        let mut unique = sentinels.clone();
        unique.sort();
        unique.dedup();
        let follower = SentinelMaster::new(SentinelConfig {
            sentinels: unique,
            name: name.clone(),
            master,
            connector,
        })?;
        // Sentinels are asked at once; then the master's handshake: a few timeouts' worth.
        if !follower.resolve_now(self.operation_timeout * 3).await {
            tracing::warn!(
                master = %name,
                "no sentinel named the master yet; calls run their loaders uncached until one does"
            );
        }
        Ok(follower)
    }

    #[cfg(feature = "cluster")]
    pub(super) fn connect_cluster(
        &self,
        nodes: &[String],
    ) -> Result<crate::store::RedisStore, Error> {
        if nodes.is_empty() {
            return Err(Error::Config("cluster needs at least one node url".into()));
        }
        let tls = nodes
            .iter()
            .any(|n| n.starts_with("rediss://") || n.starts_with("valkeys://"));
        if tls {
            // rustls would panic at the first connection without a provider.
            check_tls_provider()?;
        }
        if self.tls_root_certificate.is_some() {
            return Err(Error::Config(
                "tls_root_certificate is not supported on a cluster yet: add the CA to the \
                 system's trust store"
                    .into(),
            ));
        }
        let timeout = self.operation_timeout;
        let client = redis::cluster::ClusterClient::builder(nodes.to_vec())
            .retries(1)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .build()
            .map_err(|e| {
                let nodes: Vec<String> = nodes.iter().map(|n| redact_url(n)).collect();
                Error::Config(format!("invalid cluster nodes {nodes:?}: {e}"))
            })?;
        let config = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let first_host = match redis::IntoConnectionInfo::into_connection_info(nodes[0].as_str())
            .map(|info| info.addr().clone())
        {
            Ok(redis::ConnectionAddr::Tcp(host, _)) => host,
            Ok(redis::ConnectionAddr::TcpTls { host, .. }) => host,
            _ => "127.0.0.1".to_owned(),
        };
        Ok(crate::store::RedisStore::Cluster(
            client.get_pending_async_connection_with_config(config),
            first_host.into(),
        ))
    }
}
