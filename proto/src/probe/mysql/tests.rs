use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::*;
use crate::probe::outcome::Outcome;
use crate::probe::test_util::{closed_port, silent_server};

/// `MYSQL_PROBE_REQUIRED=1` turns a missing MariaDB from a skip into a failure (set in CI).
const REQUIRED: &str = "MYSQL_PROBE_REQUIRED";
/// How long a fresh MariaDB may take to accept connections (about 3 s here).
const STARTUP: Duration = Duration::from_secs(60);

const USER: &str = "probe";
const PASSWORD: &str = "pw";

/// A real MariaDB on a loopback port with its own data directory, killed by PID on drop.
struct MariaDb {
    server: Child,
    port: u16,
    dir: TempDir,
}

impl MariaDb {
    /// Installs a data directory, starts `mariadbd` and adds the probe's user; `None` (after
    /// printing why) when MariaDB is not installed and [`REQUIRED`] is not set.
    fn start() -> Option<Self> {
        let (Some(mariadbd), Some(install_db), Some(client)) =
            (find("mariadbd"), find("mariadb-install-db"), find("mariadb"))
        else {
            let message = "mariadbd, mariadb-install-db or mariadb not found \
                           (apt-get install -y --no-install-recommends mariadb-server)";
            assert!(std::env::var(REQUIRED).as_deref() != Ok("1"), "{REQUIRED}=1 but {message}");
            eprintln!("SKIP: MySQL probe test against a real server: {message}");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("probe-mariadb").tempdir().unwrap();
        let data = dir.path().join("data");
        let user = if is_root() { vec!["--user=root".to_owned()] } else { Vec::new() };
        let installed = Command::new(install_db)
            .args(&user)
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .output()
            .unwrap();
        assert!(installed.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&installed.stderr));

        let port = free_port();
        let server = Command::new(mariadbd)
            .args(&user)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--log-error={}", dir.path().join("error.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut db = Self { server, port, dir };
        db.wait_ready(&client);
        db.sql(&format!(
            "CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; GRANT ALL ON *.* TO '{USER}'@'127.0.0.1';"
        ));
        Some(db)
    }

    fn target(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Runs statements as root over the server's socket.
    fn sql(&self, statements: &str) {
        let output = self.client().arg("-e").arg(statements).output().unwrap();
        assert!(output.status.success(), "{statements}: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn client(&self) -> Command {
        let mut command = Command::new(find("mariadb").unwrap());
        command.arg("-uroot").arg(format!("--socket={}", self.dir.path().join("sock").display()));
        command
    }

    /// Polls until root can log in, failing at the deadline or when the server exits.
    fn wait_ready(&mut self, client: &Path) {
        let deadline = Instant::now() + STARTUP;
        loop {
            let ping = Command::new(client)
                .arg("-uroot")
                .arg(format!("--socket={}", self.dir.path().join("sock").display()))
                .args(["-e", "SELECT 1"])
                .output()
                .unwrap();
            if ping.status.success() {
                return;
            }
            if let Some(status) = self.server.try_wait().unwrap() {
                panic!("mariadbd exited with {status}: {}", self.error_log());
            }
            assert!(Instant::now() < deadline, "mariadbd not ready within {STARTUP:?}: {}", self.error_log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // SIGKILL by PID: the data directory is thrown away with `dir` anyway.
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Debian puts mariadbd in /usr/sbin, which is not on every user's PATH.
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

/// mariadbd refuses to run as root without `--user=root`, and only root may pass it.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|status| status.lines().any(|line| line.starts_with("Uid:\t0\t")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn checker(pwd: &str, cmd: &str) -> MysqlChecker {
    MysqlChecker { user: USER.into(), pwd: pwd.into(), cmd: cmd.into() }
}

#[tokio::test]
async fn master_is_ok_replica_fails_and_sql_errors_fail_now() {
    let Some(db) = MariaDb::start() else { return };
    let master_check = checker(PASSWORD, MysqlChecker::MASTER_CHECK);

    db.sql("SET GLOBAL read_only=OFF");
    check(db.target(), &master_check).await.unwrap();

    db.sql("SET GLOBAL read_only=ON");
    let replica = check(db.target(), &master_check).await.unwrap_err();
    assert!(matches!(replica, Failure::Replica), "{replica}");
    assert_eq!(replica.outcome(), Outcome::Fail);
    // Any other statement only has to succeed, replica or not.
    check(db.target(), &checker(PASSWORD, "SELECT 1")).await.unwrap();

    let denied = check(db.target(), &checker("wrong", MysqlChecker::MASTER_CHECK)).await.unwrap_err();
    assert!(matches!(denied, Failure::Sql { code: 1045, .. }), "{denied}");
    assert_eq!(denied.outcome(), Outcome::FailNow);

    let bad_statement = check(db.target(), &checker(PASSWORD, "SELEC 1")).await.unwrap_err();
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
