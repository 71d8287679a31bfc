//! What one check found and what Nacos makes of it (spec §13.4), for every probe kind in one
//! table ([`Failure::outcome`], [`Failure::rt_sample`]): the [`Outcome`] the health tracker
//! counts and the [`RtSample`] the scheduler folds into the next delay. Pure; the probes in
//! `tcp`, `http` and `mysql` only say which [`Failure`] happened.

use std::io;
use std::time::Duration;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Healthy answer; counts toward turning an unhealthy instance healthy.
    Ok,
    /// Possibly transient trouble (timeout, busy, replica); counts toward unhealthy.
    Fail,
    /// The target answered and refused (port closed, wrong status, SQL error): unhealthy now.
    FailNow,
}

/// What the scheduler folds into the normalized RT after a check (Nacos' `reEvaluateCheckRT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtSample {
    /// A successful check's response time.
    Measured(Duration),
    /// Twice the current delay: the target is slow or busy, back off.
    Backoff,
    /// The checker's maximum delay: the target is down or broken.
    Max,
}

/// Why a check did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Nothing listens on the port (TCP, HTTP).
    #[error("connection refused")]
    Refused,
    /// No answer in time; names the step that timed out.
    #[error("timed out waiting for the {0}")]
    Timeout(&'static str),
    /// The MySQL server could not be reached (refused, reset, no route).
    #[error("unreachable: {0}")]
    Unreachable(#[source] io::Error),
    /// The HTTP status, when it is not 200.
    #[error("HTTP status {0}")]
    Status(u16),
    /// `read_only` is `ON`: a replica, which Nacos counts as unhealthy so only the master is.
    #[error("read_only is ON (a replica)")]
    Replica,
    /// The MySQL server refused the login or the statement.
    #[error("SQL error {code}: {message}")]
    Sql {
        /// MySQL error code (1045: access denied, 1064: syntax).
        code: u16,
        /// Server message.
        message: String,
    },
    /// The answer was not the protocol expected.
    #[error("bad answer: {0}")]
    Protocol(String),
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    /// The target cannot be checked as configured (e.g. a path that is no valid request target).
    #[error("invalid check: {0}")]
    Invalid(String),
}

/// One finished check.
#[derive(Debug)]
pub struct Report {
    /// `Ok(())` or why not.
    pub result: Result<(), Failure>,
    /// Time from the start of the check to its verdict.
    pub elapsed: Duration,
}

// === impl Failure ===

impl Failure {
    /// The verdict, following Nacos' processors: only answers that prove the target is up and
    /// refusing fail at once; everything that may pass (timeouts, busy, replica, network
    /// trouble) has to repeat.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Refused | Self::Sql { .. } => Outcome::FailNow,
            Self::Status(status) if !is_busy(*status) => Outcome::FailNow,
            Self::Status(_)
            | Self::Timeout(_)
            | Self::Unreachable(_)
            | Self::Replica
            | Self::Protocol(_)
            | Self::Io(_)
            | Self::Invalid(_) => Outcome::Fail,
        }
    }

    /// The RT sample Nacos feeds its scheduler for this failure: back off on slow or busy
    /// targets, jump to the maximum on broken ones.
    pub fn rt_sample(&self) -> RtSample {
        match self {
            Self::Timeout(_) | Self::Unreachable(_) => RtSample::Backoff,
            Self::Status(status) if is_busy(*status) => RtSample::Backoff,
            _ => RtSample::Max,
        }
    }
}

/// 503 (busy) and 302 (moved for now): Nacos' HTTP checker retries these before giving up.
fn is_busy(status: u16) -> bool {
    matches!(status, 503 | 302)
}

// === impl Report ===

impl Report {
    /// The verdict.
    pub fn outcome(&self) -> Outcome {
        self.result.as_ref().map_or_else(Failure::outcome, |()| Outcome::Ok)
    }

    /// What the scheduler folds in: the response time of a success, else per [`Failure::rt_sample`].
    pub fn rt_sample(&self) -> RtSample {
        self.result.as_ref().map_or_else(Failure::rt_sample, |()| RtSample::Measured(self.elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_the_outcomes_and_rt_samples_of_nacos_processors() {
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        for (failure, outcome, sample) in [
            (Failure::Refused, Outcome::FailNow, RtSample::Max),
            (Failure::Timeout("connect"), Outcome::Fail, RtSample::Backoff),
            (Failure::Unreachable(refused()), Outcome::Fail, RtSample::Backoff),
            (Failure::Status(503), Outcome::Fail, RtSample::Backoff),
            (Failure::Status(302), Outcome::Fail, RtSample::Backoff),
            (Failure::Status(404), Outcome::FailNow, RtSample::Max),
            (Failure::Status(201), Outcome::FailNow, RtSample::Max),
            (Failure::Status(500), Outcome::FailNow, RtSample::Max),
            (Failure::Replica, Outcome::Fail, RtSample::Max),
            (Failure::Sql { code: 1045, message: "denied".into() }, Outcome::FailNow, RtSample::Max),
            (Failure::Protocol("x".into()), Outcome::Fail, RtSample::Max),
            (Failure::Io(refused()), Outcome::Fail, RtSample::Max),
            (Failure::Invalid("x".into()), Outcome::Fail, RtSample::Max),
        ] {
            assert_eq!((failure.outcome(), failure.rt_sample()), (outcome, sample), "{failure}");
        }
    }

    #[test]
    fn a_success_reports_its_response_time() {
        let report = Report { result: Ok(()), elapsed: Duration::from_millis(42) };
        assert_eq!(report.outcome(), Outcome::Ok);
        assert_eq!(report.rt_sample(), RtSample::Measured(Duration::from_millis(42)));
    }
}
