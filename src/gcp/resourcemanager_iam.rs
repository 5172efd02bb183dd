//! Resource Manager v3 `projects.testIamPermissions`: which of a list of IAM
//! permissions the caller holds on the project. It needs no permission of its own,
//! so it is how `check` finds what is missing before the daemon trips over it.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{Api, Call, Gcp, GcpError};

/// Google refuses longer lists in one request.
const MAX_PER_REQUEST: usize = 100;

#[derive(Serialize)]
struct TestRequest<'a> {
    permissions: &'a [String],
}

#[derive(Deserialize)]
struct TestResponse {
    /// proto3 JSON omits the field when nothing is granted.
    #[serde(default)]
    permissions: Vec<String>,
}

impl Gcp {
    /// The subset of `permissions` the caller holds on the client's project.
    pub async fn test_project_permissions(
        &self,
        permissions: &[String],
    ) -> Result<Vec<String>, GcpError> {
        let url = self.url(
            Api::ResourceManager,
            &format!("projects/{}:testIamPermissions", self.project),
        );
        let mut granted = Vec::new();
        for chunk in permissions.chunks(MAX_PER_REQUEST) {
            // A read despite the POST: repeating it is harmless.
            let r: TestResponse = self
                .call(
                    Call::new(Api::ResourceManager, "projects.testIamPermissions"),
                    Method::POST,
                    &url,
                    Some(&TestRequest { permissions: chunk }),
                )
                .await?;
            granted.extend(r.permissions);
        }
        Ok(granted)
    }
}
