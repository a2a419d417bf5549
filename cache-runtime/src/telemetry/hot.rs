//! Hot keys: a fixed-memory top-K per function (Space-Saving, Metwally et al. 2005), fed by a
//! sample of reads.
//!
//! A Redis read is sampled once in 16, a first-level hit (far cheaper, so the sample's cost
//! weighs more) once in 64 (`thread::sampled`, a countdown: the other reads pay a decrement);
//! each sample counts for the reads it stands for. The sketch keeps [`CAPACITY`] keys; a key
//! not held replaces the least counted one and inherits its count, which is that key's error
//! bound. A held key's estimate never undercounts its sampled reads, and overcounts by at most
//! the least count when it entered. Every key with more than `total / CAPACITY` sampled reads
//! is held.

use std::{collections::HashMap, sync::Mutex};

use crate::key::KeyHasher;

/// Sampling cost of a Redis read and of a first-level hit, in `thread::SAMPLE_UNITS`
/// (one sample every 64 units): one in 16 Redis reads, one in 64 first-level hits.
pub(crate) const REDIS_READ: i32 = 4;
pub(crate) const FIRST_LEVEL_HIT: i32 = 1;
/// Keys held per function per process.
pub(crate) const CAPACITY: usize = 64;

/// The sketch of one function, since its last flush.
pub(crate) struct HotKeys {
    counts: HashMap<Box<str>, Estimate, KeyHasher>,
}

impl Default for HotKeys {
    fn default() -> Self {
        HotKeys {
            counts: HashMap::with_capacity_and_hasher(CAPACITY, KeyHasher::random()),
        }
    }
}

/// A held key's count and its error bound (the count it inherited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Estimate {
    pub(crate) count: u64,
    pub(crate) error: u64,
}

impl HotKeys {
    /// Offers `key` to `sketch` when this read (of sampling `cost`) is sampled, counted for
    /// the reads the sample stands for.
    #[inline]
    pub(crate) fn sample(sketch: &Mutex<HotKeys>, key: &str, cost: i32) {
        if !super::thread::sampled(cost) {
            return;
        }
        let reads = (super::thread::SAMPLE_UNITS / cost) as u64;
        sketch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .offer(key, reads);
    }

    /// Counts `reads` occurrences of `key`.
    pub(crate) fn offer(&mut self, key: &str, reads: u64) {
        if let Some(estimate) = self.counts.get_mut(key) {
            estimate.count += reads;
            return;
        }
        if self.counts.len() < CAPACITY {
            self.counts.insert(
                key.into(),
                Estimate {
                    count: reads,
                    error: 0,
                },
            );
            return;
        }
        let Some((least, floor)) = self
            .counts
            .iter()
            .min_by_key(|(_, e)| e.count)
            .map(|(k, e)| (k.clone(), e.count))
        else {
            return;
        };
        self.counts.remove(&least);
        self.counts.insert(
            key.into(),
            Estimate {
                count: floor + reads,
                error: floor,
            },
        );
    }

    /// The held keys and their estimates, emptying the sketch (each flush sends one interval).
    pub(crate) fn take(&mut self) -> Vec<(Box<str>, Estimate)> {
        let mut keys: Vec<_> = self.counts.drain().collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.1.count));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heavy_hitters_of_a_skewed_stream_are_held_first() {
        let mut sketch = HotKeys::default();
        // Five hot keys (3,000 to 800 reads, gaps wider than n / CAPACITY), 200 warm keys
        // of 20 reads and 5,000 cold keys of one.
        let hot = [3_000u64, 2_400, 1_800, 1_200, 800];
        let mut stream = Vec::new();
        for (i, reads) in hot.iter().enumerate() {
            stream.extend(std::iter::repeat_n(format!("k{i}"), *reads as usize));
        }
        for i in 0..200 {
            stream.extend(std::iter::repeat_n(format!("warm{i}"), 20));
        }
        for i in 0..5_000 {
            stream.push(format!("cold{i}"));
        }
        fastrand::seed(7);
        fastrand::shuffle(&mut stream);
        for key in &stream {
            sketch.offer(key, 1);
        }
        let top: Vec<_> = sketch.take().into_iter().take(5).collect();
        let names: Vec<&str> = top.iter().map(|(k, _)| &**k).collect();
        assert_eq!(names, ["k0", "k1", "k2", "k3", "k4"]);
        for (key, estimate) in &top {
            let truth = hot[key[1..].parse::<usize>().unwrap()];
            assert!(estimate.count >= truth, "{key} undercounted");
            assert!(
                estimate.count - estimate.error <= truth,
                "{key} past its bound"
            );
        }
    }
}
