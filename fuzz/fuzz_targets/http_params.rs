//! HTTP query and form parsing (`Params`), then every typed accessor the Open API handlers use.
//! Input: `query` and `form` split at the first newline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_proto::http::{Params, parse_bool, percent_decode};

fuzz_target!(|data: &[u8]| {
    let (query, form) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let _ = percent_decode(query);
    let Ok(p) = Params::decode(query, form) else { return };
    // Query values win over form values: every query pair that decodes is what `Params` holds.
    if let Ok(q) = Params::decode(query, b"") {
        for (k, v) in q.pairs() {
            assert_eq!(p.values_raw(k), Some(v), "query value of {k:?} lost to the form");
        }
    }
    let _ = p.service_key();
    let _ = p.cluster();
    let _ = p.namespace();
    let _ = p.metadata("metadata");
    let _ = p.bool_or(&["healthyOnly", "ephemeral", "enabled"], false);
    let _ = p.num::<u16>("port");
    let _ = p.num::<f64>("weight");
    let _ = p.num::<u64>("pageNo");
    for (_, v) in p.pairs() {
        let _ = parse_bool(v);
    }
});
