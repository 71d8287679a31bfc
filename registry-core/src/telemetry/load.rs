//! What `/nacos/v1/ns/operator/metrics` reports as `cpu`, `load` and `mem`, read from Linux
//! `/proc` (no dependency, nothing sampled in the background).
//!
//! Nacos reports the JVM's view of the host: `cpu` the system CPU usage (0–1), `load` the
//! 1-minute load average, `mem` the share of physical memory in use. In a container the host's
//! figures say little about the registry, so `cpu` and `mem` are this process's:
//! - `cpu`: share of the machine's CPU time (all cores) this process used since the previous
//!   sample, at most one sample a second (the first one: since the process started); 0–1;
//! - `load`: the 1-minute load average (`/proc/loadavg`), as Nacos;
//! - `mem`: this process's resident memory (`VmRSS`) over physical memory (`MemTotal`); 0–1.
//!
//! Where `/proc` cannot be read (not Linux), each is 0. [`process`] gives the same source in
//! absolute units for `/metrics`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`, fixed at 100 by the Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// Shortest window a CPU share is measured over; closer calls get the last value.
const MIN_WINDOW: Duration = Duration::from_secs(1);

/// `cpu`, `load` and `mem` as `/operator/metrics` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    /// Share of the machine's CPU time used by this process (0–1).
    pub cpu: f64,
    /// 1-minute load average.
    pub load: f64,
    /// Resident memory of this process over physical memory (0–1).
    pub mem: f64,
}

/// The last CPU sample: when, the process's CPU seconds then, and the share it gave.
struct Sample {
    at: Instant,
    cpu_seconds: f64,
    share: f64,
}

static LAST: OnceLock<Mutex<Option<Sample>>> = OnceLock::new();

/// Reads the current figures.
pub fn sample() -> Load {
    Load { cpu: cpu_share().unwrap_or(0.0), load: load_average().unwrap_or(0.0), mem: memory_share().unwrap_or(0.0) }
}

/// This process's figures in absolute units, for `/metrics`; `None` where `/proc` cannot be
/// read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    /// User + system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident memory (`VmRSS`), bytes.
    pub resident_bytes: Option<f64>,
    /// Virtual memory (`VmSize`), bytes.
    pub virtual_bytes: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<usize>,
    /// Start time, seconds since the epoch (boot time `btime` + start after boot).
    pub start_time_seconds: Option<f64>,
    /// Threads.
    pub threads: Option<f64>,
}

/// Reads [`Process`].
pub fn process() -> Process {
    let stat = ProcessStat::read();
    let status = std::fs::read_to_string("/proc/self/status").ok().unwrap_or_default();
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse::<f64>().ok());
    Process {
        cpu_seconds: stat.as_ref().map(|s| s.cpu_seconds),
        resident_bytes: kib_field(&status, "VmRSS:").map(|k| k * 1024.0),
        virtual_bytes: kib_field(&status, "VmSize:").map(|k| k * 1024.0),
        open_fds: std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count),
        start_time_seconds: boot.zip(stat.as_ref()).map(|(b, s)| b + s.started_seconds),
        threads: kib_field(&status, "Threads:"),
    }
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

fn cpu_share() -> Option<f64> {
    let stat = ProcessStat::read()?;
    let now = Instant::now();
    let mut last = LAST.get_or_init(|| Mutex::new(None)).lock();
    let share = match last.as_ref() {
        Some(prev) if now.duration_since(prev.at) < MIN_WINDOW => return Some(prev.share),
        Some(prev) => (stat.cpu_seconds - prev.cpu_seconds) / (now.duration_since(prev.at).as_secs_f64() * cores()),
        None => {
            let lived = uptime_seconds()? - stat.started_seconds;
            if lived <= 0.0 { 0.0 } else { stat.cpu_seconds / (lived * cores()) }
        }
    };
    let share = share.clamp(0.0, 1.0);
    *last = Some(Sample { at: now, cpu_seconds: stat.cpu_seconds, share });
    Some(share)
}

/// The parts of `/proc/self/stat` used here.
struct ProcessStat {
    /// User + system CPU time.
    cpu_seconds: f64,
    /// Start time, seconds after boot.
    started_seconds: f64,
}

impl ProcessStat {
    fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// Fields after the command name (which may hold spaces and parentheses, hence the last
    /// `)`): state is field 3, utime 14, stime 15, starttime 22 (`proc(5)`).
    fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) / TICKS_PER_SECOND,
            started_seconds: field(22)? / TICKS_PER_SECOND,
        })
    }
}

fn uptime_seconds() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()
}

fn load_average() -> Option<f64> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

fn memory_share() -> Option<f64> {
    let rss = kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS:")?;
    let total = kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")?;
    (total > 0.0).then(|| (rss / total).clamp(0.0, 1.0))
}

/// A `Name:   123 kB` line's number.
fn kib_field(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name))?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let stat = "4242 (reg (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 8 0 12345 1000 200";
        let p = ProcessStat::parse(stat).unwrap();
        assert!((p.cpu_seconds - 3.0).abs() < 1e-9, "(250 + 50) ticks");
        assert!((p.started_seconds - 123.45).abs() < 1e-9);
        assert_eq!(parse_loadavg("0.52 0.40 0.31 2/345 6789\n"), Some(0.52));
        assert_eq!(kib_field("Name:\tx\nVmRSS:\t  20480 kB\n", "VmRSS:"), Some(20480.0));
        assert_eq!(kib_field("VmPeak: 1 kB\n", "VmRSS:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reports_real_figures() {
        // Burn some CPU so the share since start is above zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let l = sample();
        assert!(l.mem > 0.0 && l.mem < 1.0, "{l:?}");
        assert!(l.cpu > 0.0 && l.cpu <= 1.0, "{l:?}");
        assert!(l.load >= 0.0, "{l:?}");
        let p = process();
        assert!(p.resident_bytes.is_some_and(|b| b > 1e6), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3) && p.threads.is_some_and(|t| t >= 1.0), "{p:?}");
        assert!(p.start_time_seconds.is_some_and(|t| t > 1.6e9), "{p:?}");
    }
}
