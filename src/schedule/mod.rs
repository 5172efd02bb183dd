//! When to renew: renewal timing, back-off and maintenance windows.

pub mod timing;
pub mod window;
