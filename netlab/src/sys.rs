//! The commands a lab runs (`ip`, `nft`, `kill`) and the machine checks, in one place.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::LabError;

/// Root, `ip` and `nft` present and a namespace can be made: else `Unavailable`.
pub(crate) fn check_available() -> Result<(), LabError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next());
    if uid != Some("0") {
        return Err(LabError::Unavailable("not root (network namespaces need CAP_NET_ADMIN)".into()));
    }
    for (tool, arg, package) in [("ip", "-V", "iproute2"), ("nft", "--version", "nftables")] {
        let ok = Command::new(tool).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !matches!(ok, Ok(s) if s.success()) {
            return Err(LabError::Unavailable(format!("`{tool}` not found (install {package})")));
        }
    }
    Ok(())
}

/// Runs `ip ARGS`.
pub(crate) fn ip(args: &[&str]) -> Result<String, LabError> {
    run(Command::new("ip").args(args), None)
}

/// Loads an nft script inside a namespace (`ip netns exec NS nft -f -`).
pub(crate) fn nft_script(netns: &str, script: &str) -> Result<(), LabError> {
    run(Command::new("ip").args(["netns", "exec", netns, "nft", "-f", "-"]), Some(script)).map(drop)
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, LabError> {
    let line = format!("{cmd:?}");
    let fail = |stderr: String| LabError::Command { cmd: line.clone(), stderr };
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

/// Holds an exclusive lock on `/run/netlab.lock` while `f` picks and claims a subnet, so two
/// labs made at the same moment by different processes never pick the same one.
pub(crate) fn with_allocation_lock<T>(f: impl FnOnce() -> Result<T, LabError>) -> Result<T, LabError> {
    let path = "/run/netlab.lock";
    let io = |source| LabError::Io { what: format!("lock {path}"), source };
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io)?;
    file.lock().map_err(io)?;
    let out = f();
    let _ = file.unlock();
    out
}

/// The /24s of 198.18.0.0/15 that an interface of the root namespace already has.
pub(crate) fn used_subnets() -> Result<BTreeSet<u16>, LabError> {
    let text = ip(&["-o", "-4", "addr", "show"])?;
    Ok(text
        .split_whitespace()
        .filter_map(|w| w.split('/').next()?.parse::<std::net::Ipv4Addr>().ok())
        .filter_map(|a| {
            let o = a.octets();
            (o[0] == 198 && (o[1] == 18 || o[1] == 19)).then(|| u16::from(o[1] - 18) * 256 + u16::from(o[2]))
        })
        .collect())
}

/// Kills what still runs in `netns` (by PID, from `ip netns pids`) and deletes it; its veth
/// goes with it.
pub(crate) fn remove_netns(netns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", netns]) {
        for pid in pids.split_whitespace().filter(|p| p.parse::<u32>().is_ok()) {
            let _ = Command::new("kill").args(["-KILL", pid]).stderr(Stdio::null()).status();
        }
    }
    let _ = ip(&["netns", "del", netns]);
}

/// Removes namespaces, bridges and `/etc/netns` entries of labs whose creating process is gone
/// (a test killed before its `Drop` ran). Names are `<prefix><pid hex>x...`.
pub(crate) fn sweep_stale(prefix: &str) {
    let dead = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix(prefix) else { return false };
        let Some((pid, _)) = rest.split_once('x') else { return false };
        u32::from_str_radix(pid, 16).is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(list) = ip(&["netns", "list"]) {
        for netns in list.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| dead(n)) {
            remove_netns(netns);
            let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(netns));
        }
    }
    if let Ok(links) = ip(&["-o", "link", "show", "type", "bridge"]) {
        for bridge in links.lines().filter_map(|l| l.split(": ").nth(1)).filter(|n| dead(n)) {
            let _ = ip(&["link", "del", bridge]);
        }
    }
}
