//! Fuzz target: see `fuzz/checks/dns_names.rs` for what is checked.
#![no_main]

#[path = "../checks/dns_names.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
