//! When to renew: renewal timing, back-off and maintenance windows, and the
//! per-certificate book of attempts they are computed from.

pub mod book;
pub mod timing;
pub mod window;
