//! The ConfigMap holding `registry.toml`: the operator's `[server]` settings merged with the
//! user's `spec.config`. Per-member settings (node id, peer DNS) are command-line flags of
//! each pod instead, so every member shares this one file.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::object_meta;
use crate::controller::validate::ValidatedCluster;

/// Where the ConfigMap is mounted in the registry container.
pub const CONFIG_DIR: &str = "/etc/registry";
/// The file name inside the ConfigMap and [`CONFIG_DIR`].
pub const CONFIG_FILE: &str = "registry.toml";
/// Where each member's volume is mounted.
pub const DATA_DIR: &str = "/var/lib/registry";

/// The registry's data directory: a subdirectory of the volume, so a filesystem's own entries
/// at its root (`lost+found`) stay out of the store's way.
fn data_dir() -> String {
    format!("{DATA_DIR}/data")
}

/// The text of `registry.toml`.
pub fn render_config(cluster: &ValidatedCluster) -> Result<String, toml::ser::Error> {
    let mut root = cluster.extra_config.clone();
    let server = root.entry("server").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    // `validate` guarantees every top-level value is a table and that none of these keys is set.
    if let Some(server) = server.as_table_mut() {
        server.insert("http_port".into(), toml::Value::Integer(cluster.ports.http.into()));
        server.insert("data_dir".into(), toml::Value::String(data_dir()));
        server.insert("log_level".into(), toml::Value::String(cluster.log_level.clone()));
    }
    let body = toml::to_string(&root)?;
    Ok(format!(
        "# Written by nacos-operator for NacosCluster {}/{}: change the NacosCluster, not this file.\n{body}",
        cluster.namespace, cluster.name
    ))
}

/// The ConfigMap carrying `config`, the output of [`render_config`].
pub(super) fn build(cluster: &ValidatedCluster, config: String) -> ConfigMap {
    ConfigMap {
        metadata: object_meta(cluster, cluster.config_map_name()),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_owned(), config)])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, CUSTOM_STORAGE_SCHEDULING, DEFAULTS};

    fn config_of(spec: &str) -> (String, toml::Table) {
        let resources = fixtures::built(spec);
        let text = resources.config_map.data.unwrap().remove(CONFIG_FILE).unwrap();
        let table = toml::from_str(&text).unwrap();
        (text, table)
    }

    #[test]
    fn defaults_write_only_the_server_section() {
        let (text, _) = config_of(DEFAULTS);
        assert_eq!(
            text,
            "# Written by nacos-operator for NacosCluster registry/nacos: change the NacosCluster, not this file.\n\
             [server]\n\
             data_dir = \"/var/lib/registry/data\"\n\
             http_port = 8848\n\
             log_level = \"info\"\n"
        );
    }

    #[test]
    fn user_sections_merge_with_the_operators_server_keys() {
        let (_, table) = config_of(CUSTOM_STORAGE_SCHEDULING);
        assert_eq!(table["server"]["shutdown_grace_ms"].as_integer(), Some(20_000));
        assert_eq!(table["server"]["http_port"].as_integer(), Some(8848));
        assert_eq!(table["server"]["log_level"].as_str(), Some("registry_core=debug,info"));
        assert_eq!(table["naming"]["beat_check_interval_ms"].as_integer(), Some(3000));
    }

    #[test]
    fn http_port_follows_the_spec() {
        let (_, table) = config_of("ports: { http: 18848 }");
        assert_eq!(table["server"]["http_port"].as_integer(), Some(18848));
    }
}
