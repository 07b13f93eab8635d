//! Token-bucket rate limits, one bucket per API key, in memory (limits reset
//! on restart, which errs on the side of letting requests through).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// What the limiter decided for one request; the API turns it into
/// `X-RateLimit-*` headers and, when refused, a 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Bucket size.
    pub limit: u32,
    /// Whole requests left after this one.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until one request is allowed (0 when allowed).
    pub retry_after_secs: u64,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct RateLimiter {
    per_second: f64,
    burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: u32) -> Self {
        RateLimiter {
            per_second,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket if it has one.
    pub fn check(&self, key: &str) -> Decision {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Decision {
        let burst = f64::from(self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(burst);
        b.last = now;
        let allowed = b.tokens >= 1.0;
        if allowed {
            b.tokens -= 1.0;
        }
        let reset = ((burst - b.tokens) / self.per_second).ceil() as u64;
        let retry = if allowed {
            0
        } else {
            ((1.0 - b.tokens) / self.per_second).ceil().max(1.0) as u64
        };
        Decision {
            allowed,
            limit: self.burst,
            remaining: b.tokens.floor() as u32,
            reset_secs: reset,
            retry_after_secs: retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refuse_then_refill() {
        let rl = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for left in [2, 1, 0] {
            let d = rl.check_at("k", t0);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let d = rl.check_at("k", t0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, 1);
        // Another key has its own bucket.
        assert!(rl.check_at("other", t0).allowed);
        // Half a second at 2/s refills one token.
        assert!(rl.check_at("k", t0 + Duration::from_millis(500)).allowed);
        assert!(!rl.check_at("k", t0 + Duration::from_millis(500)).allowed);
    }
}
