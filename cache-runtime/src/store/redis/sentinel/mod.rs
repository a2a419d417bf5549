//! Following the master that Redis Sentinel names, through failovers, without a restart.
//!
//! The `redis` crate's Sentinel client resolves the master once and never follows a failover
//! (redis-rs#1438), so this module owns it. One background task per cache:
//!
//! - resolves the master: `SENTINEL MASTER` to every sentinel at once, and the answer with the
//!   highest `config-epoch` wins (a sentinel that missed a failover, or sits in a minority
//!   partition with the old master, answers with an older epoch and is outvoted); a switch
//!   never goes to an older epoch, and to another node at the same epoch only when most
//!   sentinels name it. The node must then say `role:master` (`INFO replication`) before any
//!   operation goes to it;
//! - listens for `+switch-master` on every sentinel (pinging each subscription, so one on a
//!   dead link is noticed) and resolves at once when one arrives;
//! - resolves when an operation fails on the link or with `READONLY` (the node was demoted),
//!   at most every [`MIN_GAP`](tasks::MIN_GAP), and every [`PERIOD`](tasks::PERIOD) in any case, so a missed announcement
//!   costs at most that long.
//!
//! A switch replaces the node's links (a new `ConnectionManager`, a new client for the first
//! level's stream, a new invalidation connection) and bumps an epoch the first level and the
//! breaker's prober watch: the first level stops serving until its stream is confirmed live on
//! the new master, and the prober probes it at once. Until a master is known, operations fail
//! on the link (the read path runs loaders uncached).

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use redis::{ConnectionAddr, RedisConnectionInfo, aio::ConnectionManager};
use tokio::sync::{Notify, watch};

mod tasks;
mod view;

use self::tasks::{Ended, follow, subscribe};
use self::view::{View, newest, parse_view};
use super::node::{NodeConnector, NodeLink};
use crate::{Error, redact::redact_url};

/// Why the follower switched masters (logged with the switch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SwitchCause {
    /// The first resolution.
    Start,
    /// A sentinel's `+switch-master`.
    Announced,
    /// A resolution prompted by a failed operation (`READONLY` or the link).
    OperationFailed,
    /// The periodic resolution.
    Periodic,
}

/// What the follower needs to reach the sentinels and the masters they name.
pub(crate) struct SentinelConfig {
    /// The sentinels' URLs (`redis://host:26379`, `rediss://...`).
    pub(crate) sentinels: Vec<String>,
    /// The monitored master's name (`sentinel monitor NAME ...`).
    pub(crate) name: String,
    /// Credentials and database for the master.
    pub(crate) master: RedisConnectionInfo,
    /// How to connect to the sentinels and the master.
    pub(crate) connector: NodeConnector,
}

/// The master Sentinel names now, and how it is followed.
pub(crate) struct SentinelMaster {
    name: String,
    /// Lazily connected, reconnecting by themselves; with a client for subscriptions and the
    /// redacted URL for logs.
    sentinels: Vec<(ConnectionManager, redis::Client, String)>,
    master: RedisConnectionInfo,
    connector: NodeConnector,
    current: ArcSwapOption<NodeLink>,
    /// The `config-epoch` of the current master.
    config_epoch: AtomicU64,
    /// Bumped at every switch; the first level's stream and the breaker's prober watch it.
    epoch: watch::Sender<u64>,
    wake: Arc<Notify>,
    /// A `+switch-master` arrived since the last resolution.
    announced: AtomicBool,
    /// A problem was logged at warn since the last switch (one warning per streak).
    warned: AtomicBool,
    running: AtomicBool,
    switches: AtomicU64,
    me: Weak<SentinelMaster>,
    /// Dropped with the follower: its task sees the sender gone and ends.
    _alive: watch::Sender<()>,
    alive: watch::Receiver<()>,
}

/// An operation's error that says the master may have moved: the node refuses writes or is
/// not serving (demoted to a replica, syncing), a transaction was aborted (a `READONLY` inside
/// `MULTI`), or the link failed.
fn may_have_moved(err: &redis::RedisError) -> bool {
    matches!(
        err.code(),
        Some("READONLY" | "EXECABORT" | "MASTERDOWN" | "LOADING")
    ) || err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
}

impl SentinelMaster {
    /// The follower; nothing is connected until [`ensure`](Self::ensure) starts its task.
    pub(crate) fn new(config: SentinelConfig) -> Result<Arc<SentinelMaster>, Error> {
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10 + fastrand::u64(0..40)))
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(config.connector.timeout))
            .set_response_timeout(Some(config.connector.timeout));
        let sentinels = config
            .sentinels
            .iter()
            .map(|url| {
                let label = redact_url(url);
                let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    .map_err(|e| Error::Config(format!("invalid sentinel url {label:?}: {e}")))?;
                // The sentinels' own credentials and TLS, and the root certificate if one is set.
                let client = config.connector.client(info, &label)?;
                let manager = client
                    .get_connection_manager_lazy(manager_config.clone())
                    .map_err(|e| Error::Config(format!("invalid sentinel url {label:?}: {e}")))?;
                Ok((manager, client, label))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let (epoch, _) = watch::channel(0);
        let (alive_tx, alive) = watch::channel(());
        Ok(Arc::new_cyclic(|me| SentinelMaster {
            name: config.name,
            sentinels,
            master: config.master,
            connector: config.connector,
            current: ArcSwapOption::empty(),
            config_epoch: AtomicU64::new(0),
            epoch,
            wake: Arc::new(Notify::new()),
            announced: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            running: AtomicBool::new(false),
            switches: AtomicU64::new(0),
            me: me.clone(),
            _alive: alive_tx,
            alive,
        }))
    }

    /// The links to the master, if one is known.
    pub(crate) fn current(&self) -> Option<Arc<NodeLink>> {
        self.ensure();
        self.current.load_full()
    }

    /// The connection for one operation, or a link error (and a prompt to resolve) while no
    /// master is known.
    pub(crate) fn manager(&self) -> Result<ConnectionManager, redis::RedisError> {
        self.ensure();
        match &*self.current.load() {
            Some(link) => Ok(link.manager.clone()),
            None => Err(self.no_master()),
        }
    }

    /// The links to the master, or a link error (and a prompt to resolve) while none is known.
    pub(crate) fn link(&self) -> Result<Arc<NodeLink>, redis::RedisError> {
        self.current().ok_or_else(|| self.no_master())
    }

    fn no_master(&self) -> redis::RedisError {
        {
            {
                self.wake.notify_one();
                redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    format!(
                        "no master named {:?} is known yet: no sentinel has named a reachable one",
                        self.name
                    ),
                ))
            }
        }
    }

    /// Notes an operation's error: one that says the master may have moved prompts a
    /// resolution.
    pub(crate) fn saw(&self, err: &redis::RedisError) {
        if may_have_moved(err) {
            self.wake.notify_one();
        }
    }

    /// Prompts a resolution (an operation failed on the link or timed out).
    pub(crate) fn prompt(&self) {
        self.wake.notify_one();
    }

    /// Changes at every switch of master.
    pub(crate) fn epochs(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// Times the master changed (the first resolution included).
    pub(crate) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    /// Resolves once, within `deadline` (at build, so the first calls need not wait for the
    /// task); whether a master is known.
    pub(crate) async fn resolve_now(&self, deadline: Duration) -> bool {
        let _ = tokio::time::timeout(deadline, self.resolve(SwitchCause::Start)).await;
        self.current.load().is_some()
    }

    /// Starts the follower's task unless it runs (or there is no runtime yet: the next
    /// operation on one starts it).
    fn ensure(&self) {
        if self.running.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let ended = Ended(self.me.clone());
        let me = self.me.clone();
        let mut alive = self.alive.clone();
        let count = self.sentinels.len();
        runtime.spawn(async move {
            let _ended = ended;
            let subscriptions =
                futures_util::future::join_all((0..count).map(|i| subscribe(me.clone(), i)));
            tokio::select! {
                _ = alive.changed() => {}
                () = follow(me.clone()) => {}
                _ = subscriptions => {}
            }
        });
    }

    /// Warns once per streak of trouble (until the next switch); later ones are debug.
    fn warn(&self, what: &str, detail: &str) {
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(master = %self.name, detail, "{what}");
        } else {
            tracing::warn!(master = %self.name, detail, "{what}");
        }
    }

    /// Every sentinel's view of the master, asked at once.
    async fn views(&self) -> Vec<View> {
        let asks = self.sentinels.iter().map(|(manager, _, label)| async move {
            let mut ask = redis::pipe();
            ask.cmd("SENTINEL").arg("MASTER").arg(&self.name);
            ask.cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.name);
            let answer = tokio::time::timeout(
                self.connector.timeout,
                ask.query_async::<(Vec<String>, Option<(String, u16)>)>(&mut manager.clone()),
            )
            .await;
            match answer {
                Ok(Ok((fields, addr))) => parse_view(&fields, addr),
                Ok(Err(err)) => {
                    tracing::debug!(sentinel = %label, error = %err, "sentinel did not answer");
                    None
                }
                Err(_) => {
                    tracing::debug!(sentinel = %label, "sentinel timed out");
                    None
                }
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Asks the sentinels and switches to the master they name, if it is another one, newer,
    /// and says it is a master.
    async fn resolve(&self, cause: SwitchCause) {
        let views = self.views().await;
        let Some((view, agreeing)) = newest(&views) else {
            self.warn(
                "no sentinel answered for the master; calls run their loaders uncached until one does",
                &format!("{} sentinels asked", self.sentinels.len()),
            );
            return;
        };
        let addr = format!("{}:{}", view.host, view.port);
        let previous = self.current.load_full();
        if let Some(previous) = &previous {
            let known = self.config_epoch.load(Ordering::Acquire);
            let majority = agreeing * 2 > self.sentinels.len();
            if previous.addr == addr {
                // What most sentinels say of the current master is its epoch (theirs start
                // over when they are redeployed without their state), so the next failover
                // arrives as a newer one.
                if majority {
                    self.config_epoch
                        .store(view.config_epoch, Ordering::Release);
                } else {
                    self.config_epoch
                        .fetch_max(view.config_epoch, Ordering::AcqRel);
                }
                return;
            }
            // A newer epoch moves us. An older (or equal) one only when most sentinels name
            // it and the current master says it is no longer one, or refuses connections: a
            // majority that has not yet heard of a failover must not move us back to a node
            // still accepting writes, nor must a master too busy to answer in time.
            if view.config_epoch <= known && (!majority || !self.is_gone(&previous.manager).await) {
                return;
            }
        }
        let Some(link) = self.checked_link(view, &addr).await else {
            return;
        };
        let epoch = *self.epoch.borrow() + 1;
        let link = NodeLink { epoch, ..link };
        self.config_epoch
            .store(view.config_epoch, Ordering::Release);
        self.current.store(Some(Arc::new(link)));
        self.switches.fetch_add(1, Ordering::Relaxed);
        self.warned.store(false, Ordering::Relaxed);
        self.epoch.send_replace(epoch);
        match previous {
            Some(previous) => tracing::info!(
                master = %self.name, from = %previous.addr, to = %addr, ?cause,
                config_epoch = view.config_epoch, "sentinel: following the new master"
            ),
            None => tracing::info!(master = %self.name, at = %addr, "sentinel: master resolved"),
        }
    }

    /// Whether the node says it is a master: `INFO replication` (which the library's ACL
    /// profile allows), not `ROLE` (an admin command).
    async fn role(
        &self,
        manager: &ConnectionManager,
    ) -> Result<Result<bool, redis::RedisError>, tokio::time::error::Elapsed> {
        tokio::time::timeout(
            self.connector.timeout,
            redis::cmd("INFO")
                .arg("replication")
                .query_async::<String>(&mut manager.clone()),
        )
        .await
        .map(|info| info.map(|info| info.lines().any(|l| l.trim() == "role:master")))
    }

    /// Whether the node is certainly no longer the master: it says it is a replica, or the
    /// link to it fails outright (refused, reset). A slow answer is not that.
    async fn is_gone(&self, manager: &ConnectionManager) -> bool {
        match self.role(manager).await {
            Ok(Ok(is_master)) => !is_master,
            Ok(Err(err)) => {
                err.is_connection_refusal() || err.is_connection_dropped() || err.is_io_error()
            }
            Err(_) => false,
        }
    }

    /// The links to the node `view` names, once it says it is a master.
    async fn checked_link(&self, view: &View, addr: &str) -> Option<NodeLink> {
        // An address, not a URL: an IPv6 host needs no brackets this way.
        let node = if self.connector.tls {
            ConnectionAddr::TcpTls {
                host: view.host.clone(),
                port: view.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(view.host.clone(), view.port)
        };
        let info = redis::IntoConnectionInfo::into_connection_info(node)
            .map(|info| info.set_redis_settings(self.master.clone()));
        let link = match info.map_err(Error::Backend).and_then(|info| {
            let label = format!(
                "{}://{addr}",
                if self.connector.tls {
                    "rediss"
                } else {
                    "redis"
                }
            );
            self.connector.link(info, &label)
        }) {
            Ok(link) => link,
            Err(err) => {
                self.warn(
                    "sentinel named a master that cannot be connected to",
                    &format!("{addr}: {err}"),
                );
                return None;
            }
        };
        // Sentinel may name a node before it is promoted, or one already demoted again.
        let role = self.role(&link.manager).await;
        match role {
            Ok(Ok(true)) => Some(link),
            Ok(Ok(false)) => {
                tracing::debug!(master = %addr, "the node sentinel named is not a master (yet)");
                None
            }
            Ok(Err(err)) => {
                self.warn(
                    "cannot ask the node sentinel named for its role (credentials, ACL, TLS?)",
                    &format!("{addr}: {err}"),
                );
                None
            }
            Err(_) => {
                self.warn(
                    "the node sentinel named did not answer",
                    &format!("{addr}: no answer within {:?}", self.connector.timeout),
                );
                None
            }
        }
    }
}
