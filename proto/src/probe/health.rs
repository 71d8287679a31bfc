//! Whether an instance is healthy, from the outcomes of its checks (spec §13.4, Nacos'
//! `HealthCheckCommonV2`): three results in a row flip it, a "fail now" flips it at once. Pure;
//! whoever runs the checks writes a flip through to the registry.

use super::outcome::Outcome;

/// Consecutive results needed to flip (Nacos' `checkTimes`).
pub const CHECK_TIMES: u32 = 3;

/// The health of one checked instance and the streak counting toward a flip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    healthy: bool,
    /// Successes in a row while unhealthy (Nacos' okCount).
    ok_count: u32,
    /// Failures in a row while healthy (Nacos' failCount).
    fail_count: u32,
}

impl HealthTracker {
    /// Starts from the instance's registered health (persistent instances register healthy).
    pub fn new(healthy: bool) -> Self {
        Self { healthy, ok_count: 0, fail_count: 0 }
    }

    /// Current health.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Counts one outcome; `Some(new health)` when it flips. An outcome of the other kind resets
    /// the streak, so only uninterrupted runs flip. Nacos leaves a finished streak's counter as
    /// it is; it is reset here on the flip, which changes nothing observable because the next
    /// opposite outcome would reset it anyway.
    pub fn record(&mut self, outcome: Outcome) -> Option<bool> {
        match outcome {
            Outcome::Ok => {
                self.fail_count = 0;
                if self.healthy {
                    return None;
                }
                self.ok_count += 1;
                (self.ok_count >= CHECK_TIMES).then(|| self.flip(true))
            }
            Outcome::Fail => {
                self.ok_count = 0;
                if !self.healthy {
                    return None;
                }
                self.fail_count += 1;
                (self.fail_count >= CHECK_TIMES).then(|| self.flip(false))
            }
            Outcome::FailNow => {
                self.ok_count = 0;
                self.healthy.then(|| self.flip(false))
            }
        }
    }

    fn flip(&mut self, healthy: bool) -> bool {
        *self = Self::new(healthy);
        healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::{Fail, FailNow, Ok};

    /// The health after each outcome, starting from `healthy`.
    fn run(healthy: bool, outcomes: &[Outcome]) -> Vec<bool> {
        let mut tracker = HealthTracker::new(healthy);
        outcomes
            .iter()
            .map(|&outcome| {
                let before = tracker.healthy();
                let flipped = tracker.record(outcome);
                assert_eq!(flipped.is_some(), tracker.healthy() != before, "flip reported iff health changed");
                tracker.healthy()
            })
            .collect()
    }

    #[test]
    fn three_fails_in_a_row_make_a_healthy_instance_unhealthy() {
        assert_eq!(run(true, &[Fail, Fail, Fail, Fail]), [true, true, false, false]);
    }

    #[test]
    fn three_oks_in_a_row_make_an_unhealthy_instance_healthy() {
        assert_eq!(run(false, &[Ok, Ok, Ok, Ok]), [false, false, true, true]);
    }

    #[test]
    fn an_opposite_outcome_resets_the_streak() {
        assert_eq!(run(true, &[Fail, Fail, Ok, Fail, Fail, Fail]), [true, true, true, true, true, false]);
        assert_eq!(run(false, &[Ok, Ok, Fail, Ok, Ok, Ok]), [false, false, false, false, false, true]);
        assert_eq!(run(false, &[Ok, Ok, FailNow, Ok, Ok, Ok]), [false, false, false, false, false, true]);
    }

    #[test]
    fn fail_now_flips_at_once_and_repeats_nothing() {
        assert_eq!(run(true, &[FailNow, FailNow]), [false, false]);
        assert_eq!(run(true, &[Fail, Fail, FailNow, Ok, Ok, Ok]), [true, true, false, false, false, true]);
    }

    #[test]
    fn a_fresh_streak_starts_after_each_flip() {
        let outcomes = [Fail, Fail, Fail, Ok, Ok, Ok, Fail, Fail, Fail];
        assert_eq!(run(true, &outcomes), [true, true, false, false, false, true, true, true, false]);
    }
}
