//! Following the master that Redis Sentinel names, through failovers, without a restart.
//!
//! The `redis` crate's Sentinel client resolves the master once and never follows a failover
//! (redis-rs#1438), so this module owns it. One background task per cache:
//!
//! - resolves the master at start: `SENTINEL GET-MASTER-ADDR-BY-NAME` to each sentinel in
//!   turn (the one that answered last first), then `ROLE` on the named node, which must say
//!   `master` before any operation goes to it;
//! - listens for `+switch-master` on every sentinel, and switches at once to the master a
//!   sentinel announces (checked by `ROLE` the same way);
//! - re-resolves when an operation fails with `READONLY` (the node was demoted) or on the link
//!   (the node died), at most every [`MIN_GAP`], and every [`PERIOD`] in any case, so a missed
//!   announcement costs at most that long.
//!
//! A switch replaces the node's links (a new `ConnectionManager`, a new client for the first
//! level's stream) and bumps an epoch the first level watches: it stops serving until its
//! stream is confirmed live on the new master. Until a master is known, operations fail on the
//! link (the read path runs loaders uncached).

use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use redis::{RedisConnectionInfo, aio::ConnectionManager};
use tokio::sync::{Notify, watch};

use super::node::{NodeConnector, NodeLink};
use crate::{Error, builder::redact_url};

/// How often the master is re-resolved when nothing prompts it.
const PERIOD: Duration = Duration::from_secs(2);

/// The least time between two resolutions prompted by failing operations.
const MIN_GAP: Duration = Duration::from_millis(100);

/// Longest pause before a lost `+switch-master` subscription is made again.
const MAX_BACKOFF: Duration = Duration::from_millis(1000);

/// Why the follower switched masters (counted, and logged with the switch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SwitchCause {
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
    /// How to connect to the master.
    pub(crate) connector: NodeConnector,
}

/// The master Sentinel names now, and how it is followed.
pub(crate) struct SentinelMaster {
    name: String,
    /// Lazily connected, reconnecting by themselves; with their redacted URLs for logs.
    sentinels: Vec<(ConnectionManager, redis::Client, String)>,
    /// The sentinel that answered last: asked first next time.
    preferred: AtomicUsize,
    master: RedisConnectionInfo,
    connector: NodeConnector,
    current: ArcSwapOption<NodeLink>,
    /// Bumped at every switch; the first level's stream watches it.
    epoch: watch::Sender<u64>,
    wake: Arc<Notify>,
    /// The master the last `+switch-master` named, not yet checked.
    announced: Mutex<Option<(String, u16)>>,
    running: AtomicBool,
    switches: AtomicU64,
    me: Weak<SentinelMaster>,
    /// Dropped with the follower: its task sees the sender gone and ends.
    _alive: watch::Sender<()>,
    alive: watch::Receiver<()>,
}

/// An operation's error that says the master may have moved: the node refuses writes
/// (demoted to a replica), or the link failed.
fn may_have_moved(err: &redis::RedisError) -> bool {
    err.code() == Some("READONLY")
        || err.is_io_error()
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
                let invalid = |e: redis::RedisError| {
                    Error::Config(format!("invalid sentinel url {label:?}: {e}"))
                };
                let client = redis::Client::open(url.as_str()).map_err(invalid)?;
                let manager = client
                    .get_connection_manager_lazy(manager_config.clone())
                    .map_err(invalid)?;
                Ok((manager, client, label))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let (epoch, _) = watch::channel(0);
        let (alive_tx, alive) = watch::channel(());
        Ok(Arc::new_cyclic(|me| SentinelMaster {
            name: config.name,
            sentinels,
            preferred: AtomicUsize::new(0),
            master: config.master,
            connector: config.connector,
            current: ArcSwapOption::empty(),
            epoch,
            wake: Arc::new(Notify::new()),
            announced: Mutex::new(None),
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

    /// The connection for one operation, or a link error while no master is known.
    pub(crate) fn manager(&self) -> Result<ConnectionManager, redis::RedisError> {
        self.ensure();
        match &*self.current.load() {
            Some(link) => Ok(link.manager.clone()),
            None => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!(
                    "no master named {:?} is known yet: no sentinel has answered",
                    self.name
                ),
            ))),
        }
    }

    /// Notes an operation's error: one that says the master may have moved prompts a
    /// resolution.
    pub(crate) fn saw(&self, err: &redis::RedisError) {
        if may_have_moved(err) {
            self.wake.notify_one();
        }
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
        let _ = tokio::time::timeout(deadline, async {
            if let Some(addr) = self.resolve().await {
                self.switch_to(addr, SwitchCause::Start).await;
            }
        })
        .await;
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

    /// Asks the sentinels, in turn, for the master's address.
    async fn resolve(&self) -> Option<(String, u16)> {
        let count = self.sentinels.len();
        let first = self.preferred.load(Ordering::Relaxed);
        for i in (0..count).map(|k| (first + k) % count) {
            let (manager, _, label) = &self.sentinels[i];
            let mut ask = redis::cmd("SENTINEL");
            ask.arg("GET-MASTER-ADDR-BY-NAME").arg(&self.name);
            let answer = tokio::time::timeout(
                self.connector.timeout,
                ask.query_async::<Option<(String, u16)>>(&mut manager.clone()),
            )
            .await;
            match answer {
                Ok(Ok(Some(addr))) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Some(addr);
                }
                Ok(Ok(None)) => {
                    tracing::warn!(sentinel = %label, master = %self.name, "sentinel monitors no master by this name");
                }
                Ok(Err(err)) => {
                    tracing::debug!(sentinel = %label, error = %err, "sentinel did not answer");
                }
                Err(_) => tracing::debug!(sentinel = %label, "sentinel timed out"),
            }
        }
        None
    }

    /// Switches to the master at `addr` if it is another one and says it is a master; whether
    /// it switched.
    async fn switch_to(&self, (host, port): (String, u16), cause: SwitchCause) -> bool {
        let addr = format!("{host}:{port}");
        let previous = self.current.load_full();
        if previous.as_ref().is_some_and(|link| link.addr == addr) {
            return false;
        }
        let scheme = if self.connector.tls {
            "rediss"
        } else {
            "redis"
        };
        let url = format!("{scheme}://{addr}");
        let link = match redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
            Ok(info) => self
                .connector
                .link(info.set_redis_settings(self.master.clone()), &url),
            Err(err) => Err(Error::Config(err.to_string())),
        };
        let link = match link {
            Ok(link) => link,
            Err(err) => {
                tracing::warn!(master = %addr, error = %err, "sentinel named a master that cannot be connected to");
                return false;
            }
        };
        // Sentinel may name a node before it is promoted, or one already demoted again.
        let role = tokio::time::timeout(
            self.connector.timeout,
            redis::cmd("ROLE").query_async::<redis::Value>(&mut link.manager.clone()),
        )
        .await;
        let is_master = matches!(
            &role,
            Ok(Ok(redis::Value::Array(fields)))
                if matches!(fields.first(), Some(redis::Value::BulkString(b)) if b == b"master")
        );
        if !is_master {
            tracing::debug!(master = %addr, ?role, "the node sentinel named is not a master (yet)");
            return false;
        }
        self.current.store(Some(Arc::new(link)));
        self.switches.fetch_add(1, Ordering::Relaxed);
        self.epoch.send_modify(|e| *e += 1);
        match previous {
            Some(previous) => tracing::info!(
                master = %self.name, from = %previous.addr, to = %addr, ?cause,
                "sentinel: following the new master"
            ),
            None => tracing::info!(master = %self.name, at = %addr, "sentinel: master resolved"),
        }
        true
    }
}

/// Lets a later operation start the task again if this one was dropped (its runtime shut
/// down).
struct Ended(Weak<SentinelMaster>);

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(master) = self.0.upgrade() {
            master.running.store(false, Ordering::Release);
        }
    }
}

/// Resolves now, then whenever prompted (at most every [`MIN_GAP`]) or every [`PERIOD`].
async fn follow(me: Weak<SentinelMaster>) {
    let Some(wake) = me.upgrade().map(|m| m.wake.clone()) else {
        return;
    };
    let mut cause = SwitchCause::Start;
    loop {
        {
            let Some(master) = me.upgrade() else { return };
            let announced = master
                .announced
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let switched = match announced {
                Some(addr) => master.switch_to(addr, SwitchCause::Announced).await,
                None => false,
            };
            if !switched && let Some(addr) = master.resolve().await {
                let cause = if master.current.load().is_none() {
                    SwitchCause::Start
                } else {
                    cause
                };
                master.switch_to(addr, cause).await;
            }
        }
        tokio::time::sleep(MIN_GAP).await;
        cause = match tokio::time::timeout(PERIOD, wake.notified()).await {
            Ok(()) => SwitchCause::OperationFailed,
            Err(_) => SwitchCause::Periodic,
        };
    }
}

/// Keeps a `+switch-master` subscription on sentinel `i`, handing each announcement for our
/// master to [`follow`].
async fn subscribe(me: Weak<SentinelMaster>, i: usize) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some((client, label, name, timeout)) = me.upgrade().map(|m| {
            let (_, client, label) = &m.sentinels[i];
            (
                client.clone(),
                label.clone(),
                m.name.clone(),
                m.connector.timeout,
            )
        }) else {
            return;
        };
        let subscribed = tokio::time::timeout(timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    // `NAME old-ip old-port new-ip new-port`
                    let Ok(text) = message.get_payload::<String>() else {
                        continue;
                    };
                    let fields: Vec<&str> = text.split_whitespace().collect();
                    if let [master, _, _, host, port] = fields[..]
                        && master == name
                        && let Ok(port) = port.parse::<u16>()
                    {
                        let Some(follower) = me.upgrade() else { return };
                        *follower.announced.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((host.to_owned(), port));
                        follower.wake.notify_one();
                    }
                }
                tracing::debug!(sentinel = %label, "sentinel subscription lost; subscribing again");
            }
            Ok(Err(err)) => {
                tracing::debug!(sentinel = %label, error = %err, "cannot subscribe to sentinel");
            }
            Err(_) => tracing::debug!(sentinel = %label, "sentinel subscription timed out"),
        }
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
