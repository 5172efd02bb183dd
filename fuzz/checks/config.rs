//! The configuration loader on arbitrary UTF-8: `Config::from_toml` must never panic,
//! and a configuration it accepts must survive a round trip through TOML (serialise,
//! load again: accepted, and serialised identically).
//!
//! Shared by the fuzz target `fuzz/fuzz_targets/config.rs` and the seed replay test
//! `tests/fuzz_seeds.rs`, so both check exactly the same properties.

use gclb_acme::config::Config;

/// Runs every check on one input; panics when a property does not hold.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml(text, "fuzz.toml", None) else {
        return;
    };
    let Ok(again) = toml::to_string(&config) else {
        return;
    };
    let reloaded = match Config::from_toml(&again, "fuzz.toml", None) {
        Ok(c) => c,
        Err(e) => panic!(
            "accepted config does not reload: {e}\n--- input\n{text}\n--- serialised\n{again}"
        ),
    };
    let twice = toml::to_string(&reloaded).expect("serialises");
    assert_eq!(again, twice, "round trip changed the configuration");
}
