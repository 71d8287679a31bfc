//! Request rates per Nacos namespace (`[limits] namespace_requests_per_second`): one tenant's
//! burst is refused before it crowds out the others, on HTTP (429) and gRPC (`OVER_THRESHOLD`)
//! alike. Fixed one-second windows ([`RateWindow`]); a namespace a client makes up shares one
//! overflow window once [`MAX_TRACKED`] are tracked, so the table stays bounded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dashmap::DashMap;
use registry_proto::server::RateWindow;

/// Most namespaces with a window of their own.
const MAX_TRACKED: usize = 10_000;
/// The window of every namespace beyond [`MAX_TRACKED`].
const OVERFLOW: &str = "\u{0}overflow";

/// The `[limits]` section.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Client-API requests per second per namespace (HTTP naming/config and gRPC); 0 (the
    /// default): no limit.
    pub namespace_requests_per_second: u32,
}

/// The configured limits `/metrics` shows as `registry_limit{limit}`, each under its
/// configuration key (0: no limit). The index's budget has its own gauge
/// (`registry_instances_limit`), the queues theirs (`registry_queue_capacity`).
pub fn configured(config: &crate::config::Config) -> Vec<(&'static str, u64)> {
    let wide = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    vec![
        ("http.max_body_bytes", wide(config.http.max_body_bytes)),
        ("grpc.max_message_bytes", wide(config.grpc.max_message_bytes)),
        ("grpc.max_connections", wide(config.grpc.max_connections)),
        ("grpc.max_requests_per_second", u64::from(config.grpc.max_requests_per_second)),
        ("configs.max_content_bytes", wide(config.configs.max_content_bytes)),
        ("limits.namespace_requests_per_second", u64::from(config.limits.namespace_requests_per_second)),
        ("dns.max_tcp_connections", wide(config.dns.max_tcp_connections)),
    ]
}

/// The windows of every namespace.
#[derive(Debug)]
pub struct NamespaceRates {
    per_second: u32,
    windows: DashMap<String, RateWindow>,
    refused: AtomicU64,
    epoch: Instant,
}

impl NamespaceRates {
    /// Rates under `config`.
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            per_second: config.namespace_requests_per_second,
            windows: DashMap::new(),
            refused: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether rates are limited at all.
    pub fn enabled(&self) -> bool {
        self.per_second > 0
    }

    /// The limit (requests per second per namespace).
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Counts one request of `namespace` (`""` is `public`); false when its budget for this
    /// second is spent.
    pub fn admit(&self, namespace: &str) -> bool {
        if !self.enabled() {
            return true;
        }
        let namespace = if namespace.is_empty() { "public" } else { namespace };
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let admitted = match self.windows.get(namespace) {
            Some(window) => window.admit(now, self.per_second),
            None => {
                let key = if self.windows.len() >= MAX_TRACKED { OVERFLOW } else { namespace };
                self.windows.entry(key.to_owned()).or_default().admit(now, self.per_second)
            }
        };
        if !admitted {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_namespace_has_its_own_budget_and_zero_is_unlimited() {
        let rates = NamespaceRates::new(&LimitsConfig { namespace_requests_per_second: 5 });
        let dev = (0..10).filter(|_| rates.admit("dev")).count();
        assert_eq!(dev, 5);
        assert!(rates.admit(""), "public has its own budget");
        assert_eq!(rates.refused(), 5);
        let open = NamespaceRates::new(&LimitsConfig::default());
        assert!((0..1000).all(|_| open.admit("dev")));
    }

    #[test]
    fn made_up_namespaces_beyond_the_table_share_one_window() {
        let rates = NamespaceRates::new(&LimitsConfig { namespace_requests_per_second: 1 });
        for i in 0..MAX_TRACKED {
            rates.admit(&format!("ns-{i}"));
        }
        assert!(rates.admit("one-more"), "the overflow window's first request");
        assert!(!rates.admit("and-another"), "the overflow window is shared");
        assert!(rates.windows.len() <= MAX_TRACKED + 1);
    }
}
