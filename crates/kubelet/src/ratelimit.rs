//! A token bucket for the kubelet's API writes, as client-go's default
//! client rate limiter behind the kubelet's `--kube-api-qps` (50) and
//! `--kube-api-burst` (100): up to `burst` requests at once, then `qps` per
//! second. A caller reserves a token and sleeps until it is due, so waiters
//! are served in order.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    qps: f64,
    burst: f64,
    /// Tokens available at `at` (negative: reserved ahead).
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `qps <= 0` means unlimited.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            qps,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// How long the caller must wait for its token, reserving it.
    pub fn reserve(&self, now: Instant) -> Duration {
        if self.qps <= 0.0 {
            return Duration::ZERO;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = *state;
        let refilled =
            (tokens + now.saturating_duration_since(at).as_secs_f64() * self.qps).min(self.burst);
        let left = refilled - 1.0;
        *state = (left, now.max(at));
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.qps)
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_qps_paces() {
        let limiter = RateLimiter::new(10.0, 3);
        let t = Instant::now();
        let waits: Vec<Duration> = (0..5).map(|_| limiter.reserve(t)).collect();
        assert_eq!(&waits[..3], [Duration::ZERO; 3]);
        assert!((waits[3].as_secs_f64() - 0.1).abs() < 1e-9);
        assert!((waits[4].as_secs_f64() - 0.2).abs() < 1e-9);
        // A second later the bucket has refilled.
        let later = t + Duration::from_secs(2);
        assert_eq!(limiter.reserve(later), Duration::ZERO);
    }

    #[test]
    fn zero_qps_is_unlimited() {
        let limiter = RateLimiter::new(0.0, 1);
        let t = Instant::now();
        assert!((0..100).all(|_| limiter.reserve(t).is_zero()));
    }
}
