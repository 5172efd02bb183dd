//! The `gclb-acme` binary: the command line is its own leaf here; the library
//! below it never imports it.

use clap::Parser;

mod cli;
mod commands;

fn main() -> std::process::ExitCode {
    one_malloc_arena();
    let cli = cli::Cli::parse();
    gclb_acme::logging::init(cli.log_format, cli.verbose, cli.quiet);
    commands::run(cli)
}

/// glibc gives each thread that allocates its own arena and keeps what it
/// frees there: with the runtime's workers that was 0.5 MB of the daemon's idle
/// RSS (docs/footprint.md). The work is network waits, so one shared arena
/// costs no measurable contention. Before any thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    // glibc's <malloc.h>: M_ARENA_MAX.
    const M_ARENA_MAX: std::ffi::c_int = -8;
    unsafe extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    // SAFETY: mallopt only sets a tunable of glibc's allocator; called before
    // any other thread is spawned. A failure (0) leaves the default in place.
    unsafe {
        mallopt(M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}
