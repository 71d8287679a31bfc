use std::collections::HashMap;
use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::{Name, RData};

use super::*;
use crate::dns::records::answerable;
use crate::model::Instance;

/// Services by index key, as a caller's cache would hold them.
struct Fixed(HashMap<String, Arc<ServiceRecords>>);

impl Source for Fixed {
    fn records(&self, name: &ServiceName<'_>) -> Option<Arc<ServiceRecords>> {
        self.0.get(&name.index_key()).cloned()
    }
}

fn zone() -> Zone {
    Zone::new("nacos.local", 5, 42).unwrap()
}

/// `orders` (default group, public) with `n` healthy hosts 10.0.<i/256>.<i%256>:8080, and
/// `empty` with one unhealthy host.
fn source(n: usize) -> Fixed {
    let z = zone();
    let hosts: Vec<Arc<Instance>> = (0..n)
        .map(|i| Arc::new(Instance::new(format!("10.0.{}.{}", i / 256, i % 256), 8080, "DEFAULT", true)))
        .collect();
    let mut unhealthy = Instance::new("10.9.9.9", 80, "DEFAULT", true);
    unhealthy.healthy = false;
    let empty = answerable(&[Arc::new(unhealthy)], None, None);
    let mut map = HashMap::new();
    map.insert(
        ServiceName { service: "orders", group: None, namespace: None, cluster: None }.index_key(),
        Arc::new(ServiceRecords::build(&z, 1, &answerable(&hosts, None, None))),
    );
    map.insert(
        ServiceName { service: "empty", group: None, namespace: None, cluster: None }.index_key(),
        Arc::new(ServiceRecords::build(&z, 1, &empty)),
    );
    Fixed(map)
}

fn query(name: &str, t: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn ask(name: &str, t: RecordType, transport: Transport, source: &Fixed) -> (Reply, Message) {
    let reply = handle(&query(name, t, false), transport, &zone(), source).expect("a reply");
    let parsed = Message::from_vec(&reply.bytes).expect("a decodable reply");
    (reply, parsed)
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0) } else { None }).collect()
}

#[test]
fn a_answers_every_host_rotated_per_query_with_the_question_case_kept() {
    let s = source(3);
    let (reply, m) = ask("Orders.NACOS.local.", RecordType::A, Transport::Udp, &s);
    assert_eq!(
        (reply.rcode, reply.kind, m.metadata.response_code),
        (Rcode::NoError, QueryKind::A, ResponseCode::NoError)
    );
    assert!(m.metadata.authoritative);
    assert_eq!(m.queries[0].name().to_ascii(), "Orders.NACOS.local.");
    assert!(m.answers.iter().all(|r| r.name.to_ascii() == "Orders.NACOS.local." && r.ttl == 5));
    let first = a_records(&m);
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, ["10.0.0.0", "10.0.0.1", "10.0.0.2"].map(|a| a.parse::<Ipv4Addr>().unwrap()));
    let (_, again) = ask("orders.nacos.local.", RecordType::A, Transport::Udp, &s);
    assert_ne!(a_records(&again), first, "the next query starts with the next host");
}

#[test]
fn srv_gives_ports_weights_and_address_glue_that_resolves() {
    let s = source(2);
    let (_, m) = ask("_http._tcp.orders.nacos.local.", RecordType::SRV, Transport::Udp, &s);
    let srv: Vec<_> =
        m.answers.iter().filter_map(|r| if let RData::SRV(v) = &r.data { Some(v.clone()) } else { None }).collect();
    assert_eq!(srv.len(), 2);
    assert!(srv.iter().all(|v| v.port == 8080 && v.weight == 100));
    let target = srv[0].target.to_ascii();
    assert!(target.ends_with(".addr.nacos.local."), "{target}");
    assert_eq!(m.additionals.len(), 2, "one A record per target");
    let (_, a) = ask(&target, RecordType::A, Transport::Udp, &s);
    assert_eq!(a_records(&a).len(), 1);
    // Eight SRV records fit 512 bytes, their glue does not: it is left out, nothing truncated.
    let (reply, m) = ask("orders.nacos.local.", RecordType::SRV, Transport::Udp, &source(8));
    assert!(!reply.truncated && m.additionals.is_empty(), "{} bytes", reply.bytes.len());
    assert_eq!(m.answers.len(), 8);
    let (_, m) = ask("orders.nacos.local.", RecordType::SRV, Transport::Tcp, &source(8));
    assert_eq!(m.additionals.len(), 8);
}

#[test]
fn unknown_names_are_nxdomain_and_empty_services_nodata_both_with_the_soa() {
    let s = source(1);
    for (name, rcode) in [
        ("nope.nacos.local.", Rcode::NxDomain),
        ("empty.nacos.local.", Rcode::NoError),
        ("a.b.c.d.nacos.local.", Rcode::NxDomain),
    ] {
        let (reply, m) = ask(name, RecordType::A, Transport::Udp, &s);
        assert_eq!(reply.rcode, rcode, "{name}");
        assert!(m.answers.is_empty());
        let [soa] = m.authorities.as_slice() else { panic!("one SOA expected: {m:?}") };
        let RData::SOA(soa) = &soa.data else { panic!("not an SOA") };
        assert_eq!((soa.mname.to_ascii().as_str(), soa.serial, soa.minimum), ("ns.nacos.local.", 42, 5));
    }
    let (_, m) = ask("nacos.local.", RecordType::SOA, Transport::Udp, &s);
    assert!(matches!(m.answers.first().map(|r| &r.data), Some(RData::SOA(_))));
    let (reply, _) = ask("orders.example.com.", RecordType::A, Transport::Udp, &s);
    assert_eq!(reply.rcode, Rcode::Refused);
}

#[test]
fn a_large_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let s = source(100);
    let (reply, m) = ask("orders.nacos.local.", RecordType::A, Transport::Udp, &s);
    assert!(reply.truncated && m.metadata.truncation && m.answers.is_empty());
    assert!(reply.bytes.len() <= CLASSIC_UDP_LIMIT);
    let (reply, m) = ask("orders.nacos.local.", RecordType::A, Transport::Tcp, &s);
    assert!(!reply.truncated && !m.metadata.truncation);
    assert_eq!(a_records(&m).len(), 100);
    // With EDNS the client's larger buffer fits it over UDP, and the reply carries our OPT.
    let reply = handle(&query("orders.nacos.local.", RecordType::A, true), Transport::Udp, &zone(), &s).unwrap();
    let m = Message::from_vec(&reply.bytes).unwrap();
    assert_eq!((reply.truncated, a_records(&m).len()), (false, 100));
    assert_eq!(m.edns.map(|e| e.max_payload()), Some(OUR_EDNS_PAYLOAD));
}

#[test]
fn other_classes_transfers_and_opcodes_are_refused_or_not_implemented() {
    let s = source(1);
    let mut m = Message::query();
    let mut q = Query::query(Name::from_ascii("orders.nacos.local.").unwrap(), RecordType::A);
    q.set_query_class(DNSClass::CH);
    m.add_query(q);
    let reply = handle(&m.to_vec().unwrap(), Transport::Udp, &zone(), &s).unwrap();
    assert_eq!(reply.rcode, Rcode::Refused);
    let (reply, _) = ask("nacos.local.", RecordType::AXFR, Transport::Tcp, &s);
    assert_eq!(reply.rcode, Rcode::Refused);
    let mut m = Message::new(7, MessageType::Query, OpCode::Update);
    m.add_query(Query::query(Name::from_ascii("orders.nacos.local.").unwrap(), RecordType::A));
    assert_eq!(handle(&m.to_vec().unwrap(), Transport::Udp, &zone(), &s).unwrap().rcode, Rcode::NotImp);
    // A response is never answered (no reflection loops).
    let (reply, _) = ask("orders.nacos.local.", RecordType::A, Transport::Udp, &s);
    assert!(handle(&reply.bytes, Transport::Udp, &zone(), &s).is_none());
}

/// A tiny seeded generator (xorshift64*): reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Malformed variants of a valid query.
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut p = valid.to_vec();
    match rng.below(8) {
        // Truncated anywhere.
        0 => p.truncate(rng.below(p.len() + 1)),
        // Huge section counts.
        1 => {
            let at = 4 + 2 * rng.below(4);
            p[at] = 0xFF;
            p[at + 1] = rng.next() as u8;
        }
        // A compression loop: the question name points at itself or forward.
        2 => {
            p.truncate(12);
            p.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        }
        3 => {
            p.truncate(12);
            p.extend_from_slice(&[3, b'a', b'b', b'c', 0xC0, 16, 0, 1, 0, 1]);
        }
        // Wrong class (a valid packet otherwise).
        4 => {
            let n = p.len();
            p[n - 1] = rng.next() as u8;
            p[n - 2] = rng.next() as u8;
        }
        // Random bytes flipped.
        5 => {
            for _ in 0..=rng.below(8) {
                let at = rng.below(p.len());
                p[at] = rng.next() as u8;
            }
        }
        // Label lengths beyond the packet, or over 63.
        6 => {
            p[12] = 0x3F + (rng.next() as u8 & 0x7F);
        }
        // Entirely random.
        _ => p = (0..rng.below(600)).map(|_| rng.next() as u8).collect(),
    }
    p
}

#[test]
fn malformed_packets_never_panic_and_get_formerr_or_nothing() {
    let s = source(5);
    let z = zone();
    let valid = query("orders.nacos.local.", RecordType::A, false);
    let mut rng = Rng(0x5EED_D115_0000_0001);
    let mut counts: HashMap<Option<Rcode>, usize> = HashMap::new();
    for _ in 0..20_000 {
        let packet = mutate(&mut rng, &valid);
        let transport = if rng.below(2) == 0 { Transport::Udp } else { Transport::Tcp };
        let reply = handle(&packet, transport, &z, &s);
        if let Some(r) = &reply {
            // Every reply decodes, carries the query's id, and fits the transport.
            let m = Message::from_vec(&r.bytes).expect("replies always decode");
            assert_eq!(m.metadata.id, u16::from_be_bytes([packet[0], packet[1]]));
            assert!(r.bytes.len() <= if transport == Transport::Udp { MAX_UDP_LIMIT } else { MAX_TCP });
        }
        *counts.entry(reply.map(|r| r.rcode)).or_default() += 1;
    }
    // The mutations reached each outcome: the test exercises what it claims to.
    for outcome in [None, Some(Rcode::FormErr), Some(Rcode::Refused), Some(Rcode::NoError)] {
        assert!(counts.get(&outcome).copied().unwrap_or(0) > 0, "{outcome:?} never seen: {counts:?}");
    }
    // The handler still answers properly afterwards.
    let (reply, m) = ask("orders.nacos.local.", RecordType::A, Transport::Udp, &s);
    assert_eq!((reply.rcode, a_records(&m).len()), (Rcode::NoError, 5));
}

/// A query built byte by byte, mostly in the plain form the direct reading takes, with names
/// from the zone's forms in any case and every way of leaving that form.
fn generated(rng: &mut Rng) -> Vec<u8> {
    const LABELS: &[&[u8]] = &[
        b"orders",
        b"ORDERS",
        b"Orders",
        b"empty",
        b"nope",
        b"_http",
        b"_tcp",
        b"_udp",
        b"_cluster",
        b"default",
        b"DEFAULT",
        b"pay",
        b"public",
        b"10-0-0-1",
        b"10-0-0-300",
        b"fd00-0-0-0-0-0-0-1",
        b"addr",
        b"*",
        b"nacos",
        b"NACOS",
        b"local",
        b"xnacos",
        b"\xff\xfe",
        b"a.b",
        b"",
    ];
    let pick = |rng: &mut Rng, from: &[u16]| from[rng.below(from.len())];
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&(rng.next() as u16).to_be_bytes());
    let opcode = if rng.below(10) == 0 { rng.below(16) as u8 } else { 0 };
    let other_bits = if rng.below(4) == 0 { rng.next() as u8 & 0x06 } else { 0 };
    p.push((opcode << 3) | other_bits | rng.below(2) as u8);
    p.push(if rng.below(4) == 0 { rng.next() as u8 & 0x7F } else { 0 });
    let edns = rng.below(3);
    for count in [pick(rng, &[1, 1, 1, 1, 1, 1, 0, 2]), pick(rng, &[0, 0, 0, 0, 0, 0, 0, 1]), pick(rng, &[0; 1])] {
        p.extend_from_slice(&count.to_be_bytes());
    }
    p.extend_from_slice(&u16::from(edns != 0).to_be_bytes());
    // A third of the names are forms that answer (before the zone is added).
    const FORMS: &[&[&[u8]]] =
        &[&[b"orders"], &[b"ORDERS"], &[b"_http", b"_tcp", b"orders"], &[b"empty"], &[b"10-0-0-1", b"addr"], &[]];
    if rng.below(3) == 0 {
        for label in FORMS[rng.below(FORMS.len())] {
            p.push(label.len() as u8);
            p.extend_from_slice(label);
        }
    }
    for _ in 0..rng.below(10) * rng.below(2) {
        let label = if rng.below(12) == 0 {
            (0..rng.below(64)).map(|_| rng.next() as u8).collect()
        } else {
            LABELS[rng.below(LABELS.len())].to_vec()
        };
        // An empty label here ends the name early: the rest follows as garbage.
        p.push(label.len() as u8);
        p.extend_from_slice(&label);
    }
    if rng.below(5) != 0 {
        let zone: &[&[u8]] = if rng.below(4) == 0 { &[b"Nacos", b"LOCAL"] } else { &[b"nacos", b"local"] };
        for label in zone {
            p.push(label.len() as u8);
            p.extend_from_slice(label);
        }
    }
    p.push(0);
    let any = rng.next() as u16;
    let qtype = pick(rng, &[1, 1, 1, 28, 33, 33, 16, 6, 255, 252, 251, 12, 41, 0, any]);
    let qclass = pick(rng, &[1, 1, 1, 1, 1, 3, 254, 255, any]);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&qclass.to_be_bytes());
    if edns != 0 {
        // OPT: usually the plain one; sometimes a non-root owner or an option (a cookie).
        if rng.below(8) == 0 {
            p.extend_from_slice(&[1, b'x', 0]);
        } else {
            p.push(0);
        }
        p.extend_from_slice(&41u16.to_be_bytes());
        p.extend_from_slice(&pick(rng, &[0, 512, 1232, 4096, 65535, any]).to_be_bytes());
        p.extend_from_slice(&(if rng.below(4) == 0 { rng.next() as u32 } else { 0 }).to_be_bytes());
        if rng.below(8) == 0 {
            p.extend_from_slice(&[0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        } else {
            p.extend_from_slice(&[0, 0]);
        }
    }
    if rng.below(16) == 0 {
        p.extend((0..rng.below(8)).map(|_| rng.next() as u8));
    }
    p
}

#[test]
fn the_direct_reading_answers_byte_for_byte_as_hickory_decoding_does() {
    let z = zone();
    // One source per path: both rotate in step as long as they answer alike.
    let (direct, decoded) = (source(12), source(12));
    let mut rng = Rng(0xD1FF_0000_0000_0001);
    let valid = query("orders.nacos.local.", RecordType::A, true);
    // What resolvers and the load tool send is the form read directly.
    for (edns, t) in [(true, RecordType::A), (false, RecordType::SRV), (true, RecordType::AAAA)] {
        let mut lower = [0; question::MAX_NAME];
        let packet = query("_x._tcp.Orders.nacos.local.", t, edns);
        assert!(question::read(&packet, &mut lower, z.origin_wire()).is_some(), "{packet:02x?}");
    }
    let mut taken: HashMap<Rcode, usize> = HashMap::new();
    let mut declined = 0;
    for i in 0..30_000 {
        let packet = if i % 4 == 3 { mutate(&mut rng, &valid) } else { generated(&mut rng) };
        let transport = if rng.below(4) == 0 { Transport::Tcp } else { Transport::Udp };
        let fast = handle(&packet, transport, &z, &direct);
        let reference = handle_decoded(&packet, transport, &z, &decoded);
        assert_eq!(fast, reference, "{transport:?} {packet:02x?}");
        let mut lower = [0; question::MAX_NAME];
        match (&fast, question::read(&packet, &mut lower, z.origin_wire())) {
            (Some(reply), Some(_)) => *taken.entry(reply.rcode).or_default() += 1,
            _ => declined += 1,
        }
    }
    // Both paths were exercised, the direct one through every outcome it can give.
    assert!(declined > 3_000, "{declined} declined, {taken:?} taken");
    for rcode in [Rcode::NoError, Rcode::NxDomain, Rcode::Refused] {
        assert!(taken.get(&rcode).copied().unwrap_or(0) > 500, "{rcode:?}: {taken:?}");
    }
}
