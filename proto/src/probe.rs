//! Health probes as Nacos runs them on persistent instances (spec §13.4), shared by the server
//! (instances no sidecar owns) and the sidecar (its pod's app), plus the probe-spec grammar the
//! operator's webhook writes for the sidecar.
//!
//! ```text
//!  checker (JSON) ──► check(checker, ip:port) ──► Report ─┬─► outcome ──► HealthTracker ──► flip?
//!                     tcp · http · mysql  [probe]         └─► rt_sample ─► Schedule ──► next delay
//! ```
//!
//! Everything but [`check`] and the probes behind it is pure and needs no feature: the
//! operator uses [`spec`] with default features off, the server's model can hold a
//! [`checker::HealthChecker`]. The loop that sleeps, checks and reports belongs to the caller.

pub mod checker;
pub mod health;
pub mod outcome;
pub mod schedule;
pub mod spec;

#[cfg(feature = "probe")]
pub mod http;
#[cfg(any(test, feature = "test-support"))]
pub mod mariadb;
#[cfg(feature = "probe")]
pub mod mysql;
#[cfg(feature = "probe")]
pub mod tcp;
#[cfg(test)]
#[cfg(feature = "probe")]
mod test_util;

#[cfg(feature = "probe")]
pub use run::check;

#[cfg(feature = "probe")]
mod run {
    use std::net::SocketAddr;

    use tokio::time::Instant;

    use super::checker::HealthChecker;
    use super::outcome::Report;
    use super::{http, mysql, tcp};

    /// Runs one check of `target` (the instance's ip and check port); `None` for a `NONE`
    /// checker, whose instances are never probed.
    pub async fn check(checker: &HealthChecker, target: SocketAddr) -> Option<Report> {
        let started = Instant::now();
        let result = match checker {
            HealthChecker::Tcp => tcp::check(target).await,
            HealthChecker::Http(http) => http::check(target, http).await,
            HealthChecker::Mysql(mysql) => mysql::check(target, mysql).await,
            HealthChecker::None => return None,
        };
        Some(Report { result, elapsed: started.elapsed() })
    }

    #[cfg(test)]
    mod tests {
        use tokio::net::TcpListener;

        use super::*;
        use crate::probe::outcome::{Outcome, RtSample};
        use crate::probe::test_util::closed_port;

        #[tokio::test]
        async fn runs_the_checker_of_its_type_and_times_it() {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let report = check(&HealthChecker::Tcp, listener.local_addr().unwrap()).await.unwrap();
            assert_eq!(report.outcome(), Outcome::Ok);
            assert_eq!(report.rt_sample(), RtSample::Measured(report.elapsed));

            let report = check(&HealthChecker::Tcp, closed_port().await).await.unwrap();
            assert_eq!((report.outcome(), report.rt_sample()), (Outcome::FailNow, RtSample::Max));

            assert!(check(&HealthChecker::None, listener.local_addr().unwrap()).await.is_none());
        }
    }
}
