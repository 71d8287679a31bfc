//! One query in, one reply out: reading it (the common form straight from the bytes, anything
//! else with hickory), the answer rules of the zone, and the reply written from pre-encoded
//! records. No IO; never panics on any input (see the randomized test).
//!
//! Rules: responses and packets shorter than a header get no reply; undecodable queries
//! FORMERR; opcodes other than QUERY NOTIMP; not exactly one question FORMERR; a class other
//! than IN, a zone transfer, or a name outside the zone REFUSED; an unknown name in the zone
//! NXDOMAIN with the SOA in authority; a known name without records of the type NOERROR with
//! the SOA (NODATA). A UDP reply larger than the client's limit (512, or its EDNS size up to
//! 4096) loses its glue first; if the answer alone does not fit either, it is cut to the
//! question with TC set, and the client retries over TCP.

use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

mod question;

use super::Zone;
use super::name::{ServiceName, Target, labels_below, parse};
use super::records::{Encoded, ServiceRecords, address_tail};

/// Largest UDP reply without EDNS (RFC 1035).
const CLASSIC_UDP_LIMIT: usize = 512;
/// Largest UDP reply we send whatever the client's EDNS size says.
const MAX_UDP_LIMIT: usize = 4096;
/// The EDNS payload size we announce (the DNS flag day 2020 value).
const OUR_EDNS_PAYLOAD: u16 = 1232;
/// Largest TCP message (the 2-byte length prefix).
const MAX_TCP: usize = u16::MAX as usize;
/// Offset of the question name in every reply: a pointer to it is `0xC00C`.
const QNAME_POINTER: [u8; 2] = [0xC0, 0x0C];

/// Where the query came from: it bounds the reply size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams: 512 bytes, or the client's EDNS size (truncation beyond).
    Udp,
    /// A stream: up to 65535 bytes.
    Tcp,
}

/// Gives the records of a service named by a query (the caller's cache).
pub trait Source {
    /// `None` when no such service exists (NXDOMAIN); an existing service without answerable
    /// hosts has empty records (NODATA).
    fn records(&self, name: &ServiceName<'_>) -> Option<Arc<ServiceRecords>>;
}

/// Query type as counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryKind {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Service location.
    Srv,
    /// Instance metadata.
    Txt,
    /// Zone authority.
    Soa,
    /// Any other type.
    Other,
    /// The query could not be decoded.
    Malformed,
}

impl QueryKind {
    /// Every kind, in metrics order.
    pub const ALL: [Self; 7] = [Self::A, Self::Aaaa, Self::Srv, Self::Txt, Self::Soa, Self::Other, Self::Malformed];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Srv => "SRV",
            Self::Txt => "TXT",
            Self::Soa => "SOA",
            Self::Other => "other",
            Self::Malformed => "malformed",
        }
    }

    fn of(t: RecordType) -> Self {
        match t {
            RecordType::A => Self::A,
            RecordType::AAAA => Self::Aaaa,
            RecordType::SRV => Self::Srv,
            RecordType::TXT => Self::Txt,
            RecordType::SOA => Self::Soa,
            _ => Self::Other,
        }
    }
}

/// Response codes this zone answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rcode {
    /// Answered (possibly with no records).
    NoError,
    /// The query could not be decoded.
    FormErr,
    /// No such name in the zone.
    NxDomain,
    /// Opcode not supported.
    NotImp,
    /// Outside the zone, another class, or a zone transfer.
    Refused,
}

impl Rcode {
    /// Every code, in metrics order.
    pub const ALL: [Self; 5] = [Self::NoError, Self::FormErr, Self::NxDomain, Self::NotImp, Self::Refused];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoError => "NOERROR",
            Self::FormErr => "FORMERR",
            Self::NxDomain => "NXDOMAIN",
            Self::NotImp => "NOTIMP",
            Self::Refused => "REFUSED",
        }
    }

    fn wire(self) -> u8 {
        match self {
            Self::NoError => 0,
            Self::FormErr => 1,
            Self::NxDomain => 3,
            Self::NotImp => 4,
            Self::Refused => 5,
        }
    }
}

/// A reply to send, and what to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The encoded message.
    pub bytes: Vec<u8>,
    /// Its response code.
    pub rcode: Rcode,
    /// The type asked.
    pub kind: QueryKind,
    /// True when the answer did not fit and was cut (TC set).
    pub truncated: bool,
}

/// Answers one query; `None` when nothing must be sent (not a query, or shorter than a header).
/// The common form is read straight from the bytes (`handler/question.rs`, no allocation);
/// anything else is decoded by hickory ([`handle_decoded`]). Both give the same answer.
pub fn handle(request: &[u8], transport: Transport, zone: &Zone, source: &dyn Source) -> Option<Reply> {
    let header = Header::read(request)?;
    let mut lower = [0; question::MAX_NAME];
    match question::read(request, &mut lower, zone.origin_wire()) {
        Some(plain) => {
            let asked = Asked {
                header,
                section: plain.section,
                qtype: plain.qtype,
                qclass: DNSClass::IN,
                edns: plain.edns,
                below: plain.below(),
            };
            Some(answer(&asked, transport, zone, source))
        }
        None => decode_and_answer(header, request, transport, zone, source),
    }
}

/// [`handle`] with every query decoded by hickory: the reference the direct reading is checked
/// against (tests, the `dns_packet` fuzz target).
pub fn handle_decoded(request: &[u8], transport: Transport, zone: &Zone, source: &dyn Source) -> Option<Reply> {
    decode_and_answer(Header::read(request)?, request, transport, zone, source)
}

/// What every reply takes from the query's header, read before any decoding (so that even an
/// undecodable query gets its id back).
#[derive(Clone, Copy)]
struct Header {
    id: u16,
    rd: bool,
    opcode: u8,
}

impl Header {
    /// `None` for a response or a packet shorter than a header.
    fn read(request: &[u8]) -> Option<Self> {
        let header: [u8; 4] = request.get(..4)?.try_into().ok()?;
        if request.len() < 12 || header[2] & 0x80 != 0 {
            return None;
        }
        Some(Self {
            id: u16::from_be_bytes([header[0], header[1]]),
            rd: header[2] & 0x01 != 0,
            opcode: (header[2] >> 3) & 0x0F,
        })
    }
}

/// The answer to a query as hickory decodes it (any form).
fn decode_and_answer(
    header: Header,
    request: &[u8],
    transport: Transport,
    zone: &Zone,
    source: &dyn Source,
) -> Option<Reply> {
    let Header { id, rd, opcode } = header;
    let Ok(message) = Message::from_vec(request) else {
        return Some(error_reply(id, opcode, rd, Rcode::FormErr, QueryKind::Malformed));
    };
    if message.metadata.message_type != MessageType::Query {
        return None;
    }
    if message.metadata.op_code != OpCode::Query {
        return Some(error_reply(id, opcode, rd, Rcode::NotImp, QueryKind::Other));
    }
    let [query] = message.queries.as_slice() else {
        return Some(error_reply(id, opcode, rd, Rcode::FormErr, QueryKind::Malformed));
    };
    let section = encode_question(query)?;
    let qname = query.name().to_lowercase();
    let below = labels_below(zone.origin(), &qname);
    let asked = Asked {
        header,
        section: &section,
        qtype: query.query_type(),
        qclass: query.query_class(),
        edns: message.edns.as_ref().map(Edns::max_payload),
        below: below.as_deref(),
    };
    Some(answer(&asked, transport, zone, source))
}

/// A query reduced to what its answer depends on, however it was read.
struct Asked<'q> {
    header: Header,
    /// The question section as sent (the name uncompressed): the reply repeats it at offset 12.
    section: &'q [u8],
    qtype: RecordType,
    qclass: DNSClass,
    /// The client's EDNS payload size, when it sent an OPT record.
    edns: Option<u16>,
    /// The labels below the zone, leftmost first, lower case (`None`: outside the zone).
    below: Option<&'q [&'q str]>,
}

/// The answer rules (module doc) for one decoded query.
fn answer(asked: &Asked<'_>, transport: Transport, zone: &Zone, source: &dyn Source) -> Reply {
    let kind = QueryKind::of(asked.qtype);
    let limit = match (transport, asked.edns) {
        (Transport::Tcp, _) => MAX_TCP,
        (Transport::Udp, None) => CLASSIC_UDP_LIMIT,
        (Transport::Udp, Some(size)) => usize::from(size).clamp(CLASSIC_UDP_LIMIT, MAX_UDP_LIMIT),
    };
    let mut reply = ReplyWriter {
        id: asked.header.id,
        rd: asked.header.rd,
        question: asked.section,
        edns: asked.edns.is_some(),
        limit,
    };
    if asked.qclass != DNSClass::IN || matches!(asked.qtype, RecordType::AXFR | RecordType::IXFR) {
        return reply.finish(Rcode::Refused, kind, &Answer::default());
    }
    let Some(labels) = asked.below else {
        return reply.finish(Rcode::Refused, kind, &Answer::default());
    };
    let soa = Some(zone.soa());
    let (rcode, answer) = match parse(labels) {
        Target::Apex if kind == QueryKind::Soa => {
            // The SOA as an answer: its owner is the question name (the apex) itself.
            let owned = vec![Encoded::from(zone.soa_tail())];
            return reply.finish(Rcode::NoError, kind, &Answer { owned, ..Answer::default() });
        }
        Target::Apex => (Rcode::NoError, Answer { soa, ..Answer::default() }),
        Target::Address(ip) => {
            let wanted = matches!(
                (kind, ip),
                (QueryKind::A, std::net::IpAddr::V4(_)) | (QueryKind::Aaaa, std::net::IpAddr::V6(_))
            );
            let owned: Vec<Encoded> =
                if wanted { address_tail(zone.ttl(), ip).into_iter().collect() } else { Vec::new() };
            let soa = if owned.is_empty() { soa } else { None };
            (Rcode::NoError, Answer { owned, soa, ..Answer::default() })
        }
        Target::Service(name) => match source.records(&name) {
            None => (Rcode::NxDomain, Answer { soa, ..Answer::default() }),
            Some(records) => {
                let (answers, _) = records.for_kind(kind);
                if answers.is_empty() {
                    (Rcode::NoError, Answer { soa, ..Answer::default() })
                } else {
                    let turn = records.next_turn() % answers.len();
                    let answer = Answer { cached: Some((Arc::clone(&records), turn)), ..Answer::default() };
                    return reply.finish(Rcode::NoError, kind, &answer);
                }
            }
        },
        Target::Unknown => (Rcode::NxDomain, Answer { soa, ..Answer::default() }),
    };
    reply.finish(rcode, kind, &answer)
}

/// What goes after the question.
#[derive(Default)]
struct Answer<'a> {
    /// Cached records and the rotation start.
    cached: Option<(Arc<ServiceRecords>, usize)>,
    /// Tails built for this query.
    owned: Vec<Encoded>,
    /// The SOA for the authority section (negative answers).
    soa: Option<&'a [u8]>,
}

/// The parts of a reply known before the answer.
struct ReplyWriter<'q> {
    id: u16,
    rd: bool,
    question: &'q [u8],
    edns: bool,
    limit: usize,
}

impl ReplyWriter<'_> {
    fn finish(&mut self, rcode: Rcode, kind: QueryKind, answer: &Answer<'_>) -> Reply {
        let (tails, glue, turn): (&[Encoded], &[Encoded], usize) = match &answer.cached {
            Some((records, turn)) => {
                let (tails, glue) = records.for_kind(kind);
                (tails, glue, *turn)
            }
            None => (&answer.owned, &[], 0),
        };
        let authority: &[&[u8]] = match answer.soa {
            Some(soa) => &[soa],
            None => &[],
        };
        let full = self.write(rcode, tails, turn, authority, glue, false);
        if full.len() <= self.limit {
            return Reply { bytes: full, rcode, kind, truncated: false };
        }
        // Glue is optional (RFC 2181 §9): without it the answer may still fit, untruncated.
        if !glue.is_empty() {
            let bare = self.write(rcode, tails, turn, authority, &[], false);
            if bare.len() <= self.limit {
                return Reply { bytes: bare, rcode, kind, truncated: false };
            }
        }
        Reply { bytes: self.write(rcode, &[], 0, &[], &[], true), rcode, kind, truncated: true }
    }

    fn write(
        &self,
        rcode: Rcode,
        tails: &[Encoded],
        turn: usize,
        authority: &[&[u8]],
        glue: &[Encoded],
        truncated: bool,
    ) -> Vec<u8> {
        let size = 12
            + self.question.len()
            + tails.iter().map(|t| t.len() + 2).sum::<usize>()
            + authority.iter().map(|a| a.len()).sum::<usize>()
            + glue.iter().map(|g| g.len()).sum::<usize>()
            + 11;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&self.id.to_be_bytes());
        // QR, opcode QUERY, AA, TC, RD as asked; RA 0 (no recursion here).
        out.push(0x80 | 0x04 | if truncated { 0x02 } else { 0 } | u8::from(self.rd));
        out.push(rcode.wire());
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes();
        out.extend_from_slice(&count(1));
        out.extend_from_slice(&count(tails.len()));
        out.extend_from_slice(&count(authority.len()));
        out.extend_from_slice(&count(glue.len() + usize::from(self.edns)));
        out.extend_from_slice(self.question);
        let (after, before) = tails.split_at(turn.min(tails.len()));
        for tail in before.iter().chain(after) {
            out.extend_from_slice(&QNAME_POINTER);
            out.extend_from_slice(tail);
        }
        for a in authority {
            out.extend_from_slice(a);
        }
        for g in glue {
            out.extend_from_slice(g);
        }
        if self.edns {
            out.extend_from_slice(&opt_record());
        }
        out
    }
}

/// An error reply: the header only (plus nothing else we could trust).
fn error_reply(id: u16, opcode: u8, rd: bool, rcode: Rcode, kind: QueryKind) -> Reply {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0x80 | (opcode << 3) | u8::from(rd));
    out.push(rcode.wire());
    out.extend_from_slice(&[0; 8]);
    Reply { bytes: out, rcode, kind, truncated: false }
}

/// The question as sent (its case kept), names uncompressed so that it starts at offset 12.
fn encode_question(query: &Query) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(query.name().len() + 6);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    query.emit(&mut encoder).ok()?;
    Some(buf)
}

/// Our OPT pseudo-record: root owner, type 41, our payload size, no flags, no options.
fn opt_record() -> [u8; 11] {
    let p = OUR_EDNS_PAYLOAD.to_be_bytes();
    [0, 0, 41, p[0], p[1], 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests;
