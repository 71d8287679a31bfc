//! Test support (feature `test-support`): a real MariaDB on a loopback port with a data
//! directory of its own, for MySQL probe and health-check tests (`shared/testing/mariadb.md`).
//! One helper for this crate's probe tests and the registry's integration tests. Setup
//! failures panic: they are broken fixtures, not probe outcomes.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Deadlines scale by `IT_PATIENCE` (default 1), like every wait of the integration tests.
fn patience() -> u32 {
    std::env::var("IT_PATIENCE").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// `MYSQL_PROBE_REQUIRED=1` turns a missing MariaDB from a skip into a failure (set in CI).
const REQUIRED: &str = "MYSQL_PROBE_REQUIRED";
/// How long a fresh MariaDB may take to accept connections (about 3 s here).
const STARTUP: Duration = Duration::from_secs(60);

/// A running `mariadbd`, killed by PID on drop.
pub struct MariaDb {
    server: Child,
    port: u16,
    dir: TempDir,
    client: PathBuf,
}

impl MariaDb {
    /// Installs a data directory, starts `mariadbd` and adds `user`/`password` (all rights,
    /// from 127.0.0.1); `None` (after printing why) when MariaDB is not installed and
    /// `MYSQL_PROBE_REQUIRED` is not `1`.
    pub fn start(user: &str, password: &str) -> Option<Self> {
        let (Some(mariadbd), Some(install_db), Some(client)) =
            (find("mariadbd"), find("mariadb-install-db"), find("mariadb"))
        else {
            let message = "mariadbd, mariadb-install-db or mariadb not found \
                           (apt-get install -y --no-install-recommends mariadb-server)";
            assert!(std::env::var(REQUIRED).as_deref() != Ok("1"), "{REQUIRED}=1 but {message}");
            eprintln!("SKIP: health check against a real MariaDB: {message}");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("mariadb-probe").tempdir().unwrap();
        let data = dir.path().join("data");
        // mariadbd refuses to run as root without `--user=root`, and only root may pass it.
        let as_root = std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|status| status.lines().any(|line| line.starts_with("Uid:\t0\t")));
        let user_flag: Vec<String> = if as_root { vec!["--user=root".into()] } else { Vec::new() };
        let installed = Command::new(install_db)
            .args(&user_flag)
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .output()
            .unwrap();
        assert!(installed.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&installed.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = Command::new(mariadbd)
            .args(&user_flag)
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
        let mut db = Self { server, port, dir, client };
        db.wait_ready();
        db.sql(&format!(
            "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; GRANT ALL ON *.* TO '{user}'@'127.0.0.1';"
        ));
        Some(db)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Runs statements as root over the server's socket.
    pub fn sql(&self, statements: &str) {
        let output = self.root().arg("-e").arg(statements).output().unwrap();
        assert!(output.status.success(), "{statements}: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn root(&self) -> Command {
        let mut command = Command::new(&self.client);
        command.arg("-uroot").arg(format!("--socket={}", self.dir.path().join("sock").display()));
        command
    }

    /// Polls until root can log in; fails at the deadline or when the server exits.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP * patience();
        loop {
            if self.root().args(["-e", "SELECT 1"]).output().unwrap().status.success() {
                return;
            }
            let log = || std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
            if let Some(status) = self.server.try_wait().unwrap() {
                panic!("mariadbd exited with {status}: {}", log());
            }
            assert!(Instant::now() < deadline, "mariadbd not ready within {STARTUP:?}: {}", log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // SIGKILL by PID: the data directory goes with `dir` anyway.
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A binary on PATH, or in the sbin directories Debian puts `mariadbd` in.
fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}
