//! Fuzz target: see `fuzz/checks/chain.rs` for what is checked.
#![no_main]

#[path = "../checks/chain.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
