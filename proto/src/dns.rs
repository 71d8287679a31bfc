//! The DNS zone of registered services (docs/dns.md), shared by the registry's DNS server and
//! the sidecar's resolver: whoever holds the instances answers the same names the same way.
//!
//! ```text
//!  query bytes ──► handler::handle ──► name::parse (zone, forms, labels)
//!                        │                   │ ServiceName
//!                        │                   ▼
//!                        │            Source::records (the caller's cache: one
//!                        │            ServiceRecords per service revision and cluster label)
//!                        ▼
//!                  reply bytes: header + question + pre-encoded records (rotated per query)
//! ```
//! Nothing here does IO or keeps state beyond a [`ServiceRecords`] value: transports, caches and
//! change notifications belong to the caller.

pub mod batch;
pub mod handler;
pub mod name;
pub mod records;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};

pub use handler::{QueryKind, Rcode, Reply, Source, Transport, handle, handle_decoded};
pub use name::{LabelIndex, ServiceName, Target, label};
pub use records::{ServiceRecords, answerable};

/// Default record TTL (seconds): short, because instances come and go; resolvers re-ask soon.
pub const DEFAULT_TTL_SECS: u32 = 5;

/// Why a zone could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The zone is not a valid domain name.
    #[error("invalid DNS zone '{zone}': {reason}")]
    InvalidZone {
        /// The zone as given.
        zone: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The zone served: its origin, the TTL of every record, and its SOA (encoded once).
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    /// The origin on the wire (lower case, uncompressed): names read without hickory end in it.
    origin_wire: Box<[u8]>,
    ttl: u32,
    /// The SOA with its owner (the authority section of negative answers).
    soa: Vec<u8>,
    /// The SOA without its owner (the answer to an SOA query, owned by the question's name).
    soa_tail: Box<[u8]>,
}

impl Zone {
    /// The zone `origin` (e.g. `nacos.local`, a trailing dot optional) with records of `ttl`
    /// seconds. `serial` goes into the SOA (the server's start time: resolvers only compare it).
    pub fn new(origin: &str, ttl: u32, serial: u32) -> Result<Self, DnsError> {
        let invalid = |reason: String| DnsError::InvalidZone { zone: origin.to_owned(), reason };
        let trimmed = origin.trim().trim_end_matches('.');
        if trimmed.is_empty() {
            return Err(invalid("empty".into()));
        }
        if !trimmed.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')) {
            return Err(invalid("labels must be letters, digits and '-'".into()));
        }
        let mut name = Name::from_ascii(trimmed).map_err(|e| invalid(e.to_string()))?.to_lowercase();
        name.set_fqdn(true);
        let child = |l: &str| name.prepend_label(l).map_err(|e| invalid(e.to_string()));
        // Negative answers are cached for min(SOA TTL, minimum): both the record TTL.
        let soa = SOA::new(child("ns")?, child("hostmaster")?, serial, 3600, 600, 86_400, ttl);
        let soa_tail = records::tail(ttl, RData::SOA(soa.clone())).map_err(|e| invalid(e.to_string()))?;
        let soa = records::encode_full(&Record::from_rdata(name.clone(), ttl, RData::SOA(soa)))
            .map_err(|e| invalid(e.to_string()))?;
        let mut origin_wire = Vec::with_capacity(trimmed.len() + 2);
        for label in name.iter() {
            // Each label is at most 63 bytes: `Name::from_ascii` checked.
            origin_wire.push(u8::try_from(label.len()).map_err(|e| invalid(e.to_string()))?);
            origin_wire.extend_from_slice(label);
        }
        origin_wire.push(0);
        Ok(Self { origin: name, origin_wire: origin_wire.into(), ttl, soa, soa_tail })
    }

    /// The origin, lower case, fully qualified.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The origin on the wire, lower case.
    pub(crate) fn origin_wire(&self) -> &[u8] {
        &self.origin_wire
    }

    /// TTL of every record (seconds).
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The SOA record, encoded with its owner name in full.
    pub(crate) fn soa(&self) -> &[u8] {
        &self.soa
    }

    /// The SOA record without its owner name.
    pub(crate) fn soa_tail(&self) -> &[u8] {
        &self.soa_tail
    }
}
