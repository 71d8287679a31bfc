//! Login attempt limiting: after `max_failures` failed logins for one (user name, client IP)
//! within `window`, further attempts are refused until the window since the first failure
//! passes. A success clears the record. Memory is bounded: past [`MAX_TRACKED`] records, the
//! expired ones are dropped, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Most (user, IP) pairs tracked at once.
const MAX_TRACKED: usize = 10_000;

type Key = (String, Option<IpAddr>);

/// Failed-login records.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<Key, (Instant, u32)>>,
}

impl LoginLimiter {
    /// A limiter allowing `max_failures` failures per `window` (0 failures: no limit).
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self { max_failures, window, failures: Mutex::default() }
    }

    /// Whether attempts for this pair are refused now.
    pub fn blocked(&self, user: &str, ip: Option<IpAddr>, now: Instant) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        let failures = self.failures.lock();
        failures
            .get(&(user.to_owned(), ip))
            .is_some_and(|(since, n)| *n >= self.max_failures && now.duration_since(*since) < self.window)
    }

    /// Records a failed attempt.
    pub fn failed(&self, user: &str, ip: Option<IpAddr>, now: Instant) {
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (since, _)| now.duration_since(*since) < self.window);
            if failures.len() >= MAX_TRACKED
                && let Some(oldest) = failures.iter().min_by_key(|(_, (since, _))| *since).map(|(k, _)| k.clone())
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry((user.to_owned(), ip)).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// Records a success: the pair starts over.
    pub fn succeeded(&self, user: &str, ip: Option<IpAddr>) {
        self.failures.lock().remove(&(user.to_owned(), ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_passes() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let (t0, ip) = (Instant::now(), Some(IpAddr::from([127, 0, 0, 1])));
        for _ in 0..3 {
            assert!(!l.blocked("u", ip, t0));
            l.failed("u", ip, t0);
        }
        assert!(l.blocked("u", ip, t0));
        assert!(!l.blocked("other", ip, t0), "per user");
        assert!(!l.blocked("u", Some(IpAddr::from([127, 0, 0, 2])), t0), "per address");
        assert!(!l.blocked("u", ip, t0 + Duration::from_secs(61)));
        l.succeeded("u", ip);
        assert!(!l.blocked("u", ip, t0));
    }
}
