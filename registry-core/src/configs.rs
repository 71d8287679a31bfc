//! The config-center domain: publish (with compare-and-swap), get (gray aware), delete,
//! history and rollback, search, and listening (long-poll waiters and gRPC listeners).
//!
//! ```text
//!  api/ ──► ConfigService ── validate ──► Command::Config ──► Raft ──► apply.rs ──► state/
//!                                                                        │ ConfigChanged
//!  notify.rs (one task) ◄────────────────────────────────────────────────┘
//!     ├─► ListenHub: wakes held long-polls of that key
//!     └─► gRPC listeners: ConfigChangeNotifyRequest (acked, resent, then connection closed,
//!         by the push engine's machinery: push/table.rs, push/pending.rs, push/delivery.rs)
//! ```

pub mod archive;
pub mod listen;
pub mod notify;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::consistency::{ApplyError, Command, ConfigCommand, Consistency, SubmitError};
use crate::model::config::{CONFIG_TYPES, ConfigKeyError};
use crate::model::{ConfigItem, ConfigKey, ConfigMeta, GrayKind, GrayRule, HistoryEntry, Source};
use crate::state::ConfigStore;
use listen::ListenHub;
use registry_proto::clock::now_millis;

/// Longest wait of a linearizable read for this member to catch up with the leader.
const LINEARIZABLE_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Tunables of the config center.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigCenterConfig {
    /// Largest content accepted (bytes). Nacos: 10 MiB.
    pub max_content_bytes: usize,
    /// History older than this is dropped (days). Nacos: 30.
    pub history_retention_days: u64,
    /// How often old history is dropped (ms). Nacos: 10 minutes.
    pub history_clean_interval_ms: u64,
    /// Shortest long-poll hold (ms). Nacos: 10 000.
    pub long_poll_min_ms: u64,
    /// Held requests answer this much before the client's timeout (ms). Nacos: 500.
    pub long_poll_margin_ms: u64,
    /// How long a config push waits for its ack before it is resent (ms). Nacos: 3 000.
    pub push_ack_timeout_ms: u64,
    /// Resends of an unacknowledged config push before the connection is closed. Nacos: 50.
    pub push_max_retries: u32,
}

impl Default for ConfigCenterConfig {
    fn default() -> Self {
        Self {
            max_content_bytes: 10 * 1024 * 1024,
            history_retention_days: 30,
            history_clean_interval_ms: 600_000,
            long_poll_min_ms: 10_000,
            long_poll_margin_ms: 500,
            push_ack_timeout_ms: 3_000,
            push_max_retries: 50,
        }
    }
}

/// Why a config operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// dataId, group or tenant broke a rule.
    #[error(transparent)]
    Key(#[from] ConfigKeyError),
    /// Content was blank.
    #[error("content must not be blank")]
    BlankContent,
    /// Content was too large.
    #[error("content is {len} bytes, more than the {max} allowed")]
    ContentTooLarge {
        /// Size received.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Another parameter was invalid.
    #[error("{0}")]
    InvalidParam(String),
    /// No such config.
    #[error("config data not exist")]
    NotFound,
    /// No such history entry.
    #[error("history entry not found")]
    HistoryNotFound,
    /// Compare-and-swap mismatch.
    #[error("Cas publish fail, server md5 may have changed.")]
    CasConflict,
    /// Not durable (Raft unavailable).
    #[error("{0}")]
    Unavailable(String),
}

impl From<SubmitError> for ConfigError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Rejected(ApplyError::CasConflict) => Self::CasConflict,
            SubmitError::Rejected(ApplyError::ConfigNotFound(_)) => Self::NotFound,
            SubmitError::Rejected(other) => Self::InvalidParam(other.to_string()),
            SubmitError::Raft(e) => Self::Unavailable(e.to_string()),
        }
    }
}

/// Who is reading: decides which gray variant they see.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    /// Client IP (HTTP peer, or the IP a gRPC client reported).
    pub ip: &'a str,
    /// Connection labels (gRPC), empty for HTTP.
    pub labels: &'a BTreeMap<String, String>,
}

/// What a reader gets.
#[derive(Debug, Clone)]
pub struct ConfigRead {
    /// The item.
    pub item: Arc<ConfigItem>,
    /// Content of the variant served.
    pub content: String,
    /// MD5 of it.
    pub md5: String,
    /// Encrypted data key of it.
    pub encrypted_data_key: String,
    /// Whether a gray variant was served.
    pub gray: bool,
}

/// One key a long-poll client listens to, with the MD5 it has.
#[derive(Debug, Clone)]
pub struct Listening {
    /// Canonical key.
    pub key: ConfigKey,
    /// The client's MD5 (`""` = has nothing).
    pub md5: String,
}

/// The config domain service. Cheap to clone.
#[derive(Clone)]
pub struct ConfigService {
    store: Arc<ConfigStore>,
    consistency: Consistency,
    hub: Arc<ListenHub>,
    config: Arc<ConfigCenterConfig>,
}

impl ConfigService {
    /// A service over the index and the write router.
    pub fn new(store: Arc<ConfigStore>, consistency: Consistency, config: ConfigCenterConfig) -> Self {
        Self { store, consistency, hub: Arc::new(ListenHub::default()), config: Arc::new(config) }
    }

    /// Settings.
    pub fn config(&self) -> &ConfigCenterConfig {
        &self.config
    }

    /// The long-poll waiter table.
    pub fn hub(&self) -> &Arc<ListenHub> {
        &self.hub
    }

    fn check_content(&self, content: &str) -> Result<(), ConfigError> {
        if content.trim().is_empty() {
            return Err(ConfigError::BlankContent);
        }
        if content.len() > self.config.max_content_bytes {
            return Err(ConfigError::ContentTooLarge { len: content.len(), max: self.config.max_content_bytes });
        }
        Ok(())
    }

    async fn submit(&self, cmd: ConfigCommand) -> Result<(), ConfigError> {
        Ok(self.consistency.submit(Command::Config(cmd)).await?)
    }

    /// Publishes the formal content. `cas_md5` makes it a compare-and-swap.
    pub async fn publish(
        &self,
        key: ConfigKey,
        content: String,
        mut meta: ConfigMeta,
        cas_md5: Option<String>,
        source: Source,
    ) -> Result<(), ConfigError> {
        self.check_content(&content)?;
        if !CONFIG_TYPES.contains(&meta.config_type.as_str()) {
            meta.config_type = "text".into();
        }
        check_len("desc", &meta.desc, 128)?;
        check_len("appName", &meta.app_name, 128)?;
        if meta.tags.split(',').filter(|t| !t.trim().is_empty()).count() > 5
            || meta.tags.split(',').any(|t| t.len() > 64)
        {
            return Err(ConfigError::InvalidParam("config_tags: at most 5 tags of at most 64 characters".into()));
        }
        self.submit(ConfigCommand::Publish { key, content, meta, cas_md5, source, at_ms: now_millis() }).await
    }

    /// Deletes a config (no error when absent, as in Nacos).
    pub async fn remove(&self, key: ConfigKey, source: Source) -> Result<(), ConfigError> {
        self.submit(ConfigCommand::Remove { key, source, at_ms: now_millis() }).await
    }

    /// Publishes a gray variant (beta IPs or labels) of an existing config.
    pub async fn publish_gray(
        &self,
        key: ConfigKey,
        rule: GrayRule,
        content: String,
        encrypted_data_key: String,
    ) -> Result<(), ConfigError> {
        self.check_content(&content)?;
        match &rule {
            GrayRule::BetaIps(ips) if ips.is_empty() => {
                return Err(ConfigError::InvalidParam("betaIps must list at least one IP".into()));
            }
            GrayRule::Labels(l) if l.is_empty() => {
                return Err(ConfigError::InvalidParam("a label gray rule needs at least one label".into()));
            }
            _ => {}
        }
        if self.store.get(&key).is_none() {
            return Err(ConfigError::NotFound);
        }
        self.submit(ConfigCommand::PublishGray { key, rule, content, encrypted_data_key, at_ms: now_millis() }).await
    }

    /// Stops a gray variant.
    pub async fn stop_gray(&self, key: ConfigKey, kind: GrayKind) -> Result<(), ConfigError> {
        self.submit(ConfigCommand::StopGray { key, kind }).await
    }

    /// A linearizable read barrier for callers that ask for one (`consistency=linearizable`):
    /// returns once this member has applied every write committed before the call (Raft
    /// ReadIndex through the leader), so the read that follows sees every acknowledged publish.
    /// Plain reads skip it and are served from local state at once.
    pub async fn read_barrier(&self) -> Result<(), ConfigError> {
        self.consistency
            .raft()
            .linearizable_barrier(LINEARIZABLE_READ_TIMEOUT)
            .await
            .map_err(|e| ConfigError::Unavailable(e.to_string()))
    }

    /// The stored item.
    pub fn item(&self, key: &ConfigKey) -> Option<Arc<ConfigItem>> {
        self.store.get(key)
    }

    /// What `reader` sees of a config.
    pub fn get(&self, key: &ConfigKey, reader: Reader<'_>) -> Option<ConfigRead> {
        let item = self.store.get(key)?;
        let (content, md5, edk, gray) = item.variant_for(reader.ip, reader.labels);
        let (content, md5, edk) = (content.to_owned(), md5.to_owned(), edk.to_owned());
        Some(ConfigRead { item, content, md5, encrypted_data_key: edk, gray })
    }

    /// The MD5 `reader` would get (`""` for a missing config).
    pub fn md5_for(&self, key: &ConfigKey, reader: Reader<'_>) -> String {
        self.store.get(key).map(|i| i.variant_for(reader.ip, reader.labels).1.to_owned()).unwrap_or_default()
    }

    /// Indexes of the entries whose MD5 differs from what `reader` would get.
    pub fn changed(&self, entries: &[Listening], reader: Reader<'_>) -> Vec<usize> {
        entries.iter().enumerate().filter(|(_, e)| self.md5_for(&e.key, reader) != e.md5).map(|(i, _)| i).collect()
    }

    /// Long-poll (spec §7.2): answers at once with what differs; otherwise holds up to `hold`
    /// and answers as soon as a listened key changes for this reader; empty on timeout.
    pub async fn long_poll(
        &self,
        entries: &[Listening],
        reader: Reader<'_>,
        hold: Duration,
        no_hangup: bool,
    ) -> Vec<usize> {
        let watch = self.hub.watch(entries.iter().map(|e| e.key.clone()).collect());
        let changed = self.changed(entries, reader);
        if !changed.is_empty() || no_hangup {
            return changed;
        }
        let _held = self.hub.hold();
        let deadline = tokio::time::Instant::now() + hold;
        loop {
            tokio::select! {
                () = watch.changed() => {
                    let changed = self.changed(entries, reader);
                    if !changed.is_empty() {
                        return changed;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return Vec::new(),
            }
        }
    }

    /// How long a long-poll with the client's `Long-Pulling-Timeout` is held:
    /// max(min, timeout − margin).
    pub fn hold_time(&self, client_timeout_ms: u64) -> Duration {
        Duration::from_millis(
            self.config.long_poll_min_ms.max(client_timeout_ms.saturating_sub(self.config.long_poll_margin_ms)),
        )
    }

    /// Configs of a namespace matching the filters. Patterns are exact unless `blur`, where
    /// `*` matches any run of characters; blank patterns match everything.
    pub fn search(
        &self,
        tenant: &str,
        data_id: &str,
        group: &str,
        app_name: &str,
        blur: bool,
    ) -> Vec<(ConfigKey, Arc<ConfigItem>)> {
        let tenant = crate::model::config::normalize_tenant(tenant);
        let matches = |pattern: &str, value: &str| {
            pattern.is_empty() || if blur { wildcard(pattern, value) } else { pattern == value }
        };
        self.store
            .all()
            .into_iter()
            .filter(|(k, i)| {
                k.tenant == tenant
                    && matches(data_id, &k.data_id)
                    && matches(group, &k.group)
                    && (app_name.is_empty() || i.meta.app_name == app_name)
            })
            .collect()
    }

    /// History of a config, newest first.
    pub fn history(&self, key: &ConfigKey) -> Vec<HistoryEntry> {
        self.store.read_data(|d| d.history.values().rev().filter(|h| h.key == *key).cloned().collect())
    }

    /// One history entry.
    pub fn history_entry(&self, id: u64) -> Option<HistoryEntry> {
        self.store.read_data(|d| d.history.get(&id).cloned())
    }

    /// The entry of the same config just before `id`.
    pub fn history_previous(&self, id: u64) -> Option<HistoryEntry> {
        self.store.read_data(|d| {
            let current = d.history.get(&id)?;
            d.history.range(..id).rev().find(|(_, h)| h.key == current.key).map(|(_, h)| h.clone())
        })
    }

    /// Configs of a namespace that have history.
    pub fn history_configs(&self, tenant: &str) -> Vec<ConfigKey> {
        let tenant = crate::model::config::normalize_tenant(tenant);
        let mut keys: Vec<ConfigKey> = self
            .store
            .read_data(|d| d.history.values().filter(|h| h.key.tenant == tenant).map(|h| h.key.clone()).collect());
        keys.sort();
        keys.dedup();
        keys
    }

    /// Rolls a config back to a history entry: republishes that content through the normal
    /// write path (a delete entry restores the content it deleted).
    pub async fn rollback(&self, id: u64, source: Source) -> Result<(), ConfigError> {
        let entry = self.history_entry(id).ok_or(ConfigError::HistoryNotFound)?;
        let mut meta = self.store.get(&entry.key).map(|i| i.meta.clone()).unwrap_or_default();
        meta.app_name = entry.app_name.clone();
        meta.encrypted_data_key = entry.encrypted_data_key.clone();
        if meta.config_type.is_empty() {
            meta.config_type = "text".into();
        }
        self.publish(entry.key, entry.content, meta, None, source).await
    }

    /// Number of configs.
    pub fn count(&self) -> usize {
        self.store.len()
    }

    /// Drops history past the retention, periodically, until cancelled.
    pub async fn run_history_cleaner(self, shutdown: CancellationToken) {
        let period = Duration::from_millis(self.config.history_clean_interval_ms.max(1));
        // The first pass waits a full period: right after start there may be no leader yet.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let retention_ms = self.config.history_retention_days.saturating_mul(86_400_000);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    let before_ms = now_millis().saturating_sub(retention_ms);
                    if let Err(e) = self.submit(ConfigCommand::PurgeHistory { before_ms }).await {
                        tracing::warn!(error = %e, "history cleanup failed");
                    }
                }
            }
        }
    }
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), ConfigError> {
    if value.chars().count() > max {
        return Err(ConfigError::InvalidParam(format!("{field} is longer than {max} characters")));
    }
    Ok(())
}

/// `*` wildcard match (any run of characters), everything else literal.
fn wildcard(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let mut rest = value;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcard_matches_runs() {
        assert!(wildcard("app*", "app.yaml"));
        assert!(wildcard("*yaml", "app.yaml"));
        assert!(wildcard("a*p*l", "a.yaml-pool"));
        assert!(wildcard("*", "anything"));
        assert!(!wildcard("app*", "my-app"));
        assert!(wildcard("exact", "exact"));
        assert!(!wildcard("exact", "exact2"));
    }
}
