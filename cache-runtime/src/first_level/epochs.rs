//! Invalidation epochs: the counters a first-level entry is checked against.
//!
//! Every key (an entry's or a tag's) maps to one of [`STRIPES`] counters by its hash, and an
//! invalidation of the key bumps its counter. Before a read is sent to Redis, the reader takes
//! a [`Ticket`]: the counters of the entry's key and of its tags, and the global epoch (bumped
//! by `FLUSHDB` and by every re-arm of tracking). An entry made from that read is served only
//! while every counter still has the value the ticket saw, so an invalidation that arrives
//! before the reply, after it, or while the entry is being inserted makes it unusable: there is
//! no window in which a value read before an invalidation enters the first level after it.
//!
//! Two keys that share a stripe invalidate each other's entries: a spurious miss, never a
//! stale hit.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters per stripe: 16,384 (128 KiB), so a collision costs a miss on about one key in
/// sixteen thousand of those invalidated.
pub(crate) const STRIPES: usize = 1 << 14;

/// One key's stripe and the counter value a reader saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    stripe: u32,
    epoch: u64,
}

/// What a reader saw before sending its read: the global epoch and one stamp per key (the
/// entry's first, then its tags').
#[derive(Clone, Debug)]
pub(crate) struct Ticket {
    pub(crate) global: u64,
    pub(crate) stamps: Box<[Stamp]>,
    /// Whether the invalidation stream was confirmed live when the ticket was taken. A read
    /// made while it was not may have missed invalidations, and never enters the first level.
    pub(crate) live: bool,
}

pub(crate) struct Epochs {
    stripes: Box<[AtomicU64]>,
    global: AtomicU64,
}

impl Default for Epochs {
    fn default() -> Self {
        Epochs {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
        }
    }
}

fn stripe(key: &str) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize & (STRIPES - 1)) as u32
}

impl Epochs {
    /// Makes every entry read under an earlier stamp of `key` unusable.
    pub(crate) fn bump(&self, key: &str) {
        self.stripes[stripe(key) as usize].fetch_add(1, Ordering::SeqCst);
    }

    /// Makes every entry read before now unusable.
    pub(crate) fn bump_all(&self) {
        self.global.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn global(&self) -> u64 {
        self.global.load(Ordering::SeqCst)
    }

    pub(crate) fn stamp(&self, key: &str) -> Stamp {
        let stripe = stripe(key);
        Stamp {
            stripe,
            epoch: self.stripes[stripe as usize].load(Ordering::SeqCst),
        }
    }

    /// A ticket for a read of `entry` carrying `tags`.
    pub(crate) fn ticket<'k>(
        &self,
        entry: &'k str,
        tags: impl Iterator<Item = &'k str>,
        live: bool,
    ) -> Ticket {
        // Global first: a re-arm between the two loads leaves the ticket already outdated.
        let global = self.global();
        let stamps = std::iter::once(entry)
            .chain(tags)
            .map(|key| self.stamp(key))
            .collect();
        Ticket {
            global,
            stamps,
            live,
        }
    }

    /// Whether nothing the ticket covers was invalidated since it was taken.
    pub(crate) fn current(&self, ticket: &Ticket) -> bool {
        ticket.global == self.global()
            && ticket
                .stamps
                .iter()
                .all(|s| self.stripes[s.stripe as usize].load(Ordering::SeqCst) == s.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_of_the_key_or_a_tag_or_everything_outdates_a_ticket() {
        let epochs = Epochs::default();
        let tags = ["ns:tag:{a}", "ns:tag:{b}"];
        let ticket = || epochs.ticket("ns:f:v1:{1}", tags.iter().copied(), true);

        let t = ticket();
        assert!(epochs.current(&t));
        epochs.bump("ns:f:v1:{2}");
        // Another key: still current unless it shares the stripe.
        assert_eq!(
            epochs.current(&t),
            stripe("ns:f:v1:{2}") != stripe("ns:f:v1:{1}")
        );

        let t = ticket();
        epochs.bump("ns:f:v1:{1}");
        assert!(!epochs.current(&t));

        let t = ticket();
        epochs.bump("ns:tag:{b}");
        assert!(!epochs.current(&t));

        let t = ticket();
        epochs.bump_all();
        assert!(!epochs.current(&t));
        assert!(epochs.current(&ticket()));
    }
}
