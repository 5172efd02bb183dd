//! Prometheus metrics (`/metrics`) and a health check (`/healthz`), named in
//! cert-manager's style with a `gclb_acme_` prefix. Values are computed when
//! scraped, so `seconds_until_expiry` is always current and nothing ticks while
//! idle.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

use crate::acme::HttpStats;
use crate::gcp;

/// What is known about one certificate.
#[derive(Clone, Debug, Default)]
pub struct CertificateMetrics {
    /// Expiry of the certificate served now (earliest over its proxies).
    pub expires_at: Option<OffsetDateTime>,
    pub next_renewal_at: Option<OffsetDateTime>,
    pub last_success_at: Option<OffsetDateTime>,
    /// Served everywhere, valid, and not failing.
    pub ready: bool,
    pub attempts: u64,
    /// Failures by reason (`acme`, `dns`, `gcp:<reason>`, `config`...).
    pub failures: BTreeMap<String, u64>,
    /// Where the certificate lives (`target` label): `ssl_certificates` or
    /// `certificate_map` (`lb::kind_of`); empty: no label.
    pub target: &'static str,
}

/// The daemon's metrics, shared with the scheduler.
#[derive(Debug, Default)]
pub struct Metrics {
    certificates: Mutex<BTreeMap<String, CertificateMetrics>>,
    gcp: Mutex<Option<Arc<gcp::Stats>>>,
    acme: Mutex<Option<Arc<HttpStats>>>,
    /// Set once the first observation pass is done (health).
    ready: Mutex<bool>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Updates one certificate's figures.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut CertificateMetrics)) {
        let mut m = self.certificates.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry(name.to_string()).or_default());
    }

    /// Records where each configured certificate lives (the `target` label).
    pub fn set_targets<'a>(&self, targets: impl IntoIterator<Item = (&'a str, &'static str)>) {
        for (name, kind) in targets {
            self.update(name, |m| m.target = kind);
        }
    }

    /// Forgets certificates no longer configured (after a reload).
    pub fn retain(&self, names: &[String]) {
        let mut m = self.certificates.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|k, _| names.contains(k));
    }

    pub fn certificate(&self, name: &str) -> Option<CertificateMetrics> {
        self.certificates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Where Google API request counts come from.
    pub fn set_gcp(&self, stats: Arc<gcp::Stats>) {
        *self.gcp.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
    }

    /// Where ACME request counts come from.
    pub fn set_acme(&self, stats: Arc<HttpStats>) {
        *self.acme.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
    }

    pub fn set_ready(&self) {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Prometheus text exposition.
    pub fn render(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::clone(self)));
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# encoding the metrics failed");
        }
        out
    }
}

type Labels = Vec<(&'static str, String)>;

fn gauge<V: Copy + prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, V)],
) -> Result<(), std::fmt::Error>
where
    ConstGauge<V>: EncodeMetric,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter<V: Copy + prometheus_client::encoding::EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, V)],
) -> Result<(), std::fmt::Error>
where
    ConstCounter<V>: EncodeMetric,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn ts(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = OffsetDateTime::now_utc();
        let certs = self
            .certificates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // `certificate`, then `target` when known.
        let base = |n: &String, c: &CertificateMetrics| -> Labels {
            let mut l = vec![("certificate", n.clone())];
            if !c.target.is_empty() {
                l.push(("target", c.target.to_string()));
            }
            l
        };
        let per = |f: &dyn Fn(&CertificateMetrics) -> Option<f64>| -> Vec<(Labels, f64)> {
            certs
                .iter()
                .filter_map(|(n, c)| f(c).map(|v| (base(n, c), v)))
                .collect()
        };
        gauge(
            &mut enc,
            "gclb_acme_certificate_expiration_timestamp_seconds",
            "Expiry (notAfter) of the certificate the proxies serve, as a Unix timestamp.",
            &per(&|c| c.expires_at.map(ts)),
        )?;
        gauge(
            &mut enc,
            "gclb_acme_certificate_seconds_until_expiry",
            "Seconds until the served certificate expires (negative once expired).",
            &per(&|c| c.expires_at.map(|e| (e - now).as_seconds_f64())),
        )?;
        gauge(
            &mut enc,
            "gclb_acme_certificate_renewal_timestamp_seconds",
            "When the next renewal is due, as a Unix timestamp.",
            &per(&|c| c.next_renewal_at.map(ts)),
        )?;
        gauge(
            &mut enc,
            "gclb_acme_certificate_last_success_timestamp_seconds",
            "When the last renewal or check of this certificate succeeded.",
            &per(&|c| c.last_success_at.map(ts)),
        )?;
        let ready: Vec<(Labels, i64)> = certs
            .iter()
            .flat_map(|(n, c)| {
                [("True", c.ready), ("False", !c.ready)].map(|(cond, v)| {
                    let mut l = base(n, c);
                    l.push(("condition", cond.to_string()));
                    (l, i64::from(v))
                })
            })
            .collect();
        gauge(
            &mut enc,
            "gclb_acme_certificate_ready_status",
            "1 for the condition that holds: True when the certificate is served everywhere, valid and not failing.",
            &ready,
        )?;
        counter(
            &mut enc,
            "gclb_acme_renewal_attempts",
            "Renewal attempts (issuance or installation) per certificate.",
            &certs
                .iter()
                .map(|(n, c)| (base(n, c), c.attempts))
                .collect::<Vec<_>>(),
        )?;
        let failures: Vec<(Labels, u64)> = certs
            .iter()
            .flat_map(|(n, c)| {
                c.failures.iter().map(|(reason, v)| {
                    let mut l = base(n, c);
                    l.push(("reason", reason.clone()));
                    (l, *v)
                })
            })
            .collect();
        counter(
            &mut enc,
            "gclb_acme_renewal_failures",
            "Failed renewal attempts per certificate and reason.",
            &failures,
        )?;

        let acme = self.acme.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(acme) = acme {
            let snap = acme.snapshot();
            let count: Vec<(Labels, u64)> = snap
                .iter()
                .map(|(e, s)| (vec![("endpoint", e.as_str().to_string())], s.requests))
                .collect();
            let errors: Vec<(Labels, u64)> = snap
                .iter()
                .map(|(e, s)| (vec![("endpoint", e.as_str().to_string())], s.errors))
                .collect();
            let secs: Vec<(Labels, f64)> = snap
                .iter()
                .map(|(e, s)| {
                    (
                        vec![("endpoint", e.as_str().to_string())],
                        s.total.as_secs_f64(),
                    )
                })
                .collect();
            counter(
                &mut enc,
                "gclb_acme_acme_client_request_count",
                "ACME requests per endpoint.",
                &count,
            )?;
            counter(
                &mut enc,
                "gclb_acme_acme_client_request_errors",
                "ACME requests that failed or got a status >= 400.",
                &errors,
            )?;
            counter(
                &mut enc,
                "gclb_acme_acme_client_request_duration_seconds_sum",
                "Total time spent in ACME requests per endpoint.",
                &secs,
            )?;
        }
        let g = self.gcp.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(g) = g {
            let snap = g.snapshot();
            let count: Vec<(Labels, u64)> = snap
                .iter()
                .map(|((api, op, code), (n, _))| {
                    (
                        vec![
                            ("api", api.as_str().to_string()),
                            ("method", op.to_string()),
                            ("code", code.to_string()),
                        ],
                        *n,
                    )
                })
                .collect();
            let secs: Vec<(Labels, f64)> = snap
                .iter()
                .map(|((api, op, code), (_, d))| {
                    (
                        vec![
                            ("api", api.as_str().to_string()),
                            ("method", op.to_string()),
                            ("code", code.to_string()),
                        ],
                        d.as_secs_f64(),
                    )
                })
                .collect();
            counter(
                &mut enc,
                "gclb_acme_gcp_request_count",
                "Google API requests per API, method and HTTP code (0: no answer).",
                &count,
            )?;
            counter(
                &mut enc,
                "gclb_acme_gcp_request_duration_seconds_sum",
                "Total time spent in Google API requests per API, method and code.",
                &secs,
            )?;
        }
        Ok(())
    }
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
}

async fn health_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// The `/metrics` and `/healthz` routes.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(health_handler))
        .with_state(metrics)
}

/// Binds the metrics listener (so a bad address fails at start) and serves it
/// until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(metrics);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_labelled_by_where_they_live() {
        let m = Metrics::new();
        m.set_targets([("app", "ssl_certificates"), ("sites", "certificate_map")]);
        m.update("sites", |c| {
            c.ready = true;
            c.attempts = 2;
            c.failures.insert("gcp:UNAVAILABLE".into(), 1);
        });
        let text = m.render();
        for line in [
            "gclb_acme_certificate_ready_status{certificate=\"sites\",target=\"certificate_map\",condition=\"True\"} 1",
            "gclb_acme_renewal_attempts_total{certificate=\"sites\",target=\"certificate_map\"} 2",
            "gclb_acme_renewal_failures_total{certificate=\"sites\",target=\"certificate_map\",reason=\"gcp:UNAVAILABLE\"} 1",
            "gclb_acme_renewal_attempts_total{certificate=\"app\",target=\"ssl_certificates\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }

    #[test]
    fn renders_certificate_gauges_and_counters() {
        let m = Metrics::new();
        let exp = OffsetDateTime::now_utc() + time::Duration::days(30);
        m.update("app", |c| {
            c.expires_at = Some(exp);
            c.ready = true;
            c.attempts = 3;
            c.failures.insert("dns".into(), 1);
        });
        let text = m.render();
        // Compare as numbers: float formatting differs in the last digit.
        let value = |prefix: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{prefix} missing in:\n{text}"))
        };
        let expected = exp.unix_timestamp_nanos() as f64 / 1e9;
        let got = value("gclb_acme_certificate_expiration_timestamp_seconds{certificate=\"app\"}");
        assert!((got - expected).abs() < 1e-3, "{got} vs {expected}");
        assert!(
            text.contains(
                "gclb_acme_certificate_ready_status{certificate=\"app\",condition=\"True\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "gclb_acme_certificate_ready_status{certificate=\"app\",condition=\"False\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains("gclb_acme_renewal_attempts_total{certificate=\"app\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("gclb_acme_renewal_failures_total{certificate=\"app\",reason=\"dns\"} 1"),
            "{text}"
        );
        let left: f64 = text
            .lines()
            .find(|l| l.starts_with("gclb_acme_certificate_seconds_until_expiry{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((left - 30.0 * 86400.0).abs() < 60.0, "{left}");
    }

    #[test]
    fn retain_drops_removed_certificates() {
        let m = Metrics::new();
        m.update("a", |c| c.attempts = 1);
        m.update("b", |c| c.attempts = 1);
        m.retain(&["a".to_string()]);
        assert!(m.certificate("b").is_none());
        assert!(m.certificate("a").is_some());
    }
}
