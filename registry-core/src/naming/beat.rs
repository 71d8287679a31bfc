//! The v1 heartbeat protocol (spec §4.2): the beat body clients send (`RsInfo`, a wire type
//! that lives here because [`NamingService::beat`] takes it), the reply codes, and the beat
//! itself: a known instance is kept alive (and made healthy again), an unknown one with a body
//! is registered again, an unknown one without a body answers 20404. Liveness bookkeeping is
//! in `health.rs` (tracker and sweeper).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::health::BeatOutcome;
use super::{NamingError, NamingService};
use crate::consistency::NamingCommand;
use crate::model::{ClientId, Instance, InstanceKey, ServiceKey};

/// The v1 beat body (`RsInfo`); unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BeatInfo {
    /// Address of the beating instance.
    pub ip: Option<String>,
    /// Port of the beating instance.
    pub port: Option<u16>,
    /// Cluster (overrides `clusterName` when non-blank).
    pub cluster: Option<String>,
    /// Weight, for auto-registration.
    pub weight: Option<f64>,
    /// Metadata, for auto-registration.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Service name as the client sent it (informational).
    pub service_name: Option<String>,
}

/// Outcome of a beat (spec §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeatReply {
    /// 10200 (ok) or 20404 (unknown instance; the client re-registers).
    pub code: u32,
    /// Interval the client should beat at (ms).
    pub client_beat_interval_ms: u64,
    /// Whether the client may omit the body from now on.
    pub light_beat_enabled: bool,
}

/// A beat's result code: the instance is known.
pub const BEAT_OK: u32 = 10200;
/// A beat's result code: the instance is unknown and the beat carried no body.
pub const BEAT_NOT_FOUND: u32 = 20404;

impl NamingService {
    /// Handles a v1 heartbeat (spec §4.2).
    pub async fn beat(
        &self,
        key: &ServiceKey,
        ip: &str,
        port: u16,
        cluster: &str,
        beat: Option<BeatInfo>,
    ) -> Result<BeatReply, NamingError> {
        let (ip, port, cluster) = match &beat {
            Some(b) => (
                b.ip.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| ip.to_owned()),
                b.port.filter(|p| *p > 0).unwrap_or(port),
                b.cluster.clone().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| cluster.to_owned()),
            ),
            None => (ip.to_owned(), port, cluster.to_owned()),
        };
        let client = ClientId::ip_port(&ip, port, true);
        let reply = |interval: Option<u64>| BeatReply {
            code: BEAT_OK,
            client_beat_interval_ms: interval.unwrap_or(self.config.client_beat_interval_ms),
            light_beat_enabled: self.config.light_beat_enabled,
        };
        let mut outcome = self.beats.beat(key, &client);
        let present = self
            .store
            .view(key)
            .is_some_and(|v| v.published_by(&client).is_some_and(|p| p.iter().any(|i| i.ip == ip && i.port == port)));
        if outcome != BeatOutcome::Unknown && !present {
            // Removed behind the tracker's back (deregistered through another path).
            self.beats.untrack(key, &client);
            outcome = BeatOutcome::Unknown;
        }
        match outcome {
            BeatOutcome::Alive => Ok(reply(self.preserved_interval(key, &ip, port, &cluster))),
            BeatOutcome::Recovered => {
                let Some(instance) = self.beat_instance(key, &client) else {
                    return Ok(reply(self.preserved_interval(key, &ip, port, &cluster)));
                };
                self.submit(NamingCommand::SetEphemeralHealth {
                    service: key.clone(),
                    client,
                    instance,
                    healthy: true,
                })
                .await?;
                Ok(reply(self.preserved_interval(key, &ip, port, &cluster)))
            }
            BeatOutcome::Unknown => {
                let Some(b) = beat else {
                    return Ok(BeatReply { code: BEAT_NOT_FOUND, ..reply(None) });
                };
                let mut instance = Instance::new(ip, port, cluster, true);
                if let Some(w) = b.weight {
                    instance.weight = w;
                }
                instance.metadata = b.metadata.unwrap_or_default();
                let interval = instance.metadata.get(crate::model::instance::HEART_BEAT_INTERVAL).cloned();
                self.register_instance(key, instance).await?;
                Ok(reply(interval.and_then(|v| v.parse().ok())))
            }
        }
    }

    fn preserved_interval(&self, key: &ServiceKey, ip: &str, port: u16, cluster: &str) -> Option<u64> {
        let i = self.store.view(key)?.find(ip, port, cluster)?;
        i.metadata.get(crate::model::instance::HEART_BEAT_INTERVAL).and_then(|v| v.parse().ok())
    }

    /// The instance a v1 heartbeat client publishes into a service (one per registration),
    /// read from the service view when its health must change rather than kept in every beat
    /// entry.
    pub(super) fn beat_instance(&self, key: &ServiceKey, client: &ClientId) -> Option<InstanceKey> {
        self.store.view(key)?.published_by(client)?.first().map(|i| i.key())
    }
}
