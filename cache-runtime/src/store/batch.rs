//! Batching of concurrent lookups: plain hits that arrive together share one `MGET`.
//!
//! A lookup that starts while no other is in flight sends its `GET` at once: a lone caller pays
//! nothing for batching. Otherwise the caller that finds no batch open starts one, yields once
//! so that callers ready to run on this runtime can add their keys, then sends the batch: a
//! `GET` when it holds one key, an `MGET` per [`MAX_BATCH`] keys otherwise. One command
//! instead of many saves the client's per-request work (channel hand-offs, response framing)
//! and the server's per-command dispatch, which is what limits throughput when many tasks hit
//! at once.
//!
//! Every caller still waits under its own operation timeout (the store's caller applies it).
//! If the caller sending a batch is cancelled before the batch is answered, the other callers
//! in it see their reply dropped and send their own `GET`, so one cancellation costs the others
//! a round trip, never a failed lookup.

use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicUsize, Ordering},
};

use redis::aio::ConnectionManager;
use tokio::sync::oneshot;

use crate::Error;

/// Most keys per `MGET`: a bigger batch is split, and its parts sent concurrently.
pub(crate) const MAX_BATCH: usize = 64;

type Reply = Result<Option<Vec<u8>>, Error>;

struct Pending {
    key: String,
    reply: oneshot::Sender<Reply>,
}

/// The open batch of one connection.
#[derive(Default)]
pub(crate) struct Batcher {
    open: Mutex<Vec<Pending>>,
    /// Lookups started and not finished, batched or not.
    in_flight: AtomicUsize,
}

/// Counts one lookup in flight until dropped (finished or cancelled).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Batcher {
    fn open(&self) -> MutexGuard<'_, Vec<Pending>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `GET key`, sent together with the lookups of other callers that arrive at the same time.
    pub(crate) async fn get(&self, conn: &ConnectionManager, key: &str) -> Reply {
        let alone = self.in_flight.fetch_add(1, Ordering::Relaxed) == 0;
        let _in_flight = InFlight(&self.in_flight);
        if alone {
            return get_one(conn, key).await;
        }
        let (reply, answer) = oneshot::channel();
        let starts = {
            let mut open = self.open();
            open.push(Pending {
                key: key.to_owned(),
                reply,
            });
            open.len() == 1
        };
        if starts {
            let mut sending = Sending {
                batcher: self,
                taken: false,
            };
            tokio::task::yield_now().await;
            let batch = sending.take();
            send(conn, batch).await;
        }
        match answer.await {
            Ok(reply) => reply,
            // The caller sending our batch was cancelled: ask on our own.
            Err(_) => get_one(conn, key).await,
        }
    }
}

/// The caller that started a batch; closes the batch even if that caller is cancelled while it
/// yields, so later callers start a new one instead of waiting on a batch nobody sends.
struct Sending<'a> {
    batcher: &'a Batcher,
    taken: bool,
}

impl Sending<'_> {
    fn take(&mut self) -> Vec<Pending> {
        self.taken = true;
        std::mem::take(&mut *self.batcher.open())
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if !self.taken {
            // Dropping the replies sends every waiter to its own GET.
            drop(self.take());
        }
    }
}

async fn get_one(conn: &ConnectionManager, key: &str) -> Reply {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
        .map_err(Error::Backend)
}

async fn send(conn: &ConnectionManager, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let Pending { key, reply } = batch.remove(0);
        let _ = reply.send(get_one(conn, &key).await);
        return;
    }
    let mut parts = Vec::with_capacity(batch.len().div_ceil(MAX_BATCH));
    while !batch.is_empty() {
        let rest = batch.split_off(batch.len().min(MAX_BATCH));
        parts.push(send_mget(conn, std::mem::replace(&mut batch, rest)));
    }
    futures_util::future::join_all(parts).await;
}

async fn send_mget(conn: &ConnectionManager, batch: Vec<Pending>) {
    let mut cmd = redis::cmd("MGET");
    for pending in &batch {
        cmd.arg(&pending.key);
    }
    let values: Result<Vec<Option<Vec<u8>>>, _> = cmd.query_async(&mut conn.clone()).await;
    match values {
        Ok(values) if values.len() == batch.len() => {
            for (pending, value) in batch.into_iter().zip(values) {
                let _ = pending.reply.send(Ok(value));
            }
        }
        Ok(values) => {
            let message = format!(
                "MGET returned {} values for {} keys",
                values.len(),
                batch.len()
            );
            for pending in batch {
                let _ = pending.reply.send(Err(Error::Protocol(message.clone())));
            }
        }
        Err(err) => {
            for pending in batch {
                let _ = pending.reply.send(Err(Error::Backend(err.clone())));
            }
        }
    }
}
