//! The MySQL probe (spec §13.4): log in with the checker's user and password, run its `cmd`.
//! With [`MysqlChecker::MASTER_CHECK`] a `read_only` value of `ON` marks a replica, which fails,
//! so only the master of a MySQL pair is healthy. An SQL error (wrong credentials, bad
//! statement) fails now; timeouts and connection errors fail.
//!
//! Nacos' JDBC URL sets a 500 ms connect and socket timeout and a 1 s query timeout; here the
//! login (TCP connect and handshake) has [`CONNECT_TIMEOUT`] and the statement
//! [`QUERY_TIMEOUT`]. One connection per check, closed after it.

use std::net::SocketAddr;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row};
use tokio::time::timeout;

use super::checker::MysqlChecker;
use super::outcome::Failure;

/// Time for the TCP connect and the login.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Time for the statement (Nacos' `setQueryTimeout(1)`).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// What a replica answers to the master check.
const REPLICA_READ_ONLY: &str = "ON";

/// Logs in to `target` and runs the checker's statement.
pub(crate) async fn check(target: SocketAddr, checker: &MysqlChecker) -> Result<(), Failure> {
    let options = OptsBuilder::default()
        .ip_or_hostname(target.ip().to_string())
        .tcp_port(target.port())
        .user(Some(checker.user.as_str()))
        .pass(Some(checker.pwd.as_str()))
        // Otherwise the driver asks for the server's socket file and reconnects through it,
        // which would check a different path than the one registered.
        .prefer_socket(false);
    let conn = timeout(CONNECT_TIMEOUT, Conn::new(options)).await.map_err(|_| Failure::Timeout("MySQL login"))?;
    let mut conn = conn.map_err(|error| classify(error, Stage::Connect))?;
    let result =
        timeout(QUERY_TIMEOUT, run(&mut conn, &checker.cmd)).await.unwrap_or(Err(Failure::Timeout("MySQL query")));
    // Saying goodbye spares the server an aborted-connection warning; it must not change or
    // delay the verdict, so its result is ignored and it gets a short deadline.
    let _ = timeout(CONNECT_TIMEOUT, conn.disconnect()).await;
    result
}

/// Runs `cmd`; for the master check, reads the second column of the first row.
async fn run(conn: &mut Conn, cmd: &str) -> Result<(), Failure> {
    if cmd != MysqlChecker::MASTER_CHECK {
        return conn.query_drop(cmd).await.map_err(|error| classify(error, Stage::Query));
    }
    let row: Option<Row> = conn.query_first(cmd).await.map_err(|error| classify(error, Stage::Query))?;
    match row.and_then(|row| row.get_opt::<String, _>(1)) {
        Some(Ok(value)) if value == REPLICA_READ_ONLY => Err(Failure::Replica),
        Some(Ok(_)) => Ok(()),
        Some(Err(_)) | None => Err(Failure::Protocol("the read_only query returned no value".into())),
    }
}

/// Where a driver error happened; an I/O error while connecting means unreachable.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Connect,
    Query,
}

/// Only an error the server sent is an SQL error (fail now): it proves the server is up and
/// refusing. Per the spec a connection error is a "fail", also when the port is closed (unlike
/// the TCP and HTTP probes, where a refused connection fails now).
fn classify(error: mysql_async::Error, stage: Stage) -> Failure {
    match (error, stage) {
        (mysql_async::Error::Server(server), _) => Failure::Sql { code: server.code, message: server.message },
        (mysql_async::Error::Io(mysql_async::IoError::Io(io)), Stage::Connect) => Failure::Unreachable(io),
        (mysql_async::Error::Io(mysql_async::IoError::Io(io)), Stage::Query) => Failure::Io(io),
        (other, _) => Failure::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
