//! `gclb-acme run`: keeps every configured certificate valid for ever.
//!
//! The loop sleeps until the next certificate is due (no polling), works on due
//! certificates with bounded concurrency in tasks of their own (so the loop stays
//! responsive to signals and the watchdog), and records every outcome in the
//! state directory and the metrics. SIGHUP reloads the configuration (a broken
//! one is refused and the old one kept); SIGTERM lets the steps in flight finish
//! for a while, then abandons them safely (the pipeline resumes after a restart)
//! and exits 0.

mod error;
pub(crate) mod pipeline;
pub(crate) mod plan;

use std::collections::{BTreeMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rand::RngExt;
use time::OffsetDateTime;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::config::{CertificateConfig, Config};
use crate::metrics::Metrics;
use crate::schedule::book::{AriState, Book, LastError};
use crate::schedule::timing::{self, AriWindow, Validity};
use crate::schedule::window::Cron;
use crate::state::State;
use plan::{Due, Inputs, Why};

pub use error::DaemonError;
pub use pipeline::Factory;

/// What is served for a certificate, as the renewer sees it.
#[derive(Clone, Debug, Default)]
pub struct Assessment {
    /// The served certificate's validity (earliest over the proxies).
    pub validity: Option<Validity>,
    /// Missing, foreign, names or key type changed, or an issued certificate
    /// waiting to be installed: act now.
    pub needs_action: bool,
    /// ARI id of the served certificate of ours, when it has one.
    pub ari_id: Option<String>,
    /// One line for the log.
    pub summary: String,
}

/// A failed attempt, classified.
#[derive(Clone, Debug)]
pub struct Failure {
    pub message: String,
    /// Short label for metrics: `acme`, `dns`, `gcp:<reason>`, `config`, ...
    pub reason: String,
    pub retryable: bool,
    /// The server asked us to wait this long.
    pub retry_after: Option<Duration>,
}

/// The work the daemon schedules. Implemented over the issuance and install
/// pipeline; tests use their own.
pub trait Worker: Send + Sync + 'static {
    /// Reads what is served now.
    fn observe(
        &self,
        cert: &CertificateConfig,
    ) -> impl Future<Output = Result<Assessment, Failure>> + Send;
    /// Renews (issue when due or `force`, install what is pending) and returns the
    /// new observation.
    fn renew(
        &self,
        cert: &CertificateConfig,
        force: bool,
    ) -> impl Future<Output = Result<Assessment, Failure>> + Send;
    /// [`renew`](Self::renew) in two halves: returns once the new certificate
    /// is served everywhere, with what is left of the work (deleting what it
    /// replaced) as [`Renewed::Served`], which the daemon runs outside its
    /// concurrency slots. By default the whole renewal at once.
    fn renew_until_served(
        &self,
        cert: &CertificateConfig,
        force: bool,
    ) -> impl Future<Output = Result<Renewed, Failure>> + Send {
        async move { self.renew(cert, force).await.map(Renewed::Done) }
    }
    /// The CA's renewal window for an ARI id and how long to wait before asking
    /// again; `None` when the CA has no ARI.
    fn renewal_info(
        &self,
        ari_id: &str,
    ) -> impl Future<Output = Result<Option<(AriWindow, Duration)>, Failure>> + Send;
}

/// How far [`Worker::renew_until_served`] got.
pub enum Renewed {
    /// All done: what is served now.
    Done(Assessment),
    /// Served everywhere; the rest of the work, ending with what is served.
    Served(Rest),
}

/// The rest of a renewal once the new certificate is served.
pub type Rest = std::pin::Pin<Box<dyn Future<Output = Result<Assessment, Failure>> + Send>>;

/// Builds the renewer for a configuration (at start and on every reload).
pub trait WorkerFactory: Send + Sync + 'static {
    type R: Worker;
    fn build(&self, config: &Config) -> impl Future<Output = Result<Self::R, DaemonError>> + Send;
    /// The state the daemon keeps its bookkeeping in: by default the
    /// configured location opened without Google Cloud credentials (a
    /// directory); the real factory opens a bucket too.
    fn state(&self, config: &Config) -> impl Future<Output = Result<State, DaemonError>> + Send {
        let opened = crate::state::State::from_config(&config.state, None);
        let dir = PathBuf::from(config.state.location());
        async move {
            opened.map_err(|e| DaemonError::State {
                dir,
                source: e.into(),
            })
        }
    }
}

/// A finished task.
enum Done {
    Renew(Result<Assessment, Failure>),
    /// Served; the rest is to run outside the concurrency slots.
    Served(Rest),
    /// The rest of a renewal, finished.
    Rest(Result<Assessment, Failure>),
    Ari(String, Result<Option<(AriWindow, Duration)>, Failure>),
}

/// A task that panicked, as a retryable failure (label `panic`), so its
/// certificate is retried with back-off like any other failure.
fn panicked(what: &str, payload: Box<dyn std::any::Any + Send>) -> Failure {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    Failure {
        message: format!("the {what} task panicked: {message}"),
        reason: "panic".into(),
        retryable: true,
        retry_after: None,
    }
}

/// The rest of a renewal, a panic in it returned as a failure.
async fn rest_guarded(rest: Rest) -> Result<Assessment, Failure> {
    AssertUnwindSafe(rest)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(panicked("clean-up", p)))
}

/// Settings of the loop that tests shorten.
#[derive(Clone, Debug)]
pub struct Options {
    /// Longest sleep: the loop wakes at least this often (watchdog, summaries).
    pub max_sleep: Duration,
    /// How long SIGTERM waits for steps in flight before abandoning them.
    pub shutdown_grace: Duration,
    /// How often the one-line-per-certificate summary is logged.
    pub summary_every: Duration,
    /// Longest wait after a non-retryable failure (shorter as expiry nears, see
    /// [`timing::permanent_failure_wait`]; a config change ends it early).
    pub permanent_failure_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_sleep: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(60),
            summary_every: Duration::from_secs(86_400),
            permanent_failure_wait: Duration::from_secs(24 * 3600),
        }
    }
}

/// The heap at rest: glibc keeps what a pass freed (HTTP connections, JSON,
/// certificates parsed) in its heap, counted in the daemon's RSS until it is
/// reused, which at rest can be hours. It is handed back to the kernel
/// (`malloc_trim`) when the daemon comes to rest, and once more when the
/// pass's idle HTTP connections have been dropped by the pool (they expire
/// after [`crate::gcp::POOL_IDLE_TIMEOUT`], checked every as long).
#[derive(Clone, Copy, Debug)]
enum AtRest {
    /// Tasks are running.
    Working,
    /// At rest; the second trim is due then.
    TrimAt(tokio::time::Instant),
    /// At rest and trimmed twice.
    Trimmed,
}

impl AtRest {
    /// Coming to rest: trims now, and schedules the second trim.
    fn began() -> AtRest {
        release_free_memory();
        AtRest::TrimAt(
            tokio::time::Instant::now()
                + crate::gcp::POOL_IDLE_TIMEOUT * 2
                + Duration::from_secs(5),
        )
    }

    /// At rest, about to sleep `sleep_for`: trims if the second trim is due,
    /// and shortens the sleep to wake for it otherwise.
    fn trim(&mut self, sleep_for: Duration) -> Duration {
        match *self {
            AtRest::TrimAt(at) => {
                let now = tokio::time::Instant::now();
                if now >= at {
                    release_free_memory();
                    *self = AtRest::Trimmed;
                    sleep_for
                } else {
                    sleep_for.min(at - now)
                }
            }
            AtRest::Working => {
                *self = AtRest::began();
                self.trim(sleep_for)
            }
            AtRest::Trimmed => sleep_for,
        }
    }
}

/// Hands the heap's free pages back to the kernel (glibc's `malloc_trim`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes the allocator's own locks and only returns
    // free pages (madvise) and the heap's free top to the kernel; no pointer
    // of ours is involved. Its result (whether memory was released) is moot.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// Observations in flight during the first pass (at least; `daemon.concurrency`
/// when larger). Reads only, so more than renewals, but not all at once.
const FIRST_PASS_CONCURRENCY: usize = 8;

/// Per-certificate state in memory.
struct Slot {
    cert: CertificateConfig,
    book: Book,
    observation: Option<Assessment>,
    running: bool,
}

fn fingerprint(c: &CertificateConfig) -> String {
    let mut d = c.domains.clone();
    d.sort();
    let mut p = c.target_https_proxies.clone();
    p.sort();
    format!(
        "{}|{}|{}|{:?}",
        d.join(","),
        c.key_type,
        p.join(","),
        c.zone
    )
}

fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Runs the daemon until SIGTERM/SIGINT; `config_path` is re-read on SIGHUP.
///
/// In order: open the state directory, build the renewer (`factory`), observe
/// every certificate once (READY to systemd only then), then loop: start what
/// is due (at most `daemon.concurrency` at a time), sleep until the next due
/// moment, a finished task, a signal, the watchdog or the periodic summary.
/// SIGTERM/SIGINT end the loop; steps in flight get `options.shutdown_grace`
/// and are then abandoned (they resume from the state directory at the next
/// start). Errors only before the loop runs (or a reload whose maintenance
/// window does not parse, which validation already refuses).
pub async fn run<F: WorkerFactory>(
    config_path: PathBuf,
    config: Config,
    factory: F,
    metrics: Arc<Metrics>,
    options: Options,
) -> Result<(), DaemonError> {
    let state = factory.state(&config).await?;
    let mut config = Arc::new(config);
    let mut renewer = Arc::new(factory.build(&config).await?);
    let mut window = parse_window(&config)?;
    let mut slots = make_slots(&config, &state, BTreeMap::new()).await;
    metrics.retain(&slots.keys().cloned().collect::<Vec<_>>());
    metrics.set_targets(
        config
            .certificates
            .iter()
            .map(|c| (c.name.as_str(), crate::lb::kind_of(c))),
    );
    if slots.is_empty() {
        tracing::warn!(file = %config_path.display(), "no [[certificates]] configured: nothing to do until a reload adds one");
    }
    let mut signals = Signals::install()?;
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);

    first_pass(&mut slots, &renewer, &config, &metrics).await;
    let mut rest = AtRest::began();
    metrics.set_ready();
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("watching certificates"),
    ]);
    summary(&slots, &config, window.as_ref());
    let mut next_summary = tokio::time::Instant::now() + options.summary_every;

    let mut tasks: JoinSet<(String, Done)> = JoinSet::new();
    // Tasks finishing a served renewal (clean-up): in `tasks`, but holding no
    // concurrency slot, so the next certificate does not wait for a delete.
    let mut resting = 0usize;
    loop {
        start_due(
            &mut slots,
            &mut tasks,
            resting,
            &renewer,
            &config,
            window.as_ref(),
            &metrics,
        );
        let busy = tasks.len() - resting >= config.daemon.concurrency;
        let mut sleep_for = sleep_time(&slots, busy, window.as_ref(), &options, next_summary);
        if tasks.is_empty() {
            sleep_for = rest.trim(sleep_for);
        } else {
            rest = AtRest::Working;
        }
        if let Some(w) = watchdog {
            notify(&[sd_notify::NotifyState::Watchdog]);
            sleep_for = sleep_for.min(w);
        }

        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((name, done)) = done else { continue };
                let done = match done {
                    Done::Served(rest) => {
                        // The slot stays `running` (its lock is held) until the rest ends.
                        resting += 1;
                        tasks.spawn(async move { (name, Done::Rest(rest_guarded(rest).await)) });
                        continue;
                    }
                    Done::Rest(r) => {
                        resting -= 1;
                        Done::Renew(r)
                    }
                    other => other,
                };
                let ctx = Ctx { state: &state, metrics: &metrics, config: &config, options: &options };
                task_done(&ctx, &mut slots, &mut tasks, &renewer, name, done).await;
                update_next_renewal(&metrics, &slots, window.as_ref());
                if tasks.is_empty() {
                    rest = AtRest::began();
                }
            }
            _ = tokio::time::sleep(sleep_for) => {
                if tokio::time::Instant::now() >= next_summary {
                    summary(&slots, &config, window.as_ref());
                    next_summary = tokio::time::Instant::now() + options.summary_every;
                }
                update_next_renewal(&metrics, &slots, window.as_ref());
            }
            _ = signals.hup.recv() => {
                notify(&[sd_notify::NotifyState::Reloading]);
                match reload(&config_path, &factory).await {
                    Ok((c, r)) => {
                        tracing::info!(file = %config_path.display(), certificates = c.certificates.len(), "configuration reloaded");
                        window = parse_window(&c)?;
                        let running: HashSet<String> = slots.values().filter(|s| s.running).map(|s| s.cert.name.clone()).collect();
                        slots = make_slots(&c, &state, std::mem::take(&mut slots)).await;
                        for (n, s) in slots.iter_mut() {
                            s.running = running.contains(n);
                        }
                        metrics.retain(&slots.keys().cloned().collect::<Vec<_>>());
                        metrics.set_targets(c.certificates.iter().map(|x| (x.name.as_str(), crate::lb::kind_of(x))));
                        config = Arc::new(c);
                        renewer = Arc::new(r);
                    }
                    Err(e) => {
                        tracing::error!(file = %config_path.display(), error = %e, "new configuration refused; still running the previous one");
                    }
                }
                notify(&[sd_notify::NotifyState::Ready]);
            }
            _ = signals.term.recv() => break,
            _ = signals.int.recv() => break,
        }
    }

    notify(&[sd_notify::NotifyState::Stopping]);
    let ctx = Ctx {
        state: &state,
        metrics: &metrics,
        config: &config,
        options: &options,
    };
    drain(&ctx, &mut slots, tasks).await;
    tracing::info!("stopped");
    Ok(())
}

/// The signals the loop listens to.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        let one = |kind: SignalKind, name: &'static str| {
            signal(kind).map_err(|source| DaemonError::Signal {
                signal: name,
                source,
            })
        };
        Ok(Signals {
            hup: one(SignalKind::hangup(), "SIGHUP")?,
            term: one(SignalKind::terminate(), "SIGTERM")?,
            int: one(SignalKind::interrupt(), "SIGINT")?,
        })
    }
}

/// What recording an outcome needs, besides the slots.
struct Ctx<'a> {
    state: &'a State,
    metrics: &'a Metrics,
    config: &'a Config,
    options: &'a Options,
}

/// The first observation pass: READY only once we know what is served. Bounded:
/// hundreds of certificates must not become hundreds of simultaneous requests
/// (rate limits; over HTTP/1.1 as many connections, whose buffers the
/// allocator keeps afterwards).
async fn first_pass<R: Worker>(
    slots: &mut BTreeMap<String, Slot>,
    renewer: &Arc<R>,
    config: &Config,
    metrics: &Metrics,
) {
    let mut first = JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(
        config.daemon.concurrency.max(FIRST_PASS_CONCURRENCY),
    ));
    for slot in slots.values() {
        let r = Arc::clone(renewer);
        let c = slot.cert.clone();
        let limit = Arc::clone(&limit);
        first.spawn(async move {
            // infallible: the semaphore is never closed.
            let _permit = limit.acquire_owned().await.ok();
            (c.name.clone(), r.observe(&c).await)
        });
    }
    while let Some(res) = first.join_next().await {
        let Ok((name, obs)) = res else { continue };
        if let Some(slot) = slots.get_mut(&name) {
            match obs {
                Ok(o) => {
                    record_observation(metrics, &name, &o);
                    slot.observation = Some(o);
                }
                Err(e) => {
                    tracing::warn!(certificate = %name, error = %e.message, "cannot read what the proxies serve; will retry");
                    slot.observation = None;
                }
            }
        }
    }
}

/// Starts what is due now, earliest first, up to `daemon.concurrency` tasks
/// (not counting the `resting` ones, which only clean up).
fn start_due<R: Worker>(
    slots: &mut BTreeMap<String, Slot>,
    tasks: &mut JoinSet<(String, Done)>,
    resting: usize,
    renewer: &Arc<R>,
    config: &Config,
    window: Option<&Cron>,
    metrics: &Metrics,
) {
    let now = OffsetDateTime::now_utc();
    let mut dues: Vec<(Due, String)> = slots
        .values()
        .filter(|s| !s.running)
        .map(|s| (due(s, now, window), s.cert.name.clone()))
        .collect();
    dues.sort_by_key(|(d, _)| d.at);
    for (d, name) in &dues {
        if d.at > now || tasks.len() - resting >= config.daemon.concurrency {
            break;
        }
        let Some(slot) = slots.get_mut(name) else {
            continue;
        };
        slot.running = true;
        let r = Arc::clone(renewer);
        let cert = slot.cert.clone();
        let why = d.why;
        let ari_id = slot.observation.as_ref().and_then(|o| o.ari_id.clone());
        metrics.update(name, |m| m.attempts += u64::from(why != Why::AriPoll));
        tracing::info!(certificate = %name, reason = ?why, "working on certificate");
        let name = name.clone();
        tasks.spawn(async move {
            let id = ari_id.unwrap_or_default();
            let work = async {
                if why == Why::AriPoll {
                    return Done::Ari(id.clone(), r.renewal_info(&id).await);
                }
                let force = matches!(why, Why::Renewal(_));
                match r.renew_until_served(&cert, force).await {
                    Ok(Renewed::Done(o)) => Done::Renew(Ok(o)),
                    Ok(Renewed::Served(rest)) => Done::Served(rest),
                    Err(e) => Done::Renew(Err(e)),
                }
            };
            // A panic must not leave the slot `running` for ever (the task's
            // name would be lost with it): it comes back as a retryable failure.
            let done = match AssertUnwindSafe(work).catch_unwind().await {
                Ok(done) => done,
                Err(p) if why == Why::AriPoll => Done::Ari(id, Err(panicked("ARI poll", p))),
                Err(p) => Done::Renew(Err(panicked("renewal", p))),
            };
            (name, done)
        });
    }
}

/// How long the loop may sleep: until the next idle certificate is due, the
/// next summary, or `max_sleep`. `busy`: every task slot is taken.
fn sleep_time(
    slots: &BTreeMap<String, Slot>,
    busy: bool,
    window: Option<&Cron>,
    options: &Options,
    next_summary: tokio::time::Instant,
) -> Duration {
    let next_at = slots
        .values()
        .filter(|s| !s.running)
        .map(|s| due(s, OffsetDateTime::now_utc(), window).at)
        .min();
    let mut sleep_for = next_at
        .map(duration_until)
        .unwrap_or(options.max_sleep)
        .min(options.max_sleep);
    // Something is due but every slot is busy: the next wake-up is a task
    // finishing, not the clock (no spinning).
    if busy && next_at.is_some_and(|t| t <= OffsetDateTime::now_utc()) {
        sleep_for = options.max_sleep;
    }
    let until_summary = next_summary.saturating_duration_since(tokio::time::Instant::now());
    sleep_for.min(until_summary)
}

/// Records a finished task; after a renewal that put a new certificate in
/// service, starts learning its ARI window before the slot is free again.
async fn task_done<R: Worker>(
    ctx: &Ctx<'_>,
    slots: &mut BTreeMap<String, Slot>,
    tasks: &mut JoinSet<(String, Done)>,
    renewer: &Arc<R>,
    name: String,
    done: Done,
) {
    let learn = match done {
        Done::Ari(id, res) => {
            store_ari(ctx.state, slots, &name, &id, res).await;
            None
        }
        // The loop takes these first (it counts the resting tasks).
        Done::Served(_) | Done::Rest(_) => return,
        Done::Renew(res) => {
            handle_result(
                ctx.state,
                ctx.metrics,
                slots,
                &name,
                res,
                ctx.config,
                ctx.options,
            )
            .await;
            slots.get(&name).and_then(|s| {
                let id = s.observation.as_ref()?.ari_id.clone()?;
                s.book
                    .ari
                    .as_ref()
                    .is_none_or(|a| a.cert_id != id)
                    .then_some(id)
            })
        }
    };
    match (learn, slots.get_mut(&name)) {
        // A new certificate is served: learn its ARI window first.
        (Some(id), Some(s)) => {
            let r = Arc::clone(renewer);
            tasks.spawn(async move {
                let res = r.renewal_info(&id).await;
                (name, Done::Ari(id, res))
            });
            s.running = true;
        }
        (None, Some(s)) => s.running = false,
        _ => {}
    }
}

/// At shutdown: lets the steps in flight finish for `shutdown_grace`, recording
/// their outcomes, then abandons the rest.
async fn drain(
    ctx: &Ctx<'_>,
    slots: &mut BTreeMap<String, Slot>,
    mut tasks: JoinSet<(String, Done)>,
) {
    if tasks.is_empty() {
        return;
    }
    tracing::info!(
        in_flight = tasks.len(),
        grace_s = ctx.options.shutdown_grace.as_secs(),
        "stopping: letting the steps in flight finish"
    );
    let deadline = tokio::time::sleep(ctx.options.shutdown_grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(Ok((name, Done::Renew(result) | Done::Rest(result)))) => {
                    handle_result(ctx.state, ctx.metrics, slots, &name, result, ctx.config, ctx.options).await;
                }
                // Served: its clean-up gets the grace too.
                Some(Ok((name, Done::Served(rest)))) => {
                    tasks.spawn(async move { (name, Done::Rest(rest_guarded(rest).await)) });
                }
                Some(Ok((name, Done::Ari(id, res)))) => store_ari(ctx.state, slots, &name, &id, res).await,
                Some(Err(_)) => {}
                None => break,
            },
            _ = &mut deadline => {
                // Safe: every step is idempotent and resumes from the state
                // directory and what GCP shows.
                tracing::warn!(abandoned = tasks.len(), "stopping: abandoning steps still in flight; they resume at the next start");
                tasks.abort_all();
                break;
            }
        }
    }
}

fn parse_window(config: &Config) -> Result<Option<Cron>, DaemonError> {
    Ok(config
        .daemon
        .maintenance_window
        .as_deref()
        .map(Cron::parse)
        .transpose()?)
}

async fn make_slots(
    config: &Config,
    state: &State,
    mut old: BTreeMap<String, Slot>,
) -> BTreeMap<String, Slot> {
    let mut books = BTreeMap::new();
    for c in &config.certificates {
        let found = match old.remove(&c.name) {
            Some(s) => (s.book, s.observation),
            None => (Book::load(state, &c.name).await, None),
        };
        books.insert(c.name.clone(), found);
    }
    config
        .certificates
        .iter()
        .map(|c| {
            let fp = fingerprint(c);
            let (mut book, observation) = books.remove(&c.name).unwrap_or_default();
            if book.config_fingerprint != fp {
                // A changed configuration gets a fresh start: no back-off.
                book.failures = 0;
                book.not_before = None;
                book.config_fingerprint = fp;
            }
            (
                c.name.clone(),
                Slot {
                    cert: c.clone(),
                    book,
                    observation,
                    running: false,
                },
            )
        })
        .collect()
}

fn due(s: &Slot, now: OffsetDateTime, window: Option<&Cron>) -> Due {
    let (validity, needs_action, ari_id) = match &s.observation {
        Some(o) => (o.validity, o.needs_action, o.ari_id.as_deref()),
        None => (None, true, None),
    };
    plan::next_due(&Inputs {
        now,
        validity,
        needs_action,
        ari_id,
        book: &s.book,
        // The same spread `renew` and `status` use, so all three agree on when.
        jitter: crate::reconcile::decide::jitter(&s.cert.name),
        window,
    })
}

fn duration_until(t: OffsetDateTime) -> Duration {
    let d = t - OffsetDateTime::now_utc();
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

fn record_observation(metrics: &Metrics, name: &str, o: &Assessment) {
    metrics.update(name, |m| {
        m.expires_at = o.validity.map(|v| v.not_after);
        m.ready = !o.needs_action
            && o.validity
                .is_some_and(|v| v.not_after > OffsetDateTime::now_utc());
    });
}

fn update_next_renewal(metrics: &Metrics, slots: &BTreeMap<String, Slot>, window: Option<&Cron>) {
    let now = OffsetDateTime::now_utc();
    for s in slots.values() {
        let d = due(s, now, window);
        metrics.update(&s.cert.name, |m| m.next_renewal_at = Some(d.at));
    }
}

async fn handle_result(
    state: &State,
    metrics: &Metrics,
    slots: &mut BTreeMap<String, Slot>,
    name: &str,
    result: Result<Assessment, Failure>,
    config: &Config,
    options: &Options,
) {
    let Some(slot) = slots.get_mut(name) else {
        return;
    };
    let now = OffsetDateTime::now_utc();
    slot.book.last_attempt = Some(now);
    match result {
        Ok(o) => {
            tracing::info!(certificate = %name, summary = %o.summary, expires_at = ?o.validity.map(|v| v.not_after), "certificate healthy");
            slot.book.failures = 0;
            slot.book.not_before = None;
            slot.book.last_success = Some(now);
            slot.book.last_error = None;
            metrics.update(name, |m| m.last_success_at = Some(now));
            record_observation(metrics, name, &o);
            slot.observation = Some(o);
        }
        Err(e) => {
            slot.book.failures = slot.book.failures.saturating_add(1);
            let wait = if e.retryable {
                let u: f64 = rand::rng().random();
                timing::backoff(
                    slot.book.failures,
                    config.daemon.retry_initial.get(),
                    config.daemon.retry_max.get(),
                    u,
                )
            } else {
                let left = slot
                    .observation
                    .as_ref()
                    .and_then(|o| o.validity)
                    .map(|v| v.not_after - now);
                timing::permanent_failure_wait(options.permanent_failure_wait, left)
                    .max(config.daemon.retry_max.get())
            };
            let wait = e.retry_after.map_or(wait, |r| r.max(wait));
            slot.book.not_before = Some(now + wait);
            slot.book.last_error = Some(LastError {
                message: e.message.clone(),
                reason: e.reason.clone(),
                retryable: e.retryable,
                at: now,
            });
            metrics.update(name, |m| {
                *m.failures.entry(e.reason.clone()).or_default() += 1;
                m.ready = false;
            });
            alert(slot, &e, wait, config);
        }
    }
    if let Err(e) = slot.book.save(state, name).await {
        tracing::error!(certificate = %name, error = %e, "cannot save renewal bookkeeping");
    }
}

/// WARN when a renewal failed inside the renewal window, ERROR when expiry is
/// near; structured fields for log-based alerting.
fn alert(slot: &Slot, e: &Failure, wait: Duration, config: &Config) {
    let name = &slot.cert.name;
    let domains = slot.cert.domains.join(",");
    let expires = slot
        .observation
        .as_ref()
        .and_then(|o| o.validity)
        .map(|v| v.not_after);
    let days_left = expires.map(|t| (t - OffsetDateTime::now_utc()).as_seconds_f64() / 86_400.0);
    let near =
        expires.is_some_and(|t| t - OffsetDateTime::now_utc() < config.daemon.error_before.get());
    let retry_in_s = wait.as_secs();
    if near || expires.is_none() {
        tracing::error!(certificate = %name, domains = %domains, expires_at = ?expires, days_left = ?days_left, attempt = slot.book.failures, retryable = e.retryable, retry_in_s, reason = %e.reason, error = %e.message, "certificate renewal failed and expiry is near");
    } else {
        tracing::warn!(certificate = %name, domains = %domains, expires_at = ?expires, days_left = ?days_left, attempt = slot.book.failures, retryable = e.retryable, retry_in_s, reason = %e.reason, error = %e.message, "certificate renewal failed; will retry");
    }
}

async fn store_ari(
    state: &State,
    slots: &mut BTreeMap<String, Slot>,
    name: &str,
    id: &str,
    result: Result<Option<(AriWindow, Duration)>, Failure>,
) {
    let Some(slot) = slots.get_mut(name) else {
        return;
    };
    let now = OffsetDateTime::now_utc();
    match result {
        Ok(Some((w, retry_after))) => {
            let same = slot
                .book
                .ari
                .as_ref()
                .filter(|a| a.cert_id == id && a.start == w.start && a.end == w.end);
            // Keep the moment already picked while the window is unchanged, so
            // polling does not re-roll it.
            let chosen = match same {
                Some(a) => a.chosen,
                None => timing::ari_pick(&w, rand::rng().random()),
            };
            slot.book.ari = Some(AriState {
                cert_id: id.to_string(),
                start: w.start,
                end: w.end,
                chosen,
                next_poll: now + retry_after.max(Duration::from_secs(60)),
            });
            tracing::info!(certificate = %name, window_start = %w.start, window_end = %w.end, chosen = %chosen, "CA renewal window (ARI)");
        }
        Ok(None) => slot.book.ari = None,
        Err(e) => {
            // Poll again later; meanwhile the lifetime fallback applies.
            if let Some(a) = &mut slot.book.ari {
                a.next_poll = now + Duration::from_secs(3600);
            }
            tracing::debug!(certificate = %name, error = %e.message, "ARI fetch failed");
        }
    }
    if let Err(e) = slot.book.save(state, name).await {
        tracing::error!(certificate = %name, error = %e, "cannot save renewal bookkeeping");
    }
}

fn summary(slots: &BTreeMap<String, Slot>, config: &Config, window: Option<&Cron>) {
    let now = OffsetDateTime::now_utc();
    for s in slots.values() {
        let d = due(s, now, window);
        let expires = s
            .observation
            .as_ref()
            .and_then(|o| o.validity)
            .map(|v| v.not_after);
        let days_left =
            expires.map(|t| ((t - now).as_seconds_f64() / 86_400.0 * 10.0).round() / 10.0);
        let last_error = s.book.last_error.as_ref().map(|e| e.message.clone());
        let near = expires.is_some_and(|t| t - now < config.daemon.error_before.get());
        if near {
            tracing::error!(certificate = %s.cert.name, domains = %s.cert.domains.join(","), expires_at = ?expires, days_left = ?days_left, next_renewal = %d.at, last_error = ?last_error, "certificate expires soon");
        } else if s.book.failures > 0 {
            tracing::warn!(certificate = %s.cert.name, domains = %s.cert.domains.join(","), expires_at = ?expires, days_left = ?days_left, next_renewal = %d.at, attempt = s.book.failures, last_error = ?last_error, "certificate renewal is failing");
        } else {
            tracing::info!(certificate = %s.cert.name, domains = %s.cert.domains.join(","), expires_at = ?expires, days_left = ?days_left, next_renewal = %d.at, "certificate status");
        }
    }
}

async fn reload<F: WorkerFactory>(
    path: &std::path::Path,
    factory: &F,
) -> Result<(Config, F::R), DaemonError> {
    let c = Config::load(path)?;
    let r = factory.build(&c).await?;
    Ok((c, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_rest_the_heap_is_trimmed_now_and_once_more_after_the_pool_expires() {
        // Coming to rest schedules the second trim after the pool's expiry.
        let AtRest::TrimAt(at) = AtRest::began() else {
            panic!("coming to rest schedules a second trim");
        };
        let wait = at - tokio::time::Instant::now();
        assert!(wait > crate::gcp::POOL_IDLE_TIMEOUT * 2, "{wait:?}");
        assert!(wait <= crate::gcp::POOL_IDLE_TIMEOUT * 2 + Duration::from_secs(5));

        // Before it is due, the sleep is cut short to wake for it.
        let mut rest = AtRest::TrimAt(tokio::time::Instant::now() + Duration::from_secs(30));
        let slept = rest.trim(Duration::from_secs(3600));
        assert!(slept <= Duration::from_secs(30), "{slept:?}");
        assert!(matches!(rest, AtRest::TrimAt(_)));
        // A shorter sleep is left alone.
        assert_eq!(rest.trim(Duration::from_secs(1)), Duration::from_secs(1));

        // Due: trimmed, and the sleep is the scheduler's again, for good.
        let mut rest = AtRest::TrimAt(tokio::time::Instant::now() - Duration::from_secs(1));
        assert_eq!(
            rest.trim(Duration::from_secs(3600)),
            Duration::from_secs(3600)
        );
        assert!(matches!(rest, AtRest::Trimmed));
        assert_eq!(
            rest.trim(Duration::from_secs(3600)),
            Duration::from_secs(3600)
        );

        // Work, then rest again: a new pair of trims.
        let mut rest = AtRest::Working;
        let slept = rest.trim(Duration::from_secs(3600));
        assert!(matches!(rest, AtRest::TrimAt(_)));
        assert!(slept <= crate::gcp::POOL_IDLE_TIMEOUT * 2 + Duration::from_secs(5));
    }
}
