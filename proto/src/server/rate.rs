//! A request budget per second: one atomic word, a fixed one-second window. Cheap enough for
//! every request; used per connection here and per namespace by the registry.

use std::sync::atomic::{AtomicU64, Ordering};

/// Requests in the current second: the second in the high 32 bits, the count in the low 32.
#[derive(Debug, Default)]
pub struct RateWindow(AtomicU64);

impl RateWindow {
    /// Counts one request at `now_ms` against `per_second` (0: no limit); false when this
    /// second's budget is spent (the request is not counted then).
    pub fn admit(&self, now_ms: u64, per_second: u32) -> bool {
        if per_second == 0 {
            return true;
        }
        let second = (now_ms / 1000) & 0xFFFF_FFFF;
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let (window, count) = (current >> 32, current & 0xFFFF_FFFF);
            if window == second && count >= u64::from(per_second) {
                return false;
            }
            let next = if window == second { current + 1 } else { (second << 32) | 1 };
            match self.0.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}
