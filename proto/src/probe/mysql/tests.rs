use super::*;
use crate::probe::mariadb::MariaDb;
use crate::probe::outcome::Outcome;
use crate::probe::test_util::{closed_port, silent_server};

const USER: &str = "probe";
const PASSWORD: &str = "pw";

fn checker(pwd: &str, cmd: &str) -> MysqlChecker {
    MysqlChecker { user: USER.into(), pwd: pwd.into(), cmd: cmd.into() }
}

#[tokio::test]
async fn master_is_ok_replica_fails_and_sql_errors_fail_now() {
    let Some(db) = MariaDb::start(USER, PASSWORD) else { return };
    let master_check = checker(PASSWORD, MysqlChecker::MASTER_CHECK);

    db.sql("SET GLOBAL read_only=OFF");
    check(db.addr(), &master_check).await.unwrap();

    db.sql("SET GLOBAL read_only=ON");
    let replica = check(db.addr(), &master_check).await.unwrap_err();
    assert!(matches!(replica, Failure::Replica), "{replica}");
    assert_eq!(replica.outcome(), Outcome::Fail);
    // Any other statement only has to succeed, replica or not.
    check(db.addr(), &checker(PASSWORD, "SELECT 1")).await.unwrap();

    let denied = check(db.addr(), &checker("wrong", MysqlChecker::MASTER_CHECK)).await.unwrap_err();
    assert!(matches!(denied, Failure::Sql { code: 1045, .. }), "{denied}");
    assert_eq!(denied.outcome(), Outcome::FailNow);

    let bad_statement = check(db.addr(), &checker(PASSWORD, "SELEC 1")).await.unwrap_err();
    assert!(matches!(bad_statement, Failure::Sql { code: 1064, .. }), "{bad_statement}");
    assert_eq!(bad_statement.outcome(), Outcome::FailNow);
}

#[tokio::test]
async fn nothing_listening_fails_but_not_now() {
    let failure = check(closed_port().await, &checker(PASSWORD, MysqlChecker::MASTER_CHECK)).await.unwrap_err();
    assert!(matches!(failure, Failure::Unreachable(_)), "{failure}");
    assert_eq!(failure.outcome(), Outcome::Fail);
}

#[tokio::test]
async fn server_that_never_greets_times_out_and_fails() {
    let started = tokio::time::Instant::now();
    let failure = check(silent_server().await, &checker(PASSWORD, MysqlChecker::MASTER_CHECK)).await.unwrap_err();
    assert!(matches!(failure, Failure::Timeout(_)), "{failure}");
    assert_eq!(failure.outcome(), Outcome::Fail);
    assert!(started.elapsed() >= CONNECT_TIMEOUT, "gave up after {:?}", started.elapsed());
}
