//! CAA (RFC 8659): may the configured CA issue for a name? Pure decisions only;
//! the lookups live in `online.rs`.

use crate::config::{
    GOOGLE_TRUST_SERVICES, GOOGLE_TRUST_SERVICES_STAGING, LETSENCRYPT, LETSENCRYPT_STAGING, ZEROSSL,
};

/// The issuer domain a CA looks for in CAA `issue`/`issuewild` values, by ACME
/// directory URL; `None` for a directory we do not know (then CAA is not judged).
pub(crate) fn ca_domain(directory: &str) -> Option<&'static str> {
    let host = reqwest::Url::parse(directory)
        .ok()?
        .host_str()?
        .to_ascii_lowercase();
    let known = |url: &str| {
        reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .is_some_and(|h| h == host)
    };
    // Let's Encrypt's staging CA checks CAA for letsencrypt.org too.
    if known(LETSENCRYPT) || known(LETSENCRYPT_STAGING) {
        Some("letsencrypt.org")
    } else if known(ZEROSSL) {
        // ZeroSSL issues from Sectigo's CA and documents "sectigo.com" for CAA.
        Some("sectigo.com")
    } else if known(GOOGLE_TRUST_SERVICES) || known(GOOGLE_TRUST_SERVICES_STAGING) {
        Some("pki.goog")
    } else {
        None
    }
}

/// One CAA record as served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CaaRecord {
    /// The issuer-critical flag (bit 128).
    pub critical: bool,
    pub tag: String,
    /// The value, without the presentation format's quotes.
    pub value: String,
}

impl CaaRecord {
    /// Parses Cloud DNS's presentation form, `0 issue "letsencrypt.org"`.
    #[cfg(test)]
    pub fn parse(text: &str) -> Option<CaaRecord> {
        let mut parts = text.trim().splitn(3, char::is_whitespace);
        let flags: u8 = parts.next()?.parse().ok()?;
        let tag = parts.next()?.to_string();
        let value = parts.next()?.trim().trim_matches('"').to_string();
        Some(CaaRecord {
            critical: flags & 0x80 != 0,
            tag,
            value,
        })
    }
}

impl std::fmt::Display for CaaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} \"{}\"",
            if self.critical { 128 } else { 0 },
            self.tag,
            self.value
        )
    }
}

/// The names whose CAA sets are relevant to `domain`, nearest first: the name
/// itself (a wildcard's base name), then each parent down to `apex` included
/// (RFC 8659 section 3 climbs to the root; above the zone apex the records are
/// not ours to fix, so we stop there). Names are absolute, with the trailing dot.
pub(crate) fn climb(domain: &str, apex: &str) -> Vec<String> {
    let base = domain.strip_prefix("*.").unwrap_or(domain);
    let mut name = absolute(base);
    let apex = absolute(apex);
    if !crate::dns::zone::in_zone(&name, &apex) {
        return vec![name];
    }
    let mut out = vec![name.clone()];
    while name != apex {
        match name.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => {
                name = parent.to_string();
                out.push(name.clone());
            }
            _ => break,
        }
    }
    out
}

fn absolute(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

/// Why the CA may not issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Forbidden {
    /// `issue`/`issuewild` records exist and none names the CA.
    OtherIssuers {
        tag: &'static str,
        issuers: Vec<String>,
    },
    /// A record names the CA but limits validation methods to ones without dns-01.
    ValidationMethods { methods: String },
    /// A critical property the CA does not understand forbids issuance.
    UnknownCritical { tag: String },
}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Forbidden::OtherIssuers { tag, issuers } => {
                let who: Vec<String> = issuers
                    .iter()
                    .map(|i| {
                        if i.is_empty() {
                            "nobody (\";\")".to_string()
                        } else {
                            i.clone()
                        }
                    })
                    .collect();
                write!(f, "{tag} allows only {}", who.join(", "))
            }
            Forbidden::ValidationMethods { methods } => write!(
                f,
                "the record for the CA limits validationmethods to {methods}, without dns-01"
            ),
            Forbidden::UnknownCritical { tag } => write!(
                f,
                "the critical property \"{tag}\" is unknown to CAs, which then must refuse"
            ),
        }
    }
}

/// RFC 8659 section 4: whether the CA whose CAA domain is `ca` may issue for a
/// name (a wildcard when `wildcard`) given the relevant CAA set (the first
/// non-empty one found by climbing). An empty set allows every CA.
pub(crate) fn evaluate(records: &[CaaRecord], ca: &str, wildcard: bool) -> Result<(), Forbidden> {
    const KNOWN: &[&str] = &[
        "issue",
        "issuewild",
        "iodef",
        "contactemail",
        "contactphone",
    ];
    if let Some(r) = records
        .iter()
        .find(|r| r.critical && !KNOWN.contains(&r.tag.to_ascii_lowercase().as_str()))
    {
        return Err(Forbidden::UnknownCritical { tag: r.tag.clone() });
    }
    let with = |tag: &str| -> Vec<&CaaRecord> {
        records
            .iter()
            .filter(|r| r.tag.eq_ignore_ascii_case(tag))
            .collect()
    };
    // For a wildcard, issuewild (when present) replaces issue entirely.
    let (tag, set) = match (wildcard, with("issuewild")) {
        (true, wild) if !wild.is_empty() => ("issuewild", wild),
        _ => ("issue", with("issue")),
    };
    if set.is_empty() {
        return Ok(());
    }
    let mut issuers = Vec::new();
    for r in &set {
        let (issuer, params) = split_issuer(&r.value);
        if issuer.eq_ignore_ascii_case(ca) {
            if let Some(methods) = param(params, "validationmethods")
                && !methods
                    .split(',')
                    .any(|m| m.trim().eq_ignore_ascii_case("dns-01"))
            {
                return Err(Forbidden::ValidationMethods {
                    methods: methods.to_string(),
                });
            }
            return Ok(());
        }
        issuers.push(issuer.to_string());
    }
    Err(Forbidden::OtherIssuers { tag, issuers })
}

/// `issuer-domain-name; key=value; ...` -> (issuer, parameters).
fn split_issuer(value: &str) -> (&str, &str) {
    match value.split_once(';') {
        Some((i, p)) => (i.trim(), p),
        None => (value.trim(), ""),
    }
}

fn param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    params.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caa(text: &str) -> CaaRecord {
        CaaRecord::parse(text).unwrap()
    }

    #[test]
    fn directories_map_to_caa_domains() {
        assert_eq!(ca_domain(LETSENCRYPT), Some("letsencrypt.org"));
        assert_eq!(ca_domain(LETSENCRYPT_STAGING), Some("letsencrypt.org"));
        assert_eq!(ca_domain(ZEROSSL), Some("sectigo.com"));
        assert_eq!(ca_domain(GOOGLE_TRUST_SERVICES), Some("pki.goog"));
        assert_eq!(ca_domain(GOOGLE_TRUST_SERVICES_STAGING), Some("pki.goog"));
        assert_eq!(ca_domain("https://localhost:14000/dir"), None);
        assert_eq!(ca_domain("not a url"), None);
    }

    #[test]
    fn no_records_allow_everyone() {
        assert_eq!(evaluate(&[], "letsencrypt.org", false), Ok(()));
        assert_eq!(evaluate(&[], "letsencrypt.org", true), Ok(()));
    }

    #[test]
    fn issue_must_name_the_ca() {
        let set = [caa("0 issue \"sectigo.com\"")];
        assert_eq!(
            evaluate(&set, "letsencrypt.org", false),
            Err(Forbidden::OtherIssuers {
                tag: "issue",
                issuers: vec!["sectigo.com".into()]
            })
        );
        assert_eq!(evaluate(&set, "sectigo.com", false), Ok(()));
        assert_eq!(evaluate(&set, "SECTIGO.COM", false), Ok(()));
        let set = [
            caa("0 issue \"sectigo.com\""),
            caa("0 issue \"letsencrypt.org\""),
        ];
        assert_eq!(evaluate(&set, "letsencrypt.org", false), Ok(()));
    }

    #[test]
    fn an_empty_issuer_forbids_everyone() {
        let set = [caa("0 issue \";\"")];
        let e = evaluate(&set, "letsencrypt.org", false).unwrap_err();
        assert!(e.to_string().contains("nobody"), "{e}");
    }

    #[test]
    fn issuewild_governs_wildcards_only() {
        let set = [
            caa("0 issue \"letsencrypt.org\""),
            caa("0 issuewild \"pki.goog\""),
        ];
        assert_eq!(evaluate(&set, "letsencrypt.org", false), Ok(()));
        assert!(evaluate(&set, "letsencrypt.org", true).is_err());
        assert_eq!(evaluate(&set, "pki.goog", true), Ok(()));
        // Without issuewild, issue governs wildcards too.
        let set = [caa("0 issue \"pki.goog\"")];
        assert!(evaluate(&set, "letsencrypt.org", true).is_err());
        // Only issuewild: non-wildcard names are unrestricted.
        let set = [caa("0 issuewild \";\"")];
        assert_eq!(evaluate(&set, "letsencrypt.org", false), Ok(()));
        assert!(evaluate(&set, "letsencrypt.org", true).is_err());
    }

    #[test]
    fn iodef_alone_restricts_nothing() {
        let set = [caa("0 iodef \"mailto:sec@example.com\"")];
        assert_eq!(evaluate(&set, "letsencrypt.org", false), Ok(()));
    }

    #[test]
    fn parameters_are_read() {
        let set = [caa(
            "0 issue \"letsencrypt.org; accounturi=https://x/acct/1; validationmethods=http-01\"",
        )];
        assert!(matches!(
            evaluate(&set, "letsencrypt.org", false),
            Err(Forbidden::ValidationMethods { .. })
        ));
        let set = [caa(
            "0 issue \"letsencrypt.org; validationmethods=http-01,dns-01\"",
        )];
        assert_eq!(evaluate(&set, "letsencrypt.org", false), Ok(()));
    }

    #[test]
    fn unknown_critical_tags_forbid() {
        let set = [
            caa("0 issue \"letsencrypt.org\""),
            caa("128 tbs \"whatever\""),
        ];
        assert!(matches!(
            evaluate(&set, "letsencrypt.org", false),
            Err(Forbidden::UnknownCritical { .. })
        ));
        let set = [caa("128 issue \"letsencrypt.org\"")];
        assert_eq!(evaluate(&set, "letsencrypt.org", false), Ok(()));
    }

    #[test]
    fn climbing_stops_at_the_apex() {
        assert_eq!(
            climb("a.b.example.com", "example.com."),
            ["a.b.example.com.", "b.example.com.", "example.com."]
        );
        assert_eq!(
            climb("*.app.example.com", "example.com."),
            ["app.example.com.", "example.com."]
        );
        assert_eq!(climb("example.com", "example.com."), ["example.com."]);
        assert_eq!(climb("Example.COM.", "example.com"), ["example.com."]);
        assert_eq!(climb("other.org", "example.com."), ["other.org."]);
    }

    #[test]
    fn records_print_in_presentation_form() {
        assert_eq!(
            caa("0 issue \"sectigo.com\"").to_string(),
            "0 issue \"sectigo.com\""
        );
    }
}
