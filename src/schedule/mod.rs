//! When to renew: renewal timing, back-off and maintenance windows, and the
//! per-certificate book of attempts they are computed from.

pub(crate) mod book;
pub(crate) mod timing;
pub(crate) mod window;

pub use book::Book;
pub use timing::{AriWindow, Validity, backoff, permanent_failure_wait};
pub use window::Cron;
