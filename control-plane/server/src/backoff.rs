//! Jittered exponential backoff (client-go's shape: base·2ⁿ capped, ±50 % jitter), used by
//! the reconciler's requeues, the election loop and store reconnects.

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `failures` (0 = first failure gets ~`base`).
pub fn delay(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.min(20));
    let capped = exp.min(max);
    let jitter = rand::rng().random_range(0.5..1.5);
    capped.mul_f64(jitter).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        assert!(delay(0, base, max) <= Duration::from_millis(150));
        assert!(delay(3, base, max) >= Duration::from_millis(400));
        assert!(delay(30, base, max) <= max);
    }
}
