//! Compute Engine v1: the load-balancer resources and their Operations.

use crate::state::Shared;

/// Per-project Compute state.
#[derive(Default)]
pub struct State {}

/// The `/compute/v1/` routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
}
