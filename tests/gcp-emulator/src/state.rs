//! The emulator's state: one `World` of projects behind one lock.
//!
//! Handlers take the lock, do their work and release it before any `.await`, so a
//! plain `std::sync::Mutex` is right (and never poisoned in practice: a panicking
//! handler is a bug the tests would see; we still recover the data if it happens).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::error::ApiError;
use crate::latency::LatencyModel;
use crate::{Config, admin, authz, cloud, compute, discovery, dns, storage};

/// Shared handle given to every handler.
pub type Shared = Arc<Inner>;

/// Everything the emulator knows.
pub struct Inner {
    pub config: Config,
    pub discovery: discovery::Discovery,
    pub admin: admin::Admin,
    world: Mutex<World>,
    settings: Mutex<Settings>,
    latency: Mutex<Option<LatencyModel>>,
    /// API requests seen, numbering the jitter draws.
    calls: AtomicU64,
}

/// Delays that tests may change at run time through `/emulator/settings`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub operation_delay: Duration,
    pub dns_change_delay: Duration,
}

impl Inner {
    pub fn new(config: Config, discovery: discovery::Discovery) -> Self {
        let mut world = World::default();
        world.add_project(&config.project, config.project_number);
        let settings = Settings {
            operation_delay: config.operation_delay,
            dns_change_delay: config.dns_change_delay,
        };
        Inner {
            admin: admin::Admin::new(config.dns_servers),
            config,
            discovery,
            world: Mutex::new(world),
            settings: Mutex::new(settings),
            latency: Mutex::new(None),
            calls: AtomicU64::new(0),
        }
    }

    /// Locks the world.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The latency model in force, if any.
    pub fn latency(&self) -> Option<LatencyModel> {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts a latency model in force (or, with `None`, goes back to the plain
    /// delays of the configuration and lag-free name servers). The model's Cloud
    /// DNS change duration, default operation duration and name-server lags go
    /// into the settings the APIs already read; the jitter sequence restarts.
    pub fn set_latency(&self, model: Option<LatencyModel>) {
        let servers = self.admin.dns_lags().len();
        match &model {
            Some(m) => {
                self.update_settings(|s| {
                    s.dns_change_delay = Duration::from_millis(m.dns_change_ms);
                    if let Some(d) = m.operation("default") {
                        s.operation_delay = d;
                    }
                });
                for i in 0..servers {
                    self.admin.set_dns_lag(i, m.dns_lag(i));
                }
            }
            None => {
                self.update_settings(|s| {
                    s.dns_change_delay = self.config.dns_change_delay;
                    s.operation_delay = self.config.operation_delay;
                });
                for i in 0..servers {
                    self.admin.set_dns_lag(i, Duration::ZERO);
                }
            }
        }
        self.calls.store(0, Ordering::SeqCst);
        *self.latency.lock().unwrap_or_else(|p| p.into_inner()) = model;
    }

    /// The round trip of the next API request under the model (zero without one).
    pub fn next_call_latency(&self) -> Duration {
        match self.latency() {
            Some(m) => m.call_latency(self.calls.fetch_add(1, Ordering::SeqCst)),
            None => Duration::ZERO,
        }
    }

    /// How long an operation of this kind takes: the model's figure, else the
    /// configured operation delay.
    pub fn operation_delay(&self, kind: &str) -> Duration {
        self.latency()
            .and_then(|m| m.operation(kind))
            .unwrap_or_else(|| self.settings().operation_delay)
    }

    pub fn update_settings(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.settings.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// All projects.
#[derive(Default)]
pub struct World {
    pub projects: BTreeMap<String, Project>,
    /// Monotonic counter for numeric resource ids, operation names, change ids.
    pub next_id: u64,
}

impl World {
    pub fn add_project(&mut self, id: &str, number: u64) {
        self.projects
            .entry(id.to_string())
            .or_insert_with(|| Project::new(id, number));
    }

    /// The project, or Google's 404 for an unknown one. Requests may name a project
    /// by id or by number.
    pub fn project(&mut self, id: &str) -> Result<&mut Project, ApiError> {
        let key = if self.projects.contains_key(id) {
            Some(id.to_string())
        } else {
            self.projects
                .values()
                .find(|p| p.number.to_string() == id)
                .map(|p| p.id.clone())
        };
        match key.and_then(|k| self.projects.get_mut(&k)) {
            Some(p) => Ok(p),
            None => Err(ApiError::not_found(format!("projects/{id}"))),
        }
    }

    /// A fresh numeric id (also used for operation and change names).
    pub fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        // Google ids are large opaque numbers; keep ours recognisably so.
        1_000_000_000_000 + self.next_id
    }
}

/// One project's resources, one field per API family.
pub struct Project {
    pub id: String,
    pub number: u64,
    pub compute: compute::State,
    pub dns: dns::State,
    pub cloud: cloud::State,
    /// Cloud Storage buckets and objects.
    pub storage: storage::State,
    /// What the caller may do here, and what requests needed.
    pub iam: authz::Iam,
}

impl Project {
    pub fn new(id: &str, number: u64) -> Self {
        Project {
            id: id.to_string(),
            number,
            compute: compute::State::default(),
            dns: dns::State::default(),
            cloud: cloud::State::default(),
            storage: storage::State::default(),
            iam: authz::Iam::default(),
        }
    }
}

/// RFC 3339 with milliseconds and the `-07:00`-style offset Compute uses.
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]-07:00"
    );
    // Compute reports Pacific time with an explicit offset; the instant is what
    // matters, so render UTC shifted by -7h to keep the shape honest.
    let shifted = t.to_offset(time::macros::offset!(-7));
    shifted.format(&fmt).unwrap_or_else(|_| String::new())
}

/// RFC 3339 in UTC with a `Z` suffix, as Cloud DNS, Run and IAP use.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| String::new())
}
