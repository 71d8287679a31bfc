//! Test support (feature `test-support`): another workspace package's binary for a test to run.
//! A package's tests do not build other packages' binaries by themselves, so the test builds it
//! (a no-op when current) and never runs a stale one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Variables Cargo sets for the running test that must not reach the build: `ring`'s build
/// script tracks some (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`), so with them this build and a
/// plain `cargo build` would rebuild the TLS stack for each other.
const PER_TEST: [&str; 6] =
    ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_", "CARGO_TARGET_TMP"];

/// Builds `bin` of `package` with `cargo` (the test's `env!("CARGO")`) and returns its path in
/// `bin_dir`, the directory of the test's own binaries. Panics when the build fails: the test
/// cannot run without it.
pub fn workspace_binary(cargo: &str, package: &str, bin: &str, bin_dir: &Path) -> PathBuf {
    let mut build = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|name| PER_TEST.iter().any(|prefix| name.starts_with(prefix))) {
            build.env_remove(name);
        }
    }
    let status = build.args(["build", "-q", "-p", package, "--bin", bin]).stdout(Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "building {bin} of {package} failed");
    bin_dir.join(bin)
}
