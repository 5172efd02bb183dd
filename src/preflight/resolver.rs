//! Asking a public recursive resolver, as a CA would: the registrar's delegation
//! (NS), CAA records, and CNAMEs at challenge names. A thin I/O layer; the
//! decisions are in `caa.rs` and `delegation.rs`.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::dns::propagation::{Server, ServerError, resolve_servers};

/// Used when neither `dns.resolvers` nor /etc/resolv.conf name a resolver.
pub(crate) const FALLBACK: &str = "8.8.8.8:53";

/// The resolvers to ask, in order.
#[derive(Clone, Debug)]
pub(crate) struct Resolver {
    pub servers: Vec<Server>,
    /// Where the list came from, for the report.
    pub source: String,
}

/// An answer.
#[derive(Clone, Debug)]
pub(crate) struct Lookup {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
}

/// Why the resolvers could not be used or gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolverError {
    /// A resolver that does not resolve to an address (the DNS layer's text).
    #[error("{0}")]
    Servers(#[from] ServerError),
    #[error("no resolver configured")]
    NoResolver,
    #[error("{server} answered {rcode}")]
    Rcode {
        server: SocketAddr,
        rcode: ResponseCode,
    },
    /// No answer from `server` (the DNS layer's text).
    #[error("{server}: {reason}")]
    Query { server: SocketAddr, reason: String },
    #[error("bad name {name}: {source}")]
    Name {
        name: String,
        source: hickory_proto::ProtoError,
    },
}

/// `nameserver` lines of resolv.conf, as `ip:53`.
pub(crate) fn parse_resolv_conf(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.split(['#', ';']).next()?.trim();
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            let ip: std::net::IpAddr = w.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53).to_string())
        })
        .collect()
}

impl Resolver {
    /// `dns.resolvers`, else the system resolver, else 8.8.8.8:53.
    pub(crate) async fn from_config(configured: &[String]) -> Result<Resolver, ResolverError> {
        let (specs, source) = if !configured.is_empty() {
            (configured.to_vec(), "dns.resolvers".to_string())
        } else {
            let system = std::fs::read_to_string("/etc/resolv.conf")
                .map(|t| parse_resolv_conf(&t))
                .unwrap_or_default();
            if system.is_empty() {
                (vec![FALLBACK.to_string()], "fallback".to_string())
            } else {
                (system, "/etc/resolv.conf".to_string())
            }
        };
        let mut servers = Vec::new();
        for s in &specs {
            servers.extend(resolve_servers(s).await?);
        }
        Ok(Resolver { servers, source })
    }

    /// Labels of the servers, for messages.
    pub(crate) fn describe(&self) -> String {
        let list: Vec<String> = self.servers.iter().map(|s| s.addr.to_string()).collect();
        format!("{} ({})", list.join(", "), self.source)
    }

    /// Asks each resolver in turn until one answers (anything but SERVFAIL,
    /// REFUSED or silence).
    pub(crate) async fn query(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> Result<Lookup, ResolverError> {
        let mut last = ResolverError::NoResolver;
        for s in &self.servers {
            match query_one(name, rtype, s.addr).await {
                Ok(l) if !matches!(l.rcode, ResponseCode::ServFail | ResponseCode::Refused) => {
                    return Ok(l);
                }
                Ok(l) => {
                    last = ResolverError::Rcode {
                        server: s.addr,
                        rcode: l.rcode,
                    }
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The NS names served for `name` (lower case, absolute).
    pub(crate) async fn ns(&self, name: &str) -> Result<Vec<String>, ResolverError> {
        let l = self.query(name, RecordType::NS).await?;
        Ok(l.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(n) => Some(n.0.to_ascii().to_ascii_lowercase()),
                _ => None,
            })
            .collect())
    }

    /// The CNAME target at `name`, if it is one.
    pub(crate) async fn cname(&self, name: &str) -> Result<Option<String>, ResolverError> {
        let l = self.query(name, RecordType::CNAME).await?;
        let qname = Name::from_ascii(name).map_err(|source| ResolverError::Name {
            name: name.to_string(),
            source,
        })?;
        Ok(l.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if r.name == qname => Some(c.0.to_ascii().to_ascii_lowercase()),
            _ => None,
        }))
    }

    /// The CAA records served at `name` (after any CNAME, as RFC 8659 says).
    pub(crate) async fn caa(
        &self,
        name: &str,
    ) -> Result<Vec<super::caa::CaaRecord>, ResolverError> {
        let l = self.query(name, RecordType::CAA).await?;
        Ok(l.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::CAA(c) => Some(super::caa::CaaRecord {
                    critical: c.issuer_critical,
                    tag: c.tag.clone(),
                    value: String::from_utf8_lossy(&c.value).into_owned(),
                }),
                _ => None,
            })
            .collect())
    }
}

async fn query_one(
    name: &str,
    rtype: RecordType,
    server: SocketAddr,
) -> Result<Lookup, ResolverError> {
    // A recursive resolver: ask it to recurse, as the CA's own resolver does.
    let resp = crate::dns::wire::query(name, rtype, server, true)
        .await
        // Text: the DNS layer's error type is its own (and changing).
        .map_err(|e| ResolverError::Query {
            server,
            reason: e.to_string(),
        })?
        .message;
    Ok(Lookup {
        rcode: resp.metadata.response_code,
        answers: resp.answers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example.internal\nnameserver 10.0.0.2\nnameserver fe80::1%eth0 # link-local\n;nameserver 1.1.1.1\noptions edns0\nnameserver bogus\n";
        assert_eq!(parse_resolv_conf(text), ["10.0.0.2:53", "[fe80::1]:53"]);
    }
}
