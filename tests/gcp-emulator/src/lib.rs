//! `gcp-emulator`: a local Google Cloud for tests.
//!
//! One HTTP listener serves every API under its own path prefix, as Google's hosts do
//! (`/compute/v1/`, `/dns/v1/`, `/v1/` IAP, Cloud Run v1, Resource Manager v1 and
//! Service Usage v1, `/v2/` Cloud Run, `/apis/` Cloud Run v1's Knative paths,
//! `/v1beta1/` Service Usage, `/v3/` Resource Manager, `/computeMetadata/v1/`,
//! `/storage/v1/` Cloud Storage with its `/upload/` and `/download/` services).
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
//!
//! # Layout: one shape per API
//!
//! Each Google API is a module `src/<api>/` (or a single `src/<api>.rs` while it is
//! short): `mod.rs` holds the module docs, `router()` (its own path prefixes) and
//! the handlers' plumbing; `state.rs` the per-project state; one file per resource
//! when the module grows (see [`compute`]: `url_maps.rs`, `backend_services.rs`,
//! `negs.rs`, `addresses.rs`, `forwarding_rules.rs`, `operations.rs`, `list.rs`;
//! [`dns`]: `zones.rs`, `changes.rs`, `rrsets.rs`, `server.rs`). The APIs:
//! [`compute`], [`dns`], [`iap`], [`run`] (v2, and `run/v1.rs` for the v1 subset
//! gcloud uses), [`serviceusage`], [`resourcemanager`], [`storage`], [`certificatemanager`]
//! (under the shared `/v1/` prefix; `/emulator/served` tells what a proxy serves). What they share is apart:
//! [`cloud`] (the `/v1/` prefix IAP, Cloud Run v1, Service Usage v1 and Resource
//! Manager v1 have in common, Google's AIP-193 errors, body parsing, each
//! project's state of these APIs), [`iam_policy`] (IAM policies on resources),
//! [`state`] (the `World` of projects behind one lock), [`admin`] (the
//! middleware, faults, request log), [`authz`] (IAM enforcement), [`latency`],
//! [`discovery`], [`metadata`] (the metadata server).
//!
//! # Recipe: adding a Google API
//!
//! 1. **Discovery document.** Put Google's published document in `discovery/`
//!    (from the `google-api-python-client` wheel; a reduced one keeps only the
//!    methods served, unchanged otherwise) and add a row to
//!    `discovery/SOURCES.md`. Register it in [`discovery`]'s `DOCS` with the path
//!    prefix its `servicePath` lives under. The middleware then resolves every
//!    request to a discovery method id (the request log, faults and IAM key on
//!    it) and validates request bodies against its schemas, so paths, fields and
//!    enums must be the document's.
//! 2. **Module in the shape.** `src/<api>/mod.rs` with module docs (what is
//!    served, which semantics are Google's and where they are documented), a
//!    `pub fn router() -> axum::Router<Shared>` for the API's own prefixes, and
//!    handlers returning `ApiResult<Json<Value>>` with Google's errors
//!    ([`ApiError`]: code, reason, message as Google's; `.aip193()` for the
//!    AIP-193 APIs). Declare it `pub mod <api>;` here.
//! 3. **Routing.** Merge its router in [`router`]. A prefix several APIs share
//!    (`/v1/`) is dispatched by path in [`cloud`]; add the API's branch there
//!    rather than a second route on the same prefix (axum rejects overlaps).
//!    Add the path to `serviceusage::api_for_path` (disabled-API 403s) and,
//!    if it is neither `/compute/` nor `/dns/`, check `admin::style_for` and
//!    `authz`'s `family` give it the right error style.
//! 4. **State.** A `State` struct with `#[derive(Default)]` in the module, a
//!    field for it on [`state::Project`] (or on [`cloud::State`] for an
//!    AIP-193 API). Take the world's lock, work, release it before any `.await`.
//!    A mutation works on a copy and commits only on success, so a rejected
//!    request or an injected operation fault changes nothing.
//! 5. **IAM.** One row per discovery method id in [`authz::TABLE`] with the
//!    permission(s) Google's reference lists; permissions on *other* resources
//!    a request names go in `authz::referenced`, and `authz::resource_of` names
//!    the resource checked. A method without a row is not checked at all; the
//!    unit test in `authz.rs` only proves each row names a real method id.
//! 6. **Fault injection.** Faults match by method id or path prefix in the
//!    middleware, nothing to add for `error`, `corrupt` and `delay`. For
//!    `operation` faults, take `Option<Extension<admin::FailOperation>>` in the
//!    mutating handlers and end the long-running operation with that error,
//!    changing nothing (see `serviceusage::handle`, `run`).
//! 7. **Latency.** Every request already gets the model's round trip. A
//!    long-running operation takes `shared.operation_delay(kind)`: give the API
//!    its own `kind` in [`latency::LatencyModel`]'s profiles if Google's timing
//!    differs, and document the source in `docs/benchmarks.md`.
//! 8. **Tests.** Rust integration tests in `tests/<api>.rs`; a case in
//!    `conformance/conformance_test.py`, driving the API with Google's own Python
//!    client built from the same discovery document (`conformance/run.sh`); and,
//!    if gcloud uses the API, a case in `conformance/gcloud_test.py`
//!    (`conformance/gcloud.sh`), plus any path gcloud takes (host names, v1
//!    subsets) in `tests/gcloud_compat.rs`.

pub mod admin;
pub mod authz;
pub mod b64;
pub mod certificatemanager;
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
pub mod storage;

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
        .merge(storage::router())
        .merge(metadata::router())
        .merge(admin::router())
        .merge(authz::router())
        .merge(certificatemanager::serving::router())
        .fallback(admin::not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            admin::middleware,
        ))
        .with_state(shared)
}
