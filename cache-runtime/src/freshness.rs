//! Freshness decisions on a hit: fresh, stale (stale-while-revalidate window), or due for a
//! probabilistic early refresh (XFetch). Only durations from the store's own TTL are used,
//! never a host's wall clock.

use std::time::Duration;

/// How a hit should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it, and let one caller refresh it before it expires (XFetch drew "now").
    RefreshEarly,
    /// Past its TTL, inside the stale window: serve it while one caller refreshes.
    Stale,
}

/// XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): refresh when
/// `-delta * beta * ln(u) >= remaining`, with `u` uniform on (0, 1].
///
/// `delta` is how long the last load took and `remaining` how long until the entry expires.
/// A read with `r` left refreshes with probability `exp(-r / (beta * delta))`.
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::freshness::xfetch;
///
/// let (remaining, delta) = (Duration::from_secs(10), Duration::from_secs(1));
/// assert!(!xfetch(remaining, delta, 0.0, 0.001), "beta = 0 never refreshes early");
/// assert!(!xfetch(remaining, delta, 1.0, 0.5), "-ln(0.5) * 1 s < 10 s");
/// assert!(xfetch(remaining, delta, 1.0, 1e-6), "-ln(1e-6) * 1 s = 13.8 s >= 10 s");
/// ```
pub fn xfetch(remaining: Duration, delta: Duration, beta: f64, u: f64) -> bool {
    if beta <= 0.0 || !(u > 0.0 && u <= 1.0) {
        return false;
    }
    -delta.as_secs_f64() * beta * u.ln() >= remaining.as_secs_f64()
}

/// Classifies a hit from the store's remaining TTL and the entry's recorded windows.
///
/// The store's expiry is `ttl + stale`, so the entry is stale once less than `stale` remains.
/// `u` is the random draw for XFetch, uniform on (0, 1].
pub fn classify(
    remaining: Option<Duration>,
    stale: Duration,
    load_time: Duration,
    early_refresh: Option<f64>,
    u: f64,
) -> Freshness {
    let Some(remaining) = remaining else {
        return Freshness::Fresh;
    };
    if !stale.is_zero() && remaining <= stale {
        return Freshness::Stale;
    }
    match early_refresh {
        Some(beta) if xfetch(remaining - stale.min(remaining), load_time, beta, u) => {
            Freshness::RefreshEarly
        }
        _ => Freshness::Fresh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded generator, so the shares below are exact and repeatable.
    fn draws(seed: u64, n: usize) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| 1.0 - rng.f64()).collect()
    }

    fn share(remaining_s: u64, beta: f64) -> f64 {
        let delta = Duration::from_secs(1);
        let u = draws(7, 20_000);
        let hits = u
            .iter()
            .filter(|&&u| xfetch(Duration::from_secs(remaining_s), delta, beta, u))
            .count();
        hits as f64 / u.len() as f64
    }

    #[test]
    fn beta_zero_never_refreshes_early() {
        for remaining in [0, 1, 5, 60] {
            assert_eq!(share(remaining, 0.0), 0.0);
        }
    }

    #[test]
    fn the_share_of_early_refreshes_rises_as_expiry_approaches() {
        let shares: Vec<f64> = [6, 4, 2, 1].iter().map(|&r| share(r, 1.0)).collect();
        for pair in shares.windows(2) {
            assert!(pair[0] < pair[1], "shares must rise: {shares:?}");
        }
        // And match exp(-r / (beta * delta)) within sampling error.
        let expected = (-2.0f64).exp();
        assert!(
            (share(2, 1.0) - expected).abs() < 0.01,
            "{} vs {expected}",
            share(2, 1.0)
        );
        assert!(
            share(1, 2.0) > share(1, 1.0),
            "a larger beta refreshes earlier"
        );
    }

    #[test]
    fn classify_uses_the_stale_window() {
        let s = Duration::from_secs;
        assert_eq!(
            classify(Some(s(5)), s(10), s(1), None, 0.5),
            Freshness::Stale
        );
        assert_eq!(
            classify(Some(s(50)), s(10), s(1), None, 0.5),
            Freshness::Fresh
        );
        assert_eq!(
            classify(None, s(10), s(1), Some(1.0), 1e-9),
            Freshness::Fresh
        );
        assert_eq!(
            classify(Some(s(11)), s(10), s(1), Some(1.0), 0.1),
            Freshness::RefreshEarly
        );
    }
}
