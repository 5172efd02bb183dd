//! `gclb-acme certificate-map attach|detach`: moving a proxy onto a map and
//! back (`gclb_acme::stack::mapmove` decides and does it). Attaching first
//! installs, through the map target, every configured certificate of that map
//! whose names the map does not serve yet (a renewal: issued if needed).

use std::path::Path;
use std::process::ExitCode;

use crate::cli::CertificateMapCommand;
use gclb_acme::config::Config;
use gclb_acme::gcp::Gcp;
use gclb_acme::reconcile::Renewer;
use gclb_acme::stack as mapmove;

use super::{CliError, runtime};

/// The configured domains a move must keep served on `proxy`: those of the
/// certificates listing it, and (attaching) of the certificates of `map`.
fn configured_names(config: &Config, proxy: &str, map: Option<&str>) -> Vec<String> {
    config
        .certificates
        .iter()
        .filter(|c| {
            (c.certificate_map.is_none() && c.target_https_proxies.iter().any(|p| p == proxy))
                || (map.is_some() && c.certificate_map.as_deref() == map)
        })
        .flat_map(|c| c.domains.iter().cloned())
        .collect()
}

pub fn run(config_path: &Path, c: &CertificateMapCommand) -> Result<ExitCode, CliError> {
    let config = Config::load(config_path)?;
    runtime()?.block_on(async move {
        let gcp = Gcp::from_config(&config.gcp)
            .await
            .map_err(|e| CliError::Gcp(Box::new(e)))?;
        match c {
            CertificateMapCommand::Attach(a) => {
                let extra = configured_names(&config, &a.proxy, Some(&a.map));
                let installing = install_first(&gcp, &config, &a.proxy, &a.map, a.dry_run).await?;
                mapmove::attach_certificate_map(
                    &gcp,
                    &a.proxy,
                    &a.map,
                    &extra,
                    &installing,
                    a.dry_run,
                    false,
                )
                .await?;
            }
            CertificateMapCommand::Detach(d) => {
                // The sslCertificates must serve the map's hostnames; the
                // configured certificates of the map are among them.
                mapmove::detach_certificate_map(&gcp, &d.proxy, &[], d.dry_run, false).await?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Installs into `map` each configured certificate of it whose names the map
/// does not serve validly yet (a dry run only says so). Returns, for a dry run,
/// `(name, certificate)` for each name such an installation would serve.
/// The proxy being attached does not serve the map yet, so it is left out of
/// the certificates' `target_https_proxies` for this installation (the map
/// target refuses a listed proxy that does not serve the map).
async fn install_first(
    gcp: &Gcp,
    config: &Config,
    proxy: &str,
    map: &str,
    dry_run: bool,
) -> Result<Vec<(String, String)>, CliError> {
    let mut config = config.clone();
    for c in &mut config.certificates {
        if c.certificate_map.as_deref() == Some(map) {
            c.target_https_proxies.retain(|p| p != proxy);
        }
    }
    let config = &config;
    let mut installing = Vec::new();
    let mine: Vec<_> = config
        .certificates
        .iter()
        .filter(|c| c.certificate_map.as_deref() == Some(map))
        .collect();
    if mine.is_empty() {
        return Ok(installing);
    }
    let mut renewer: Option<Renewer> = None;
    for cert in mine {
        let why = gclb_acme::stack::map_unserved(gcp, map, &cert.name, &cert.domains)
            .await
            .map_err(CliError::Stack)?;
        let Some(why) = why else { continue };
        gclb_acme::progress::println(&format!(
            "certificate {} is not served by certificate map {map} yet ({why}): {}",
            cert.name,
            if dry_run {
                "it would be installed first"
            } else {
                "installing it first"
            }
        ));
        if dry_run {
            installing.extend(cert.domains.iter().map(|d| (d.clone(), cert.name.clone())));
            continue;
        }
        if renewer.is_none() {
            renewer = Some(build_renewer(gcp, config).await?);
        }
        let Some(r) = &renewer else { continue };
        let fail = |message: String| CliError::InstallFirst {
            name: cert.name.clone(),
            map: map.to_string(),
            message,
        };
        let mut results = r.renew_all(Some(&cert.name), false).await;
        match results.pop() {
            Some((_, Ok(o))) if o.healthy() => {}
            Some((_, Ok(o))) => return Err(fail(format!("not healthy afterwards: {:?}", o.done))),
            Some((_, Err(e))) => return Err(fail(e.to_string())),
            None => return Err(fail("no renewal ran".into())),
        }
    }
    Ok(installing)
}

async fn build_renewer(gcp: &Gcp, config: &Config) -> Result<Renewer, CliError> {
    let state = gclb_acme::state::State::from_config(&config.state, Some(gcp))
        .map_err(|e| CliError::StateDir(e.into()))?;
    let acme = gclb_acme::acme::AcmeClient::connect(&config.acme, state)
        .await
        .map_err(|e| CliError::Acme {
            directory: config.acme.directory.clone(),
            source: Box::new(e),
        })?;
    Ok(Renewer {
        gcp: gcp.clone(),
        acme: std::sync::Arc::new(acme),
        config: std::sync::Arc::new(config.clone()),
        install: Renewer::install_options(config),
    })
}
