//! The metadata text form Nacos clients send, shared by both transports: instance and service
//! metadata over HTTP, gray labels over HTTP and gRPC. A JSON object (non-string values are
//! stringified) or the legacy `k1=v1,k2=v2`; anything else is refused.

use std::collections::BTreeMap;

/// Why a metadata text was refused; the message is shown to the client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MetadataError(String);

/// Parses a metadata text (see the module doc).
pub fn parse(raw: &str) -> Result<BTreeMap<String, String>, MetadataError> {
    let raw = raw.trim();
    if raw.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| MetadataError(format!("metadata is not valid JSON: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(MetadataError("metadata must be a JSON object".into()));
        };
        return Ok(map
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect());
    }
    let mut out = BTreeMap::new();
    for pair in raw.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| MetadataError(format!("metadata entry '{pair}' is neither JSON nor k=v")))?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_accepts_json_and_pairs() {
        let m = parse(r#"{"a":"1","n":2}"#).unwrap();
        assert_eq!((m["a"].as_str(), m["n"].as_str()), ("1", "2"));
        let m = parse("a=1, b=2").unwrap();
        assert_eq!(m["b"], "2");
        assert!(parse("{broken").is_err());
        assert!(parse("novalue").is_err());
        assert!(parse("[1]").is_err());
    }
}
