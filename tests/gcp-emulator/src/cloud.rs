//! IAP v1, Cloud Run Admin v2, Service Usage v1beta1 and Resource Manager v3.

use crate::state::Shared;

/// Per-project state of these APIs.
#[derive(Default)]
pub struct State {}

/// The `/v1/`, `/v2/`, `/v1beta1/`, `/v3/` routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
}
