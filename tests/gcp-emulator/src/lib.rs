//! `gcp-emulator`: a local Google Cloud for tests.
//!
//! One HTTP listener serves every API under its own path prefix, as Google's hosts do
//! (`/compute/v1/`, `/dns/v1/`, `/v1/` IAP, Cloud Run v1, Resource Manager v1 and
//! Service Usage v1, `/v2/` Cloud Run, `/apis/` Cloud Run v1's Knative paths,
//! `/v1beta1/` Service Usage, `/v3/` Resource Manager, `/computeMetadata/v1/`).
//! It also answers requests sent to it as an HTTP proxy (absolute-form URIs), so a
//! client that derives other host names, such as gcloud's regional Cloud Run
//! `REGION-HOST`, still reaches it on loopback. Plus `/emulator/` for
//! fault injection and introspection, with IAM enforced on every API request
//! (see [`authz`]). A set of authoritative DNS servers (UDP and
//! TCP) serves the public zones held by the Cloud DNS API, each with its own
//! propagation lag.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let emu = gcp_emulator::Emulator::start(gcp_emulator::Config::default()).await?;
//! let base = emu.base_url(); // e.g. "http://127.0.0.1:40123/"
//! let dns = emu.dns_addrs();  // one address per simulated name server
//! # Ok(()) }
//! ```

pub mod admin;
pub mod authz;
pub mod b64;
pub mod cloud;
pub mod compute;
pub mod discovery;
pub mod dns;
pub mod error;
pub mod iam_policy;
pub mod iap;
pub mod latency;
pub mod metadata;
pub mod resourcemanager;
pub mod run;
pub mod serviceusage;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::{ApiError, ApiResult};
pub use state::{Inner, Project, Shared, World};

/// How to start an emulator.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Address of the first authoritative DNS server; port 0 picks a free port.
    pub dns_listen: SocketAddr,
    /// How many simulated authoritative name servers to run (each on its own port,
    /// like Google's four `ns-cloud-*` servers).
    pub dns_servers: usize,
    /// The project that exists from the start.
    pub project: String,
    /// Its project number.
    pub project_number: u64,
    /// How long a compute Operation takes from PENDING to DONE.
    pub operation_delay: Duration,
    /// How long a Cloud DNS change stays `pending`.
    pub dns_change_delay: Duration,
    /// When set, every API except the metadata server and `/emulator/` requires
    /// `Authorization: Bearer <token>`; the metadata server hands out this token.
    pub required_token: Option<String>,
    /// A latency model from the start (`None`: the plain delays above).
    pub latency: Option<latency::LatencyModel>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            dns_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            dns_servers: 2,
            project: "demo-project".to_string(),
            project_number: 123_456_789_012,
            operation_delay: Duration::from_millis(30),
            dns_change_delay: Duration::from_millis(30),
            required_token: None,
            latency: None,
        }
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot load the discovery documents: {0}")]
    Discovery(String),
}

/// A running emulator. Dropping it stops every listener.
pub struct Emulator {
    http_addr: SocketAddr,
    dns_addrs: Vec<SocketAddr>,
    shared: Shared,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Starts the HTTP and DNS listeners and returns once they accept connections.
    pub async fn start(config: Config) -> Result<Emulator, StartError> {
        let discovery = discovery::Discovery::load().map_err(StartError::Discovery)?;
        let shared: Shared = Arc::new(Inner::new(config.clone(), discovery));
        if config.latency.is_some() {
            shared.set_latency(config.latency.clone());
        }
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let http_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let app = router(shared.clone());
        let mut rx_http = rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx_http.wait_for(|stop| *stop).await;
                })
                .await;
        }));

        let (dns_addrs, dns_tasks) =
            dns::server::start(shared.clone(), config.dns_listen, config.dns_servers, rx)
                .await
                .map_err(|(addr, source)| StartError::Bind { addr, source })?;
        tasks.extend(dns_tasks);

        Ok(Emulator {
            http_addr,
            dns_addrs,
            shared,
            shutdown,
            tasks,
        })
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// `http://host:port/`: the base URL that stands in for every Google API host.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.http_addr)
    }

    /// One address per simulated authoritative name server, in order.
    pub fn dns_addrs(&self) -> Vec<SocketAddr> {
        self.dns_addrs.clone()
    }

    /// The state, for tests that seed or inspect it directly.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Stops the listeners and waits for their tasks.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Every API on one router, wrapped in the admin layer (request log, faults, auth).
pub fn router(shared: Shared) -> axum::Router {
    axum::Router::new()
        .merge(compute::router())
        .merge(dns::router())
        .merge(cloud::router())
        .merge(run::router())
        .merge(serviceusage::router())
        .merge(resourcemanager::router())
        .merge(metadata::router())
        .merge(admin::router())
        .merge(authz::router())
        .fallback(admin::not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            admin::middleware,
        ))
        .with_state(shared)
}
