//! Per-thread state of the hit path, in `const` thread-locals (no lazy-initialisation check on
//! each access): the thread's stripe of striped counters, and its countdown to the next sample.

use std::{
    cell::Cell,
    sync::atomic::{AtomicUsize, Ordering},
};

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    static COUNTDOWN: Cell<i32> = const { Cell::new(0) };
}

/// This thread's number, taken once (threads numbered in the order they first ask).
#[inline]
pub(crate) fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SLOT.with(|slot| match slot.get() {
        usize::MAX => {
            let taken = NEXT.fetch_add(1, Ordering::Relaxed) % (usize::MAX - 1);
            slot.set(taken);
            taken
        }
        taken => taken,
    })
}

/// Whether a read costing `cost` units is sampled: one sample every [`SAMPLE_UNITS`] units on
/// average, the gaps random (1 to twice the mean), so no periodic access pattern always
/// samples, or always skips, the same key. Costs a decrement and a branch when not sampled.
#[inline]
pub(crate) fn sampled(cost: i32) -> bool {
    COUNTDOWN.with(|countdown| {
        let left = countdown.get() - cost;
        if left > 0 {
            countdown.set(left);
            false
        } else {
            countdown.set(fastrand::i32(1..2 * SAMPLE_UNITS));
            true
        }
    })
}

/// The mean distance between samples, in cost units.
pub(crate) const SAMPLE_UNITS: i32 = 64;

#[cfg(test)]
mod tests {
    #[test]
    fn a_sample_every_sixty_four_units_on_average() {
        let l1 = (0..640_000).filter(|_| super::sampled(1)).count();
        assert!((9_000..11_000).contains(&l1), "{l1}");
        let store = (0..160_000).filter(|_| super::sampled(4)).count();
        assert!((9_000..11_000).contains(&store), "{store}");
    }
}
