//! The v1 UDP push wire format (spec §5): who may receive pushes, the datagram, the ack.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Deserialize;

/// Datagrams at least this long are gzip-compressed, as Nacos does.
pub const GZIP_THRESHOLD: usize = 1024;

/// Client types that accept UDP pushes, with the lowest version that does (Nacos switch
/// defaults). Other clients (Python 1.x, PHP, ...) poll instead.
const PUSH_CAPABLE: &[(&str, [u32; 3])] = &[
    ("Nacos-Java-Client:v", [0, 1, 0]),
    ("Nacos-Go-Client:v", [0, 1, 0]),
    ("Nacos-CSharp-Client:v", [0, 9, 0]),
    ("Nacos-C-Client:v", [1, 0, 12]),
    ("vip-client4cpp:v", [1, 0, 12]),
];

/// Whether a v1 client with this User-Agent gets UDP pushes.
pub fn is_push_capable(user_agent: &str) -> bool {
    if user_agent.starts_with("Nacos-DNS") {
        return true;
    }
    PUSH_CAPABLE.iter().any(|(prefix, min)| {
        user_agent.strip_prefix(prefix).is_some_and(|rest| parse_version(rest).is_some_and(|v| v >= *min))
    })
}

fn parse_version(raw: &str) -> Option<[u32; 3]> {
    let mut out = [0u32; 3];
    let digits: String = raw.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let mut parts = digits.split('.');
    for slot in &mut out {
        match parts.next() {
            Some(p) if !p.is_empty() => *slot = p.parse().ok()?,
            _ => break,
        }
    }
    if digits.is_empty() { None } else { Some(out) }
}

/// Encodes a push datagram `{"type":"dom","data":"<ServiceInfo JSON>","lastRefTime":n}`,
/// gzip-compressed when it reaches [`GZIP_THRESHOLD`].
/// `info_json` is the already-encoded ServiceInfo (grouped name), shared between subscribers.
pub fn encode_push(info_json: &str, last_ref_time: u64) -> Result<Vec<u8>, serde_json::Error> {
    let data = info_json;
    let packet = serde_json::to_vec(&serde_json::json!({ "type": "dom", "data": data, "lastRefTime": last_ref_time }))?;
    if packet.len() < GZIP_THRESHOLD {
        return Ok(packet);
    }
    let mut gz = GzEncoder::new(Vec::with_capacity(packet.len() / 3), Compression::fast());
    // Writing to a Vec cannot fail; fall back to the plain packet if it somehow does.
    match gz.write_all(&packet).and_then(|()| gz.finish()) {
        Ok(compressed) => Ok(compressed),
        Err(_) => Ok(packet),
    }
}

#[derive(Deserialize)]
struct RawAck {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "lastRefTime")]
    last_ref_time: serde_json::Value,
}

/// Parses a client's `push-ack`; `lastRefTime` may be a number (npm) or a numeric string
/// (Java). Anything else yields `None`.
pub fn parse_ack(datagram: &[u8]) -> Option<u64> {
    let ack: RawAck = serde_json::from_slice(datagram).ok()?;
    if ack.kind != "push-ack" {
        return None;
    }
    match ack.last_ref_time {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::model::{Instance, ServiceKey};
    use crate::select::Selection;
    use crate::wire::{NameForm, ServiceInfo};

    #[test]
    fn push_capability_follows_user_agent_and_version() {
        assert!(is_push_capable("Nacos-Java-Client:v1.4.1"));
        assert!(is_push_capable("Nacos-Go-Client:v2.3.5"));
        assert!(!is_push_capable("Nacos-Python-Client:v0.4.3"));
        assert!(!is_push_capable("Nacos-C-Client:v1.0.1"));
        assert!(is_push_capable("Nacos-C-Client:v1.0.12"));
        assert!(!is_push_capable("curl/8.0"));
        assert!(!is_push_capable(""));
    }

    #[test]
    fn acks_accept_number_or_numeric_string() {
        assert_eq!(parse_ack(br#"{"type":"push-ack","lastRefTime":"42","data":""}"#), Some(42));
        assert_eq!(parse_ack(br#"{"type":"push-ack","lastRefTime":42,"data":""}"#), Some(42));
        assert_eq!(parse_ack(br#"{"type":"dump-ack","lastRefTime":42}"#), None);
        assert_eq!(parse_ack(b"garbage"), None);
    }

    #[test]
    fn large_pushes_are_gzipped_small_ones_plain() {
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "s").unwrap();
        let small = Selection {
            hosts: vec![Instance::new("1.1.1.1", 80, "DEFAULT", true).into()],
            reach_protection_threshold: false,
        };
        let p =
            encode_push(&serde_json::to_string(&ServiceInfo::build(&key, "", &small, NameForm::Grouped)).unwrap(), 7)
                .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["type"], "dom");
        let inner: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner["name"], "DEFAULT_GROUP@@s");

        let many: Vec<Instance> = (0..40).map(|i| Instance::new(format!("10.0.0.{i}"), 80, "DEFAULT", true)).collect();
        let big = Selection { hosts: many.into_iter().map(Into::into).collect(), reach_protection_threshold: false };
        let p = encode_push(&serde_json::to_string(&ServiceInfo::build(&key, "", &big, NameForm::Grouped)).unwrap(), 8)
            .unwrap();
        assert_eq!(&p[..2], &[0x1f, 0x8b]);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&p[..]).read_to_string(&mut out).unwrap();
        assert!(out.contains("\"lastRefTime\":8"));
    }
}
