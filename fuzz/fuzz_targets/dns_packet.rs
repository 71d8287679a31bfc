//! DNS queries as the registry's DNS server and the sidecar's resolver receive them (UDP and
//! TCP), answered by the one packet handler both use: truncated headers, wrong classes, huge
//! section counts, compression loops and names outside the zone must get an answer or be
//! dropped, never a panic; an answer is a DNS message of at most the transport's limit that
//! echoes the query's id. The common form, read straight from the bytes, is answered byte for
//! byte as hickory's full decoding answers it.
//! Input: one byte choosing the transport, then the packet.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use registry_proto::dns::{ServiceName, ServiceRecords, Source, Transport, Zone, answerable, handle, handle_decoded};
use registry_proto::model::Instance;

/// Two services, one with answerable hosts (A, AAAA, a host name for SRV), one without.
struct Fixed(HashMap<String, Arc<ServiceRecords>>);

impl Source for Fixed {
    fn records(&self, name: &ServiceName<'_>) -> Option<Arc<ServiceRecords>> {
        self.0.get(&name.index_key()).cloned()
    }
}

fn fixture() -> (Zone, Fixed) {
    let Ok(zone) = Zone::new("nacos.local", 5, 1) else { unreachable!("a valid zone") };
    let hosts: Vec<Arc<Instance>> = ["10.0.0.1", "10.0.0.2", "fd00::1", "db.example.com"]
        .iter()
        .map(|ip| Arc::new(Instance::new(*ip, 8080, "DEFAULT", true)))
        .collect();
    let mut unhealthy = Instance::new("10.9.9.9", 80, "DEFAULT", true);
    unhealthy.healthy = false;
    let key = |service| ServiceName { service, group: None, namespace: None, cluster: None }.index_key();
    let services = HashMap::from([
        (key("orders"), Arc::new(ServiceRecords::build(&zone, 1, &answerable(&hosts, None, None)))),
        (key("empty"), Arc::new(ServiceRecords::build(&zone, 1, &answerable(&[Arc::new(unhealthy)], None, None)))),
    ]);
    (zone, Fixed(services))
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, packet)) = data.split_first() else { return };
    let transport = if choice % 2 == 0 { Transport::Udp } else { Transport::Tcp };
    // One source per path: answer rotation advances in step.
    let ((zone, source), (_, reference)) = (fixture(), fixture());
    let reply = handle(packet, transport, &zone, &source);
    assert_eq!(reply, handle_decoded(packet, transport, &zone, &reference), "direct and decoded answers differ");
    if let Some(reply) = reply {
        let limit = if transport == Transport::Udp { 4096 } else { 65535 };
        assert!(reply.bytes.len() >= 12 && reply.bytes.len() <= limit, "reply of {} bytes", reply.bytes.len());
        assert_eq!(reply.bytes[..2], packet[..2], "the reply echoes the query id");
    }
});
