//! A mappings file, as `lms-bridge mappings import` reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lms_bridge_backend::commands::parse_mappings;
use lms_bridge_backend::shared::ProductMapping;
use serde::Serialize;

#[derive(Serialize)]
struct File<'a> {
    product: &'a [ProductMapping],
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(mappings) = parse_mappings(text) else { return };
    // What was accepted, written out again, is accepted again as the same mappings.
    let again = toml::to_string(&File { product: &mappings }).expect("accepted mappings serialize");
    match parse_mappings(&again) {
        Ok(read) => assert_eq!(read, mappings, "changed through TOML:\n{again}"),
        Err(e) => panic!("accepted mappings, written out, are refused ({e}):\n{again}"),
    }
});
