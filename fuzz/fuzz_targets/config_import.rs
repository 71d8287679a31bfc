//! The config import zip (`POST /v1/cs/configs?import=true`, console import): Nacos v1 and v2
//! archives, metadata files included; then the key check the import handler runs per entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_core::configs::archive;
use registry_proto::model::ConfigKey;

fuzz_target!(|data: &[u8]| {
    let Ok(configs) = archive::import(data) else { return };
    for c in configs {
        let _ = ConfigKey::new("", &c.group, &c.data_id);
    }
});
