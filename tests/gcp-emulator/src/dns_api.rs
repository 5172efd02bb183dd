//! Cloud DNS v1: managed zones, record sets and changes.

use crate::state::Shared;

/// Per-project Cloud DNS state.
#[derive(Default)]
pub struct State {}

/// The `/dns/v1/` routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
}
