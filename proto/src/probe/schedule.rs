//! When the next check of an instance runs (spec §13.4, Nacos' `HealthCheckTaskV2` and
//! `reEvaluateCheckRT`): a random first delay spreads the checks out, then the delay follows
//! the target's response times, smoothed and clamped per checker type. Pure: the caller passes
//! the random numbers in, so tests are deterministic and this crate needs no RNG.

use std::time::Duration;

use super::checker::HealthChecker;
use super::outcome::RtSample;

/// Smoothing parameters of one checker type (Nacos' `SwitchDomain` health params).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RtParams {
    /// Shortest delay between checks, in ms.
    pub min_ms: u64,
    /// Longest delay between checks, in ms.
    pub max_ms: u64,
    /// Weight of the previous delay against the last sample.
    pub factor: f64,
}

impl RtParams {
    /// TCP: 1–5 s, factor 0.75.
    pub const TCP: Self = Self { min_ms: 1000, max_ms: 5000, factor: 0.75 };
    /// HTTP: 0.5–5 s, factor 0.85.
    pub const HTTP: Self = Self { min_ms: 500, max_ms: 5000, factor: 0.85 };
    /// MySQL: 2–3 s, factor 0.65.
    pub const MYSQL: Self = Self { min_ms: 2000, max_ms: 3000, factor: 0.65 };

    /// The parameters of a checker; `None` for `NONE`, which is never scheduled.
    pub fn of(checker: &HealthChecker) -> Option<Self> {
        match checker {
            HealthChecker::Tcp => Some(Self::TCP),
            HealthChecker::Http(_) => Some(Self::HTTP),
            HealthChecker::Mysql(_) => Some(Self::MYSQL),
            HealthChecker::None => None,
        }
    }
}

/// Fixed part of the first delay, in ms.
const FIRST_DELAY_BASE_MS: u64 = 2000;
/// Bound of the random part of the first delay (Nacos uses the TCP maximum for every type).
const FIRST_DELAY_SPREAD_MS: u64 = RtParams::TCP.max_ms;

/// The delay before the next check of one instance (Nacos' `checkRtNormalized`).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    params: RtParams,
    normalized_ms: u64,
}

impl Schedule {
    /// Starts with the first delay, `2000 + rand(0, rand(0, 5000))` ms: 2–7 s, skewed toward 2 s
    /// so that checks registered together do not run together. `rand_below(n)` must return a
    /// uniform number in `[0, n)`; it is not called with 0.
    pub fn new(params: RtParams, mut rand_below: impl FnMut(u64) -> u64) -> Self {
        let bound = rand_below(FIRST_DELAY_SPREAD_MS);
        let spread = if bound == 0 { 0 } else { rand_below(bound) };
        Self { params, normalized_ms: FIRST_DELAY_BASE_MS + spread }
    }

    /// The delay before the next check.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.normalized_ms)
    }

    /// Folds in the last check's sample: `factor × previous + (1 − factor) × sample`, clamped to
    /// the checker's [min, max]. Returns the new delay.
    pub fn record(&mut self, sample: RtSample) -> Duration {
        let RtParams { min_ms, max_ms, factor } = self.params;
        let sample_ms = match sample {
            RtSample::Measured(rt) => u64::try_from(rt.as_millis()).unwrap_or(u64::MAX),
            RtSample::Backoff => self.normalized_ms.saturating_mul(2),
            RtSample::Max => max_ms,
        };
        // Precision: delays are far below 2^52 ms, so f64 is exact enough; truncation as in Java.
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let smoothed = (factor * self.normalized_ms as f64 + (1.0 - factor) * sample_ms as f64) as u64;
        self.normalized_ms = smoothed.clamp(min_ms, max_ms);
        self.delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn first_delay_is_two_seconds_plus_a_nested_random_spread() {
        // rand_below answers from a script and records its bounds.
        let first = |answers: &[u64]| {
            let (mut answers, mut bounds) = (answers.iter().copied(), Vec::new());
            let schedule = Schedule::new(RtParams::TCP, |bound| {
                bounds.push(bound);
                answers.next().unwrap()
            });
            (schedule.delay(), bounds)
        };
        assert_eq!(first(&[4999, 4998]), (ms(6998), vec![5000, 4999]));
        assert_eq!(first(&[3000, 10]), (ms(2010), vec![5000, 3000]));
        assert_eq!(first(&[0]), (ms(2000), vec![5000]), "rand(0, 0) is 0 and is not asked for");
    }

    #[test]
    fn next_delay_is_the_smoothed_rt_clamped_per_type() {
        let mut tcp = Schedule { params: RtParams::TCP, normalized_ms: 2000 };
        assert_eq!(tcp.record(RtSample::Measured(ms(4))), ms(1501), "0.75 × 2000 + 0.25 × 4");
        assert_eq!(tcp.record(RtSample::Measured(ms(4))), ms(1126));
        assert_eq!(tcp.record(RtSample::Measured(ms(4))), ms(1000), "clamped to the TCP minimum");
        assert_eq!(tcp.record(RtSample::Max), ms(2000), "0.75 × 1000 + 0.25 × 5000");
        assert_eq!(tcp.record(RtSample::Backoff), ms(2500), "0.75 × 2000 + 0.25 × 4000");

        let mut http = Schedule { params: RtParams::HTTP, normalized_ms: 6000 };
        assert_eq!(http.record(RtSample::Measured(ms(10))), ms(5000), "a first delay above max is clamped");
        assert_eq!(http.record(RtSample::Measured(ms(10))), ms(4251));

        let mut mysql = Schedule { params: RtParams::MYSQL, normalized_ms: 2000 };
        assert_eq!(mysql.record(RtSample::Measured(ms(1))), ms(2000), "MySQL minimum");
        assert_eq!(mysql.record(RtSample::Backoff), ms(2700), "0.65 × 2000 + 0.35 × 4000");
        assert_eq!(mysql.record(RtSample::Backoff), ms(3000), "MySQL maximum");
    }

    #[test]
    fn parameters_follow_the_checker_type() {
        use crate::probe::checker::{HttpChecker, MysqlChecker};
        assert_eq!(RtParams::of(&HealthChecker::Tcp), Some(RtParams::TCP));
        assert_eq!(RtParams::of(&HealthChecker::Http(HttpChecker::default())), Some(RtParams::HTTP));
        assert_eq!(RtParams::of(&HealthChecker::Mysql(MysqlChecker::default())), Some(RtParams::MYSQL));
        assert_eq!(RtParams::of(&HealthChecker::None), None);
    }
}
