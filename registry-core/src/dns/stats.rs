//! DNS counters for `/metrics`: queries by type and response code, truncations, drops.

use std::sync::atomic::{AtomicU64, Ordering};

use registry_proto::dns::{QueryKind, Rcode, Reply};

const KINDS: usize = QueryKind::ALL.len();
const RCODES: usize = Rcode::ALL.len();

/// Counters, updated by the server loops.
#[derive(Debug, Default)]
pub struct DnsStats {
    queries: [[AtomicU64; RCODES]; KINDS],
    truncated: AtomicU64,
    dropped: AtomicU64,
}

impl DnsStats {
    /// Counts one reply.
    pub fn answered(&self, reply: &Reply) {
        let k = QueryKind::ALL.iter().position(|k| *k == reply.kind).unwrap_or(0);
        let r = Rcode::ALL.iter().position(|r| *r == reply.rcode).unwrap_or(0);
        self.queries[k][r].fetch_add(1, Ordering::Relaxed);
        if reply.truncated {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a packet that got no reply (a response, or shorter than a header).
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Queries answered with `rcode` for `kind`.
    pub fn queries(&self, kind: QueryKind, rcode: Rcode) -> u64 {
        let k = QueryKind::ALL.iter().position(|x| *x == kind).unwrap_or(0);
        let r = Rcode::ALL.iter().position(|x| *x == rcode).unwrap_or(0);
        self.queries[k][r].load(Ordering::Relaxed)
    }

    /// Prometheus text exposition. Every (type, rcode) series is present, zeros included, so a
    /// dashboard's rate never starts from a missing series.
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let name = "registry_dns_queries_total";
        let _ =
            writeln!(out, "# HELP {name} DNS queries answered, by query type and response code\n# TYPE {name} counter");
        for kind in QueryKind::ALL {
            for rcode in Rcode::ALL {
                let v = self.queries(kind, rcode);
                let _ = writeln!(out, "{name}{{type=\"{}\",rcode=\"{}\"}} {v}", kind.as_str(), rcode.as_str());
            }
        }
        for (name, help, v) in [
            (
                "registry_dns_truncated_total",
                "UDP answers cut to the question (TC set; clients retry over TCP)",
                &self.truncated,
            ),
            (
                "registry_dns_dropped_total",
                "DNS packets not answered (responses, shorter than a header)",
                &self.dropped,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        }
    }
}
