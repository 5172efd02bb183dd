//! Resource Manager v3: the project number (service agents are named by it).

use reqwest::Method;
use serde::Deserialize;

use super::{Api, Call, Gcp, GcpError};

#[derive(Deserialize)]
struct Project {
    /// `projects/123456789012`.
    name: String,
}

impl Gcp {
    /// The number of the client's project.
    pub async fn project_number(&self) -> Result<u64, GcpError> {
        let url = self.url(Api::ResourceManager, &format!("projects/{}", self.project));
        let p: Project = self
            .call::<(), _>(
                Call::new(Api::ResourceManager, "projects.get"),
                Method::GET,
                &url,
                None,
            )
            .await?;
        p.name
            .strip_prefix("projects/")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| GcpError::Decode {
                method: "GET".into(),
                url,
                status: 200,
                message: format!("project name \"{}\" is not projects/NUMBER", p.name),
            })
    }
}
