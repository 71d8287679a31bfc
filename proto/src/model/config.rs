//! Configuration items (spec §2.1, §7): identity, content, gray variants and history entries.

use std::collections::BTreeMap;
use std::fmt;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// Longest dataId accepted.
pub const MAX_DATA_ID_LEN: usize = 256;
/// Longest group accepted.
pub const MAX_GROUP_LEN: usize = 128;
/// Longest namespace (tenant) accepted.
pub const MAX_TENANT_LEN: usize = 128;
/// Config `type` values Nacos knows; anything else is stored as `text`.
pub const CONFIG_TYPES: &[&str] = &["properties", "xml", "json", "text", "html", "yaml", "toml", "unset"];

/// Why a config key or item was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigKeyError {
    /// A required field was blank.
    #[error("{0} must not be blank")]
    Blank(&'static str),
    /// A field broke its charset or length rule.
    #[error("invalid {field} '{value}': {rule}")]
    Invalid {
        /// Parameter name.
        field: &'static str,
        /// Offending value (truncated).
        value: String,
        /// The rule.
        rule: &'static str,
    },
}

/// Canonical namespace of configs: `""`, `public` and `null` (any case) are the default
/// namespace and are all stored as `""` (spec §2.1, §16.12). Clients keep seeing the spelling
/// they used, because listeners remember it.
pub fn normalize_tenant(tenant: &str) -> String {
    let t = tenant.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("public") || t.eq_ignore_ascii_case("null") {
        String::new()
    } else {
        t.to_owned()
    }
}

fn check_name(field: &'static str, value: &str, max: usize) -> Result<(), ConfigKeyError> {
    if value.is_empty() {
        return Err(ConfigKeyError::Blank(field));
    }
    let truncated = || value.chars().take(64).collect::<String>();
    if value.chars().count() > max {
        return Err(ConfigKeyError::Invalid { field, value: truncated(), rule: "too long" });
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')) {
        return Err(ConfigKeyError::Invalid {
            field,
            value: truncated(),
            rule: "only letters, digits and '_', '-', '.', ':' are allowed",
        });
    }
    Ok(())
}

/// Identity of a config: (tenant, group, dataId), tenant canonical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConfigKey {
    /// Namespace, `""` for the default one.
    pub tenant: String,
    /// Group.
    pub group: String,
    /// Data id.
    pub data_id: String,
}

impl ConfigKey {
    /// Validates and normalises a key.
    pub fn new(tenant: &str, group: &str, data_id: &str) -> Result<Self, ConfigKeyError> {
        let tenant = normalize_tenant(tenant);
        let (group, data_id) = (group.trim(), data_id.trim());
        check_name("dataId", data_id, MAX_DATA_ID_LEN)?;
        check_name("group", group, MAX_GROUP_LEN)?;
        if tenant.chars().count() > MAX_TENANT_LEN
            || !tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigKeyError::Invalid {
                field: "tenant",
                value: tenant.chars().take(64).collect(),
                rule: "at most 128 letters, digits, '_' or '-'",
            });
        }
        Ok(Self { tenant, group: group.to_owned(), data_id: data_id.to_owned() })
    }

    /// Nacos' groupKey: `dataId+group[+tenant]`, `+` and `%` escaped in each part.
    pub fn group_key(&self) -> String {
        let esc = |s: &str| s.replace('%', "%25").replace('+', "%2B");
        if self.tenant.is_empty() {
            format!("{}+{}", esc(&self.data_id), esc(&self.group))
        } else {
            format!("{}+{}+{}", esc(&self.data_id), esc(&self.group), esc(&self.tenant))
        }
    }
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.group_key())
    }
}

/// Lower-case hex MD5 of the UTF-8 bytes (spec §7.2 "MD5 rule").
pub fn md5_hex(content: &str) -> String {
    let digest = Md5::digest(content.as_bytes());
    let mut out = String::with_capacity(32);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Descriptive fields of a config, as published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigMeta {
    /// `properties`, `yaml`, ... (`text` when unknown).
    pub config_type: String,
    /// Description.
    pub desc: String,
    /// Comma-separated tags.
    pub tags: String,
    /// Owning application.
    pub app_name: String,
    /// Key material for client-side encrypted content (opaque).
    pub encrypted_data_key: String,
}

/// Who made a change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Operator (`src_user`).
    pub user: String,
    /// Client IP.
    pub ip: String,
}

/// Who sees a gray variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrayRule {
    /// Nacos beta: clients whose IP is in the list.
    BetaIps(Vec<String>),
    /// Beyond Nacos: clients whose connection labels include every pair (pod labels sent by the
    /// sidecar), so gray works on Kubernetes where IPs mean nothing.
    Labels(BTreeMap<String, String>),
}

impl GrayRule {
    /// Whether a client with this IP and these labels sees the variant.
    pub fn matches(&self, ip: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::BetaIps(ips) => ips.iter().any(|i| i == ip),
            Self::Labels(want) => !want.is_empty() && want.iter().all(|(k, v)| labels.get(k) == Some(v)),
        }
    }

    /// `beta` or `labels`.
    pub fn kind(&self) -> GrayKind {
        match self {
            Self::BetaIps(_) => GrayKind::Beta,
            Self::Labels(_) => GrayKind::Labels,
        }
    }
}

/// The kind of a gray rule (one variant of each kind per config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrayKind {
    /// By client IP.
    Beta,
    /// By connection labels.
    Labels,
}

/// Content shown to the clients a rule selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrayVariant {
    /// Who sees it.
    pub rule: GrayRule,
    /// Content.
    pub content: String,
    /// Its MD5.
    pub md5: String,
    /// Encrypted data key of this content.
    pub encrypted_data_key: String,
    /// When it was published (ms).
    pub modify_time: u64,
}

/// A config as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigItem {
    /// Stable id (assigned at creation).
    pub id: u64,
    /// Content.
    pub content: String,
    /// MD5 of the content.
    pub md5: String,
    /// Descriptive fields.
    pub meta: ConfigMeta,
    /// Creation time (ms).
    pub create_time: u64,
    /// Last change (ms).
    pub modify_time: u64,
    /// Who changed it last.
    pub source: Source,
    /// Gray variants (at most one per kind).
    pub gray: Vec<GrayVariant>,
}

impl ConfigItem {
    /// The variant a client sees: a matching beta, then a matching label rule, else the formal
    /// content. Returns (content, md5, encrypted data key, is gray).
    pub fn variant_for(&self, ip: &str, labels: &BTreeMap<String, String>) -> (&str, &str, &str, bool) {
        for kind in [GrayKind::Beta, GrayKind::Labels] {
            if let Some(g) = self.gray.iter().find(|g| g.rule.kind() == kind && g.rule.matches(ip, labels)) {
                return (&g.content, &g.md5, &g.encrypted_data_key, true);
            }
        }
        (&self.content, &self.md5, &self.meta.encrypted_data_key, false)
    }
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryOp {
    /// Insert.
    Insert,
    /// Update.
    Update,
    /// Delete.
    Delete,
}

impl HistoryOp {
    /// Nacos' one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Insert => "I",
            Self::Update => "U",
            Self::Delete => "D",
        }
    }
}

/// One recorded change of a config's formal content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// History id (`nid`), increasing.
    pub id: u64,
    /// The config.
    pub key: ConfigKey,
    /// Content after an insert/update, before a delete.
    pub content: String,
    /// Its MD5.
    pub md5: String,
    /// App name at the time.
    pub app_name: String,
    /// Encrypted data key at the time.
    pub encrypted_data_key: String,
    /// Operation.
    pub op: HistoryOp,
    /// Who.
    pub source: Source,
    /// When (ms).
    pub time: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_lower_hex_of_utf8() {
        assert_eq!(md5_hex("hello"), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(md5_hex("中"), "aed1dfbc31703955e64806b799b67645");
    }

    #[test]
    fn default_namespace_spellings_are_one() {
        for t in ["", "public", "PUBLIC", "null", " "] {
            assert_eq!(ConfigKey::new(t, "g", "d").unwrap().tenant, "");
        }
        assert_eq!(ConfigKey::new("dev", "g", "d").unwrap().tenant, "dev");
    }

    #[test]
    fn names_follow_the_nacos_charset() {
        assert!(ConfigKey::new("", "DEFAULT_GROUP", "app.yaml").is_ok());
        assert!(ConfigKey::new("", "g:1", "a-b_c.d").is_ok());
        assert!(ConfigKey::new("", "g", "a b").is_err());
        assert!(ConfigKey::new("", "g", "a/b").is_err());
        assert!(ConfigKey::new("", "", "a").is_err());
        assert!(ConfigKey::new("bad ns", "g", "a").is_err());
        assert!(ConfigKey::new("", "g", &"x".repeat(257)).is_err());
    }

    #[test]
    fn group_key_escapes_plus_and_percent() {
        let k = ConfigKey::new("ns", "g", "a.b").unwrap();
        assert_eq!(k.group_key(), "a.b+g+ns");
    }

    #[test]
    fn beta_wins_over_labels_and_formal_is_the_fallback() {
        let mut item = ConfigItem {
            id: 1,
            content: "formal".into(),
            md5: md5_hex("formal"),
            meta: ConfigMeta::default(),
            create_time: 0,
            modify_time: 0,
            source: Source::default(),
            gray: vec![],
        };
        let labels: BTreeMap<String, String> = [("env".to_owned(), "canary".to_owned())].into();
        item.gray.push(GrayVariant {
            rule: GrayRule::Labels(labels.clone()),
            content: "by-label".into(),
            md5: md5_hex("by-label"),
            encrypted_data_key: String::new(),
            modify_time: 0,
        });
        item.gray.push(GrayVariant {
            rule: GrayRule::BetaIps(vec!["10.0.0.1".into()]),
            content: "beta".into(),
            md5: md5_hex("beta"),
            encrypted_data_key: String::new(),
            modify_time: 0,
        });
        assert_eq!(item.variant_for("10.0.0.1", &labels).0, "beta");
        assert_eq!(item.variant_for("10.0.0.2", &labels).0, "by-label");
        assert_eq!(item.variant_for("10.0.0.2", &BTreeMap::new()).0, "formal");
    }
}
