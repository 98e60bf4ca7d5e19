//! Jitter for retry delays: many instances that lost the same broker or database at the same
//! moment would otherwise retry in lockstep, and every retry would hit the recovering node (or
//! the owner a re-sync asks) at once.

use std::time::Duration;

/// How long an owner that did not answer is not asked again: callers holding an old entry
/// serve it meanwhile (`GroupCache::owner_recently_failed`, the read model's own), so an owner
/// that is down costs one timeout a second, not one per request.
pub const OWNER_RETRY_AFTER: Duration = Duration::from_secs(1);

/// `delay` with "equal jitter": uniformly in `[delay / 2, delay]`, so a retry never waits
/// longer than the delay it was given and instances that failed together spread over half of it.
pub fn jitter(delay: Duration) -> Duration {
    let half = delay / 2;
    let spread = delay - half;
    half + spread.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, time::Duration};

    use super::jitter;

    #[test]
    fn a_jittered_delay_stays_within_half_and_all_of_the_delay_and_varies() {
        for ms in [1u64, 200, 300, 2_000] {
            let d = Duration::from_millis(ms);
            let seen: Vec<Duration> = (0..2_000).map(|_| jitter(d)).collect();
            assert!(seen.iter().all(|j| *j >= d / 2 && *j <= d), "{ms} ms: {seen:?}");
            if ms >= 200 {
                let distinct: HashSet<_> = seen.iter().collect();
                assert!(distinct.len() > 100, "{ms} ms: only {} distinct delays", distinct.len());
                let (lo, hi) = (seen.iter().min().unwrap(), seen.iter().max().unwrap());
                assert!(*lo < d * 6 / 10 && *hi > d * 9 / 10, "{ms} ms: {lo:?}..{hi:?} does not cover the range");
            }
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
