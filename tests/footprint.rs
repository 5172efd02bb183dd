//! The build settings docs/footprint.md decides stay in force.

/// AWS-LC is built without its CPU-jitter entropy source
/// (`.cargo/config.toml`): it seeds from the kernel (getrandom) and RDRAND/RNDR
/// instead, which saves ~390 M instructions at every process start. Fails when
/// a build turns it back on (`AWS_LC_SYS_NO_JITTER_ENTROPY=0`).
#[test]
fn aws_lc_seeds_without_cpu_jitter_entropy() {
    // Random bytes first, so the generator and its entropy source are set up.
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("random bytes");
    assert_ne!(bytes, [0u8; 32]);
    // SAFETY: takes no arguments and only reads which source AWS-LC selected.
    let jitter = unsafe { aws_lc_sys::FIPS_is_entropy_cpu_jitter() };
    assert_eq!(
        jitter, 0,
        "AWS-LC seeds from CPU jitter: AWS_LC_SYS_NO_JITTER_ENTROPY is not 1 in this build (docs/footprint.md)"
    );
}
