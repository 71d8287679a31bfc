//! The Kubernetes objects of one projected service: a selector-less headless Service and its
//! endpoints (`Endpoints`, or one `EndpointSlice` per port where `discovery.k8s.io/v1` is
//! served), holding the instances that may take traffic: healthy, enabled, weight above zero.
//!
//! The protect threshold is not applied: an instance the registry reports unhealthy is never
//! listed, so cluster DNS answers no address (NXDOMAIN-free, empty) rather than a bad one when
//! every instance is down. Pure: the projector applies what these functions return.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use registry_proto::model::ServiceKey;
use registry_proto::wire::ServiceInfo;

use crate::controller::build::MANAGED_BY_LABEL;

/// `managed-by` of projected objects: not the controller's own value, so endpoint churn does
/// not wake the cluster's reconcile (it watches only its own objects).
pub const PROJECTION_MANAGER: &str = "nacos-operator-projection";
/// Label naming the `NacosCluster` a projected object belongs to.
pub const PROJECTED_BY_LABEL: &str = "nacos.rs/projected-by";
/// Annotations with the registered service's original names.
pub const NAMESPACE_ANNOTATION: &str = "nacos.rs/namespace";
/// See [`NAMESPACE_ANNOTATION`].
pub const GROUP_ANNOTATION: &str = "nacos.rs/group";
/// See [`NAMESPACE_ANNOTATION`].
pub const SERVICE_ANNOTATION: &str = "nacos.rs/service";
/// The label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The EndpointSlice controller leaves slices managed by another alone.
const SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// Where projected objects live and whom they belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    /// The `NacosCluster`'s name.
    pub cluster: String,
    /// Its namespace: projected objects live there.
    pub namespace: String,
    /// A (non-controller) owner reference to it: deleting the cluster deletes them.
    pub reference: OwnerReference,
}

impl Owner {
    /// Labels of every projected object of this cluster.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), PROJECTION_MANAGER.to_owned()),
            (PROJECTED_BY_LABEL.to_owned(), self.cluster.clone()),
        ])
    }

    /// Label selector of every projected object of this cluster.
    pub fn selector(&self) -> String {
        format!("{MANAGED_BY_LABEL}={PROJECTION_MANAGER},{PROJECTED_BY_LABEL}={}", self.cluster)
    }

    fn meta(&self, name: &str, key: &ServiceKey, extra_labels: &[(&str, &str)]) -> ObjectMeta {
        let mut labels = self.labels();
        labels.extend(extra_labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (NAMESPACE_ANNOTATION.to_owned(), key.namespace.clone()),
                (GROUP_ANNOTATION.to_owned(), key.group.clone()),
                (SERVICE_ANNOTATION.to_owned(), key.service.clone()),
            ])),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// An instance that may take traffic: `ip:port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Target {
    /// Address.
    pub(super) ip: String,
    /// Port.
    pub(super) port: u16,
}

/// The instances of `info` that may take traffic, sorted.
pub(super) fn targets(info: &ServiceInfo) -> Vec<Target> {
    let set: BTreeSet<Target> = info
        .hosts
        .iter()
        .filter(|h| h.healthy && h.enabled && h.weight > 0.0 && !h.ip.is_empty())
        .map(|h| Target { ip: h.ip.clone(), port: h.port })
        .collect();
    set.into_iter().collect()
}

/// The name of the port `port` in the Service and its endpoints (`p-8080`).
fn port_name(port: u16) -> String {
    format!("p-{port}")
}

fn ports_of(targets: &[Target]) -> BTreeSet<u16> {
    targets.iter().map(|t| t.port).collect()
}

/// The headless Service; its ports are the instances' (named `p-<port>`, none while it has no
/// instance).
pub(super) fn service(owner: &Owner, name: &str, key: &ServiceKey, targets: &[Target]) -> Service {
    let ports: Vec<ServicePort> = ports_of(targets)
        .into_iter()
        .map(|port| ServicePort {
            name: Some(port_name(port)),
            port: i32::from(port),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        })
        .collect();
    Service {
        metadata: owner.meta(name, key, &[]),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            ports: Some(ports),
            publish_not_ready_addresses: Some(false),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The core `Endpoints` of the Service: one subset per port.
pub(super) fn endpoints(owner: &Owner, name: &str, key: &ServiceKey, targets: &[Target]) -> Endpoints {
    let subsets = ports_of(targets)
        .into_iter()
        .map(|port| EndpointSubset {
            addresses: Some(
                targets
                    .iter()
                    .filter(|t| t.port == port)
                    .map(|t| EndpointAddress { ip: t.ip.clone(), ..EndpointAddress::default() })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: Some(port_name(port)),
                port: i32::from(port),
                protocol: Some("TCP".into()),
                ..EndpointPort::default()
            }]),
            not_ready_addresses: None,
        })
        .collect();
    Endpoints { metadata: owner.meta(name, key, &[]), subsets: Some(subsets) }
}

/// The name of the EndpointSlice of `service`'s `port`.
pub(super) fn slice_name(service: &str, port: u16) -> String {
    format!("{service}-{}", port_name(port))
}

/// `discovery.k8s.io/v1` EndpointSlices of the Service, one per port (a slice's ports apply to
/// all its endpoints); IPv4 and IPv6 addresses go to slices of their own family.
pub(super) fn endpoint_slices(owner: &Owner, name: &str, key: &ServiceKey, targets: &[Target]) -> Vec<EndpointSlice> {
    let mut slices = Vec::new();
    for port in ports_of(targets) {
        for (family, v6) in [("IPv4", false), ("IPv6", true)] {
            let endpoints: Vec<Endpoint> = targets
                .iter()
                .filter(|t| t.port == port && t.ip.contains(':') == v6)
                .map(|t| Endpoint {
                    addresses: vec![t.ip.clone()],
                    conditions: Some(EndpointConditions { ready: Some(true), ..EndpointConditions::default() }),
                    ..Endpoint::default()
                })
                .collect();
            if endpoints.is_empty() {
                continue;
            }
            let slice = if v6 { format!("{}-v6", slice_name(name, port)) } else { slice_name(name, port) };
            slices.push(EndpointSlice {
                metadata: owner.meta(
                    &slice,
                    key,
                    &[(SERVICE_NAME_LABEL, name), (SLICE_MANAGED_BY_LABEL, PROJECTION_MANAGER)],
                ),
                address_type: family.into(),
                endpoints,
                ports: Some(vec![k8s_openapi::api::discovery::v1::EndpointPort {
                    name: Some(port_name(port)),
                    port: Some(i32::from(port)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            });
        }
    }
    slices
}

#[cfg(test)]
mod tests {
    use registry_proto::wire::InstanceInfo;

    use super::*;

    fn owner() -> Owner {
        Owner {
            cluster: "registry".into(),
            namespace: "apps".into(),
            reference: OwnerReference {
                api_version: "nacos.rs/v1alpha1".into(),
                kind: "NacosCluster".into(),
                name: "registry".into(),
                uid: "u".into(),
                ..OwnerReference::default()
            },
        }
    }

    fn host(ip: &str, port: u16, healthy: bool, enabled: bool, weight: f64) -> InstanceInfo {
        InstanceInfo { ip: ip.into(), port, healthy, enabled, weight, ..InstanceInfo::default() }
    }

    fn key() -> ServiceKey {
        ServiceKey { namespace: "public".into(), group: "DEFAULT_GROUP".into(), service: "Orders".into() }
    }

    #[test]
    fn only_healthy_enabled_weighted_instances_are_targets() {
        let info = ServiceInfo {
            hosts: vec![
                host("10.0.0.1", 80, true, true, 1.0),
                host("10.0.0.2", 80, false, true, 1.0),
                host("10.0.0.3", 80, true, false, 1.0),
                host("10.0.0.4", 80, true, true, 0.0),
                host("10.0.0.5", 81, true, true, 2.0),
            ],
            ..ServiceInfo::default()
        };
        let t = targets(&info);
        assert_eq!(t, vec![Target { ip: "10.0.0.1".into(), port: 80 }, Target { ip: "10.0.0.5".into(), port: 81 }]);
    }

    #[test]
    fn the_service_is_headless_selectorless_and_names_the_original() {
        let t = vec![Target { ip: "10.0.0.1".into(), port: 80 }, Target { ip: "10.0.0.5".into(), port: 81 }];
        let s = service(&owner(), "orders-abc", &key(), &t);
        let spec = s.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert!(spec.selector.is_none());
        let ports: Vec<_> = spec.ports.unwrap().into_iter().map(|p| (p.name.unwrap(), p.port)).collect();
        assert_eq!(ports, vec![("p-80".to_owned(), 80), ("p-81".to_owned(), 81)]);
        let annotations = s.metadata.annotations.unwrap();
        assert_eq!(annotations[SERVICE_ANNOTATION], "Orders");
        assert_eq!(s.metadata.labels.unwrap()[MANAGED_BY_LABEL], PROJECTION_MANAGER);
    }

    #[test]
    fn endpoints_group_addresses_by_port_and_slices_by_port_and_family() {
        let t = vec![
            Target { ip: "10.0.0.1".into(), port: 80 },
            Target { ip: "10.0.0.2".into(), port: 80 },
            Target { ip: "fd00::1".into(), port: 80 },
            Target { ip: "10.0.0.5".into(), port: 81 },
        ];
        let e = endpoints(&owner(), "orders", &key(), &t);
        let subsets = e.subsets.unwrap();
        assert_eq!(subsets.len(), 2);
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 3);
        let slices = endpoint_slices(&owner(), "orders", &key(), &t);
        let names: Vec<_> = slices
            .iter()
            .map(|s| (s.metadata.name.clone().unwrap(), s.address_type.clone(), s.endpoints.len()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("orders-p-80".to_owned(), "IPv4".to_owned(), 2),
                ("orders-p-80-v6".to_owned(), "IPv6".to_owned(), 1),
                ("orders-p-81".to_owned(), "IPv4".to_owned(), 1)
            ]
        );
        assert_eq!(slices[0].metadata.labels.as_ref().unwrap()[SERVICE_NAME_LABEL], "orders");
        assert!(endpoints(&owner(), "orders", &key(), &[]).subsets.unwrap().is_empty());
    }
}
