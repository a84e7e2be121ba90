//! Backoff between attempts: exponential, jittered, capped.

use std::time::Duration;

/// The longest wait between two attempts, whatever the attempt count.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 60 * 60);

/// The delay before retry number `retry` (0 for the first retry) of a worker whose base delay is
/// `base`: `base * 2^retry`, capped at [`MAX_BACKOFF`], then a random point in its upper half
/// (equal jitter), so that jobs that failed together do not retry together and no retry comes
/// sooner than half its step.
///
/// ```
/// use std::time::Duration;
/// let d = jobs::backoff(Duration::from_millis(100), 3);
/// assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800));
/// ```
pub fn backoff(base: Duration, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.min(31));
    let step = base.saturating_mul(factor).min(MAX_BACKOFF);
    let step_ms = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
    let half = step_ms / 2;
    Duration::from_millis(half + fastrand::u64(0..=step_ms - half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_bounds() {
        let base = Duration::from_millis(50);
        for retry in 0..10 {
            let step = base * 2u32.pow(retry);
            let d = backoff(base, retry);
            assert!(
                d >= step / 2 && d <= step,
                "retry {retry}: {d:?} outside {step:?}"
            );
        }
    }

    #[test]
    fn is_capped_for_huge_attempt_counts() {
        assert!(backoff(Duration::from_secs(5), 1_000) <= MAX_BACKOFF);
        assert!(backoff(Duration::from_secs(5), 1_000) >= MAX_BACKOFF / 2);
    }
}
