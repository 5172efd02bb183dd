//! `gclb-acme`: keeps ACME certificates on Google Cloud HTTPS load balancers valid.
//!
//! The shape is two reconcilers (see `docs/architecture.md`): desired state from the
//! configuration plus observed state from GCP, ACME and the state directory give a
//! plan (a pure function); apply executes it one step at a time.

pub mod acme;
pub mod certs;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod gcp;
pub mod lb;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod preflight;
pub mod progress;
pub mod reconcile;
pub mod schedule;
pub mod stack;
pub mod state;
pub mod trust;
