//! The v1 long-poll listener's `Listening-Configs` field, as the form parser hands it over.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_core::api::http::config_v1::parse_listening;
use registry_proto::http::Params;

fuzz_target!(|data: &[u8]| {
    // The field arrives in a form body, decoded once by `Params` and once more by the parser.
    let Ok(p) = Params::decode(b"", data) else { return };
    if let Some(raw) = p.values_raw("Listening-Configs") {
        let _ = parse_listening(raw);
    }
    if let Ok(raw) = std::str::from_utf8(data) {
        let _ = parse_listening(raw);
    }
});
