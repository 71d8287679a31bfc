//! The common query read straight from its bytes, without hickory's decoder: what the answer
//! needs (id, RD, the question as sent, type, EDNS size, the name's labels below the zone in
//! lower case) in stack buffers, no allocation. It takes only the plain form: opcode QUERY, one
//! question with an uncompressed name, no answer or authority records, at most one additional
//! record that is an OPT without options, and nothing after. Anything else is `None` and goes
//! through hickory; `handler/tests.rs` checks both ways answer alike, byte for byte.

use hickory_proto::rr::{DNSClass, RecordType};

/// Longest name on the wire (RFC 1035), root byte included.
pub(super) const MAX_NAME: usize = 255;
/// Most labels below the zone read here: the longest name form has seven
/// (`_x._tcp.<cluster>._cluster.<service>.<group>.<namespace>`), deeper names go the slow way.
const MAX_BELOW: usize = 8;
/// Fixed header length.
const HEADER: usize = 12;

/// Labels below the zone in a fixed array, and how many there are.
type Below<'q> = ([&'q str; MAX_BELOW], usize);

/// A query in the plain form, borrowing the request and the caller's name buffer.
pub(super) struct Plain<'q> {
    /// The question section as sent: the reply repeats it at offset 12.
    pub(super) section: &'q [u8],
    /// The type asked.
    pub(super) qtype: RecordType,
    /// The client's EDNS payload size, when it sent an OPT record.
    pub(super) edns: Option<u16>,
    /// The labels below the zone, leftmost first, lower case (`None`: outside the zone, or a
    /// label that is not UTF-8).
    below: Option<Below<'q>>,
}

impl Plain<'_> {
    /// The labels below the zone (see the field).
    pub(super) fn below(&self) -> Option<&[&str]> {
        self.below.as_ref().map(|(labels, n)| &labels[..*n])
    }
}

/// Reads `request` (a query, header already checked) if it has the plain form; `lower` receives
/// the lower-cased name. `origin` is the zone's name on the wire, lower case.
pub(super) fn read<'q>(request: &'q [u8], lower: &'q mut [u8; MAX_NAME], origin: &[u8]) -> Option<Plain<'q>> {
    let header = request.get(..HEADER)?;
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    // QR 0, opcode QUERY; one question, no answers or authorities, at most the OPT.
    if header[2] & 0xF8 != 0 || count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    // The name: labels of 1..=63 bytes up to the root byte (a pointer or a reserved label type
    // is a length over 63).
    let mut at = HEADER;
    loop {
        let len = usize::from(*request.get(at)?);
        if len > 63 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let name = request.get(HEADER..at)?;
    if name.len() > MAX_NAME {
        return None;
    }
    let fixed = request.get(at..at + 4)?;
    let qtype = RecordType::from(u16::from_be_bytes([fixed[0], fixed[1]]));
    if DNSClass::from(u16::from_be_bytes([fixed[2], fixed[3]])) != DNSClass::IN {
        return None;
    }
    let section = &request[HEADER..at + 4];
    let rest = &request[at + 4..];
    let edns = match (count(10), rest) {
        (0, []) => None,
        // Root owner, type 41 (OPT), payload size, extended rcode, version and flags (ignored:
        // the reply's OPT is always ours), RDATA length 0.
        (1, [0, 0, 41, p0, p1, _, _, _, _, 0, 0]) => Some(u16::from_be_bytes([*p0, *p1])),
        _ => return None,
    };
    // Length bytes are below 64, so lower-casing the whole name leaves them as they are.
    let lower = &mut lower[..name.len()];
    for (l, b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    let lower: &'q [u8] = lower;
    Some(Plain { section, qtype, edns, below: below_zone(lower, origin)? })
}

/// The labels of `name` (wire form, lower case) before `origin`, as `labels_below` gives them
/// for a decoded name: `Some(None)` outside the zone or for a label not UTF-8; `None` for what
/// only the slow path handles (too many labels, or a leading `*`, which hickory does not count
/// as a label).
fn below_zone<'q>(name: &'q [u8], origin: &[u8]) -> Option<Option<Below<'q>>> {
    let Some(boundary) = name.len().checked_sub(origin.len()).filter(|b| name[*b..] == *origin) else {
        return Some(None);
    };
    let mut labels = [""; MAX_BELOW];
    let mut n = 0;
    let mut utf8 = true;
    let mut at = 0;
    while at < boundary {
        let len = usize::from(name[at]);
        // In bounds: `read` checked every label against the request.
        let label = name.get(at + 1..at + 1 + len)?;
        if n == 0 && label == b"*" {
            return None;
        }
        *labels.get_mut(n)? = std::str::from_utf8(label).unwrap_or_else(|_| {
            utf8 = false;
            ""
        });
        n += 1;
        at += 1 + len;
    }
    // The suffix matched but not on a label boundary (`xnacos.local` against `nacos.local`).
    if at != boundary {
        return Some(None);
    }
    Some(utf8.then_some((labels, n)))
}
