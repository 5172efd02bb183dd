//! ACME engine.
