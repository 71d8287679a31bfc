//! The two Services: the headless one that gives every member a stable DNS name
//! (`<pod>.<name>-headless.<namespace>.svc.<domain>`) and the client one applications use.
//!
//! Every port is named and carries its protocol: Services target container ports by name, and
//! server-side apply keys Service ports by port and protocol.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{object_meta, port_name, selector_labels};
use crate::controller::validate::ValidatedCluster;

/// The headless Service: DNS records for every member, ready or not, so members can find each
/// other while they start (a member is ready only once it caught up with the others).
pub(super) fn build_headless(cluster: &ValidatedCluster) -> Service {
    let mut ports = vec![
        port(port_name::HTTP, cluster.ports.http, "TCP"),
        port(port_name::GRPC, cluster.ports.grpc, "TCP"),
        port(port_name::CLUSTER, cluster.ports.cluster, "TCP"),
    ];
    ports.extend(dns_ports(cluster));
    Service {
        metadata: object_meta(cluster, cluster.headless_service_name()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(cluster)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The client Service: HTTP and gRPC (and DNS over UDP, TCP and TLS when enabled) of ready
/// members only. The cluster port is for members and stays off it.
pub(super) fn build_client(cluster: &ValidatedCluster) -> Service {
    let mut ports =
        vec![port(port_name::HTTP, cluster.ports.http, "TCP"), port(port_name::GRPC, cluster.ports.grpc, "TCP")];
    ports.extend(dns_ports(cluster));
    let mut metadata = object_meta(cluster, cluster.client_service_name());
    if !cluster.service_annotations.is_empty() {
        metadata.annotations = Some(cluster.service_annotations.clone());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(cluster.service_type.as_str().to_owned()),
            selector: Some(selector_labels(cluster)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// DNS over UDP and over TCP (truncated answers), on the same port number, and DNS over TLS on
/// its own when set.
fn dns_ports(cluster: &ValidatedCluster) -> Vec<ServicePort> {
    let Some(dns) = cluster.dns.as_ref() else { return Vec::new() };
    let mut ports =
        vec![port(port_name::DNS, dns.service_port, "UDP"), port(port_name::DNS_TCP, dns.service_port, "TCP")];
    if let Some(tls) = &dns.tls {
        ports.push(port(port_name::DNS_TLS, tls.service_port, "TCP"));
    }
    ports
}

/// A Service port that targets the container port of the same name.
fn port(name: &str, number: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        protocol: Some(protocol.into()),
        target_port: Some(IntOrString::String(name.into())),
        ..ServicePort::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, CUSTOM_STORAGE_SCHEDULING, DEFAULTS, DNS, DNS_TLS};

    /// (name, port, protocol, target port name) of each port.
    fn ports(service: &Service) -> Vec<(String, i32, String, String)> {
        service
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| {
                let target = match p.target_port.as_ref().unwrap() {
                    IntOrString::String(name) => name.clone(),
                    IntOrString::Int(n) => panic!("port {:?} targets a number ({n}), not a name", p.name),
                };
                (p.name.clone().unwrap(), p.port, p.protocol.clone().unwrap(), target)
            })
            .collect()
    }

    fn row(name: &str, port: i32, protocol: &str) -> (String, i32, String, String) {
        (name.into(), port, protocol.into(), name.into())
    }

    #[test]
    fn headless_service_publishes_every_member_on_every_port() {
        let service = fixtures::built(DEFAULTS).headless_service;
        let spec = service.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.type_, None);
        assert_eq!(
            spec.selector.as_ref().unwrap().keys().collect::<Vec<_>>(),
            ["app.kubernetes.io/component", "app.kubernetes.io/instance", "app.kubernetes.io/name"]
        );
        assert_eq!(ports(&service), [row("http", 8848, "TCP"), row("grpc", 9848, "TCP"), row("cluster", 9849, "TCP")]);
    }

    #[test]
    fn client_service_defaults_to_cluster_ip_without_the_cluster_port() {
        let service = fixtures::built(DEFAULTS).client_service;
        let spec = service.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(spec.publish_not_ready_addresses, None);
        assert_eq!(service.metadata.annotations, None);
        assert_eq!(ports(&service), [row("http", 8848, "TCP"), row("grpc", 9848, "TCP")]);
    }

    #[test]
    fn client_service_type_and_annotations_come_from_the_spec() {
        let service = fixtures::built(CUSTOM_STORAGE_SCHEDULING).client_service;
        assert_eq!(service.spec.as_ref().unwrap().type_.as_deref(), Some("LoadBalancer"));
        let annotations = service.metadata.annotations.unwrap();
        assert_eq!(annotations["service.beta.kubernetes.io/aws-load-balancer-internal"], "true");
    }

    #[test]
    fn dns_adds_a_udp_and_a_tcp_port_to_both_services() {
        let resources = fixtures::built(DNS);
        let dns = [row("dns", 53, "UDP"), row("dns-tcp", 53, "TCP")];
        for service in [&resources.headless_service, &resources.client_service] {
            assert_eq!(ports(service)[ports(service).len() - 2..], dns);
        }
    }

    #[test]
    fn dns_over_tls_adds_a_tcp_port_of_its_own_to_both_services() {
        let resources = fixtures::built(DNS_TLS);
        let dns = [row("dns", 53, "UDP"), row("dns-tcp", 53, "TCP"), row("dns-tls", 853, "TCP")];
        for service in [&resources.headless_service, &resources.client_service] {
            assert_eq!(ports(service)[ports(service).len() - 3..], dns);
        }
        // Plain DNS alone opens no DNS-over-TLS port.
        let resources = fixtures::built(DNS);
        for service in [&resources.headless_service, &resources.client_service] {
            assert!(ports(service).iter().all(|(name, ..)| name != "dns-tls"), "{:?}", ports(service));
        }
    }

    #[test]
    fn dns_off_adds_no_dns_port() {
        let resources = fixtures::built(DEFAULTS);
        for service in [&resources.headless_service, &resources.client_service] {
            assert!(ports(service).iter().all(|(name, _, protocol, _)| !name.starts_with("dns") && protocol == "TCP"));
        }
    }

    #[test]
    fn ports_follow_a_custom_http_port() {
        let service = fixtures::built("ports: { http: 18848 }").headless_service;
        assert_eq!(
            ports(&service),
            [row("http", 18848, "TCP"), row("grpc", 19848, "TCP"), row("cluster", 19849, "TCP")]
        );
    }
}
