//! The follower's task: resolving on prompts and periodically, and one `+switch-master`
//! subscription per sentinel.

use std::{
    sync::{Weak, atomic::Ordering},
    time::{Duration, Instant},
};

use futures_util::StreamExt;

use super::{SentinelMaster, SwitchCause};

/// How often the master is re-resolved when nothing prompts it.
const PERIOD: Duration = Duration::from_secs(2);

/// The least time between two resolutions prompted by failing operations.
const MIN_GAP: Duration = Duration::from_millis(100);

/// Longest pause before a lost `+switch-master` subscription is made again.
const MAX_BACKOFF: Duration = Duration::from_millis(1000);

/// How often a quiet subscription is pinged (a dead link would otherwise go unnoticed).
const SUBSCRIPTION_PING: Duration = Duration::from_secs(5);

/// Lets a later operation start the task again if this one was dropped (its runtime shut
/// down).
pub(super) struct Ended(pub(super) Weak<SentinelMaster>);

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(master) = self.0.upgrade() {
            master.running.store(false, Ordering::Release);
        }
    }
}

/// Resolves now, then whenever prompted (at most every [`MIN_GAP`]) or every [`PERIOD`].
pub(super) async fn follow(me: Weak<SentinelMaster>) {
    let Some(wake) = me.upgrade().map(|m| m.wake.clone()) else {
        return;
    };
    let mut cause = SwitchCause::Start;
    loop {
        {
            let Some(master) = me.upgrade() else { return };
            let cause = if master.announced.swap(false, Ordering::AcqRel) {
                SwitchCause::Announced
            } else if master.current.load().is_none() {
                SwitchCause::Start
            } else {
                cause
            };
            master.resolve(cause).await;
        }
        tokio::time::sleep(MIN_GAP).await;
        cause = match tokio::time::timeout(PERIOD, wake.notified()).await {
            Ok(()) => SwitchCause::OperationFailed,
            Err(_) => SwitchCause::Periodic,
        };
    }
}

/// Keeps a `+switch-master` subscription on sentinel `i`, prompting a resolution at each
/// announcement for our master. A quiet subscription is pinged, so a dead link is noticed.
pub(super) async fn subscribe(me: Weak<SentinelMaster>, i: usize) {
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
        let since = Instant::now();
        match subscribed {
            Ok(Ok(pubsub)) => {
                let (mut sink, mut messages) = pubsub.split();
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        () = tokio::time::sleep(SUBSCRIPTION_PING) => {
                            let pong = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                            if matches!(pong, Ok(Ok(_))) {
                                continue;
                            }
                            None
                        }
                    };
                    let Some(message) = message else { break };
                    // `NAME old-ip old-port new-ip new-port`: a prompt, not an authority (a
                    // late announcement of an older failover must not move us back).
                    let Ok(text) = message.get_payload::<String>() else {
                        continue;
                    };
                    if text.split_whitespace().next() == Some(name.as_str()) {
                        let Some(follower) = me.upgrade() else { return };
                        follower.announced.store(true, Ordering::Release);
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
        // A subscription that lived a while starts the backoff over; one that a sentinel (or a
        // proxy) closes at once does not spin.
        if since.elapsed() > SUBSCRIPTION_PING {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
