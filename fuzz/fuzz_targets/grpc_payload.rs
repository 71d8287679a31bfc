//! gRPC request payloads for every type in `REQUEST_TYPES`: the `Payload` frame through prost
//! (as the transport decodes it), `frame::open`, the JSON body into the type the handler
//! decodes, then the handler's checks; instance registrations are applied to a real writer.
//! Input: one byte choosing the request type, then the JSON body.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use registry_core::consistency::{Applier, Command, NamingCommand};
use registry_core::state::NamingStore;
use registry_proto::model::{ClientId, ConfigKey};
use registry_proto::nacos::Payload;
use registry_proto::select::{parse_clusters, select};
use registry_proto::wire::REQUEST_TYPES;
use registry_proto::wire::config::{BatchListenRequest, ConfigRequest};
use registry_proto::wire::frame::{open, raw_payload};
use registry_proto::wire::naming::{
    BatchInstanceRequest, InstanceRequest, NamingBase, ServiceListRequest, ServiceQueryRequest,
    SubscribeServiceRequest, WireInstance,
};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else { return };
    let kind = REQUEST_TYPES[usize::from(choice) % REQUEST_TYPES.len()];
    let encoded = raw_payload(kind, body.to_vec()).encode_to_vec();
    let payload = Payload::decode(encoded.as_slice()).expect("a payload we encoded decodes");
    let Some((kind, body)) = open(&payload) else { return };
    match kind {
        "InstanceRequest" | "PersistentInstanceRequest" => {
            if let Ok(r) = serde_json::from_slice::<InstanceRequest>(body) {
                register(&r.base, r.instance.into_iter().collect());
            }
        }
        "BatchInstanceRequest" => {
            if let Ok(r) = serde_json::from_slice::<BatchInstanceRequest>(body) {
                register(&r.base, r.instances);
            }
        }
        "ServiceQueryRequest" => {
            if let Ok(r) = serde_json::from_slice::<ServiceQueryRequest>(body) {
                let _ = r.base.service_key();
                let _ = parse_clusters(r.cluster.as_deref().unwrap_or_default());
            }
        }
        "SubscribeServiceRequest" => {
            if let Ok(r) = serde_json::from_slice::<SubscribeServiceRequest>(body) {
                let _ = r.base.service_key();
                let _ = parse_clusters(r.clusters.as_deref().unwrap_or_default());
            }
        }
        "ServiceListRequest" => {
            if let Ok(r) = serde_json::from_slice::<ServiceListRequest>(body) {
                // The handler's paging arithmetic.
                let page_size = if r.page_size == 0 { 10 } else { r.page_size };
                let _ = r.page_no.max(1).saturating_sub(1).saturating_mul(page_size);
            }
        }
        "ConfigQueryRequest" | "ConfigPublishRequest" | "ConfigRemoveRequest" => {
            if let Ok(r) = serde_json::from_slice::<ConfigRequest>(body) {
                let _ = ConfigKey::new(
                    r.tenant.as_deref().unwrap_or_default(),
                    r.group.as_deref().unwrap_or_default(),
                    r.data_id.as_deref().unwrap_or_default(),
                );
                if let Some(serde_json::Value::String(labels)) = r.addition_map.get("grayLabels") {
                    let _ = registry_proto::model::metadata::parse(labels);
                }
            }
        }
        "ConfigBatchListenRequest" => {
            if let Ok(r) = serde_json::from_slice::<BatchListenRequest>(body) {
                for c in r.config_listen_contexts {
                    let _ = ConfigKey::new(
                        c.tenant.as_deref().unwrap_or_default(),
                        c.group.as_deref().unwrap_or_default(),
                        c.data_id.as_deref().unwrap_or_default(),
                    );
                }
            }
        }
        other => unreachable!("{other} is in REQUEST_TYPES but not fuzzed"),
    }
});

/// What the instance handlers do with a decoded registration: key, conversion, validation,
/// then the ephemeral publish command on a fresh writer and a selection over the result.
fn register(base: &NamingBase, wire: Vec<WireInstance>) {
    let Ok(service) = base.service_key() else { return };
    let Ok(instances) = wire.into_iter().map(|w| w.into_instance(true)).collect::<Result<Vec<_>, _>>() else {
        return;
    };
    let applier = Applier::new(Arc::new(NamingStore::new()));
    let client = ClientId::ip_port("127.0.0.1", 1, true);
    let cmd = Command::Naming(NamingCommand::PublishEphemeral { service, client, instances: instances.clone() });
    if instances.iter().all(|i| i.validate().is_ok()) {
        let _ = applier.apply(&cmd);
    }
    let shared: Vec<Arc<_>> = instances.into_iter().map(Arc::new).collect();
    let _ = select(&shared, Some(0.5), &[], false);
}
