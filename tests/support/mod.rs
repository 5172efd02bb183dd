//! Shared test support: real peers started on free ports, stopped on drop.
#![allow(dead_code)]

pub mod acme2certifier;
pub mod bad_ca;
pub mod challtestsrv;
pub mod fake_acme;
pub mod fleet;
pub mod gcp;
pub mod lb;
pub mod pebble;

use std::net::{SocketAddr, TcpListener};

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests that
/// start their server right away).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}
