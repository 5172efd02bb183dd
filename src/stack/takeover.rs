//! Bootstrap on a hand-built stack (issue #14): when the HTTPS proxy of
//! `[stack.names]` exists and serves hand-made certificates for the stack's
//! domains, bootstrap does what the first renewal would: a certificate of ours
//! takes their slot ([`crate::lb::takeover`] decides), everything else on the
//! proxy keeps its place, the hand-made resources are kept (teardown leaves
//! them too). `--dry-run` prints the same lines and changes nothing.

use super::{CertificateSource, Desired, Out, StackError};
use crate::config::CertificateConfig;
use crate::gcp::Gcp;
use crate::gcp::compute::name_of;
use crate::lb::{self, InstallOptions, takeover};

/// What the takeover would show the user, and whether there is a swap to make.
pub(crate) struct Preview {
    pub lines: Vec<String>,
    pub swap: bool,
}

fn config_of(d: &Desired) -> CertificateConfig {
    CertificateConfig {
        name: d.certificate.clone(),
        domains: d.domains.clone(),
        target_https_proxies: vec![d.names.https_proxy.clone()],
        key_type: Default::default(),
        zone: d.zone.clone(),
        reuse_key: false,
        // Adoption (deleting the hand-made resource) is left to `renew`,
        // which reads `[[certificates]].adopt`.
        adopt: Vec::new(),
        certificate_map: None,
        primary: false,
    }
}

/// Reads the stack's HTTPS proxy and says what taking over would do; `None`
/// when the proxy does not exist (bootstrap creates it with ours).
pub(crate) async fn preview(gcp: &Gcp, d: &Desired) -> Result<Option<Preview>, StackError> {
    // With a certificate map the proxy's sslCertificates are not served: there
    // is no slot to take (they are ignored, and kept).
    if d.certificate_map.is_some() {
        return Ok(None);
    }
    let cfg = config_of(d);
    let obs = match lb::observe(gcp, &cfg).await {
        Ok(o) => o,
        Err(lb::LbError::ProxyNotFound { .. }) => return Ok(None),
        Err(e) => {
            return Err(StackError::Certificate(format!(
                "reading target HTTPS proxy {}: {e}",
                d.names.https_proxy
            )));
        }
    };
    let Some(p) = obs.proxies.first() else {
        return Ok(None);
    };
    Ok(Some(lines(&gcp.project, p, &obs.names)))
}

/// The preview of one observed proxy (pure).
pub(crate) fn lines(project: &str, p: &lb::ProxyObservation, names: &[String]) -> Preview {
    let new_name = p
        .current(names)
        .first()
        .filter(|c| c.ours)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| format!("<a certificate of ours for {}>", names.join(", ")));
    let t = p.takeover(names, &new_name);
    let mut out = Vec::new();
    for s in &t.superseded {
        out.push(format!(
            "sslCertificate {s} exists and was not created by gclb-acme: {new_name} takes its place on target HTTPS proxy {} ([{}] -> [{}]); {s} is kept, served by no configured proxy (delete it later with: {}), and teardown will leave it alone",
            p.name,
            t.before.join(", "),
            t.after.join(", "),
            takeover::delete_command(project, s)
        ));
    }
    for k in &t.kept {
        out.push(format!(
            "sslCertificate {k} on target HTTPS proxy {} serves other names: kept in place; teardown will leave it alone",
            p.name
        ));
    }
    for c in &t.competing {
        out.push(format!("warning: {c}"));
    }
    if t.superseded.is_empty() && t.changes() && !t.before.is_empty() {
        out.push(format!(
            "target HTTPS proxy {}: {new_name} is added ([{}] -> [{}])",
            p.name,
            t.before.join(", "),
            t.after.join(", ")
        ));
    }
    Preview {
        swap: !t.superseded.is_empty(),
        lines: out,
    }
}

/// Prints the preview and, unless `dry_run`, makes the swap: ensures a
/// certificate of ours (reused or issued by `certs`), then puts it in place.
/// Returns the lines printed.
pub(crate) async fn run<C: CertificateSource>(
    gcp: &Gcp,
    d: &Desired,
    certs: &C,
    out: &Out,
    dry_run: bool,
) -> Result<Vec<String>, StackError> {
    let Some(pv) = preview(gcp, d).await? else {
        return Ok(Vec::new());
    };
    let mut said = Vec::new();
    for l in &pv.lines {
        let l = format!("certificate: {l}");
        out.line(&l);
        said.push(l);
    }
    if dry_run || !pv.swap {
        return Ok(said);
    }
    let url = certs.ensure(&d.domains).await?;
    let opts = InstallOptions {
        // The proxy may be new to Google's edge: `renew` checks the handshake.
        verify: None,
        ..InstallOptions::default()
    };
    let report = lb::retake(gcp, &config_of(d), name_of(&url), &opts)
        .await
        .map_err(|e| StackError::Certificate(e.to_string()))?;
    for h in &report.superseded {
        let l = format!("certificate: {h}");
        out.line(&l);
        said.push(l);
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::{ProxyObservation, ServedCertificate};

    fn served(name: &str, sans: &[&str]) -> ServedCertificate {
        ServedCertificate {
            name: name.into(),
            url: String::new(),
            exists: true,
            ours: false,
            description: Some("uploaded by hand".into()),
            expire_time: None,
            sans: sans.iter().map(|s| s.to_string()).collect(),
            leaf: None,
        }
    }

    fn desired() -> Desired {
        let text = "[acme]\naccept_terms = true\n[[certificates]]\nname = \"app\"\ndomains = [\"app.example.com\"]\ntarget_https_proxies = [\"cloud-run-iap-http-proxy\"]\n[stack]\nregion = \"europe-west1\"\nservice = \"cloud-run-iap\"\ndomains = [\"app.example.com\"]\n[stack.names]\nhttps_proxy = \"cloud-run-iap-http-proxy\"\n";
        let mut c: crate::config::Config = toml::from_str(text).unwrap();
        let problems = c.validate(None);
        assert!(problems.is_empty(), "{problems:?}");
        Desired::from_config(&c, "proj").unwrap()
    }

    #[test]
    fn the_walkthrough_proxy_is_taken_over_and_everything_named() {
        let d = desired();
        assert_eq!(d.names.https_proxy, "cloud-run-iap-http-proxy");
        let p = ProxyObservation {
            name: "cloud-run-iap-http-proxy".into(),
            self_link: String::new(),
            certificates: vec![
                served("cloud-run-iap-cert", &["app.example.com"]),
                served("unrelated", &["other.test"]),
            ],
            certificate_map: None,
        };
        let pv = lines("proj", &p, &["app.example.com".to_string()]);
        assert!(pv.swap);
        assert_eq!(pv.lines.len(), 2, "{:?}", pv.lines);
        assert!(pv.lines[0].starts_with("sslCertificate cloud-run-iap-cert exists and was not created by gclb-acme: <a certificate of ours for app.example.com> takes its place on target HTTPS proxy cloud-run-iap-http-proxy ([cloud-run-iap-cert, unrelated] -> [<a certificate of ours for app.example.com>, unrelated])"), "{}", pv.lines[0]);
        assert!(pv.lines[0].contains(
            "gcloud compute ssl-certificates delete cloud-run-iap-cert --global --project proj"
        ));
        assert!(pv.lines[0].ends_with("teardown will leave it alone"));
        assert!(pv.lines[1].contains("unrelated on target HTTPS proxy cloud-run-iap-http-proxy serves other names: kept in place"));
    }
}
