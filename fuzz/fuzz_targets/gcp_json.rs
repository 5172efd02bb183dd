//! Fuzz target: see `fuzz/checks/gcp_json.rs` for what is checked.
#![no_main]

#[path = "../checks/gcp_json.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
