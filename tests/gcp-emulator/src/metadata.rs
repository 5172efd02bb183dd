//! The GCE metadata server: token, project-id, numeric-project-id.

use crate::state::Shared;

/// The `/computeMetadata/v1/` routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
}
