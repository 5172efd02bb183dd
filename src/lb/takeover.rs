//! Taking over from certificates gclb-acme did not create (issue #14): which
//! certificate on a proxy the new one supersedes, which merely competes with it
//! for a name, and which hand-made certificate may be deleted when the user
//! adopted it. Pure, so every rule is unit-tested without a cloud.
//!
//! The rules, for the configured names N of one `[[certificates]]`:
//! - **superseded**: a certificate not created by gclb-acme whose every name is
//!   served by N (a configured `*.example.com` serves `www.example.com`, not
//!   `example.com` nor `a.b.example.com`; a `*.example.com` name is served only
//!   by `*.example.com`). The new certificate takes its slot on the proxy; the
//!   resource is kept unless adopted.
//! - **competing** (partial overlap): a certificate that shares a hostname with N
//!   but also serves names N does not. Taking it off would break those names, so
//!   it keeps its place; ours is added, and both `check` and the logs warn that
//!   which one a visitor gets for the shared names is up to Google. The same for
//!   a certificate another `[[certificates]]` of gclb-acme created.
//! - **unrelated**: shares no hostname with N; kept in place.

use std::fmt;

use serde::Serialize;

/// Whether the configured name `pattern` (maybe `*.` wildcard) serves the
/// concrete or wildcard name `name`.
pub fn serves(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    // A wildcard matches exactly one non-wildcard label.
    match (pattern.strip_prefix("*."), name.split_once('.')) {
        (Some(base), Some((label, rest))) => !label.is_empty() && label != "*" && rest == base,
        _ => false,
    }
}

/// Whether one hostname can match both names (so two certificates carrying
/// them compete for it).
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    serves(a, b) || serves(b, a)
}

/// How a certificate's names relate to the configured names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Overlap {
    /// No hostname in common.
    None,
    /// Every name of it is served by the configured names.
    Covered,
    /// Some hostnames in common (`shared`, its names), others not served by
    /// the configured names (`uncovered`).
    Partial {
        shared: Vec<String>,
        uncovered: Vec<String>,
    },
}

/// Compares a certificate's `sans` with the configured `names`. A certificate
/// with no readable names relates to nothing.
pub(crate) fn overlap(names: &[String], sans: &[String]) -> Overlap {
    if sans.is_empty() {
        return Overlap::None;
    }
    let uncovered: Vec<String> = sans
        .iter()
        .filter(|s| !names.iter().any(|n| serves(n, s)))
        .cloned()
        .collect();
    if uncovered.is_empty() {
        return Overlap::Covered;
    }
    let shared: Vec<String> = sans
        .iter()
        .filter(|s| names.iter().any(|n| overlaps(n, s)))
        .cloned()
        .collect();
    if shared.is_empty() {
        Overlap::None
    } else {
        Overlap::Partial { shared, uncovered }
    }
}

/// One certificate a proxy lists, as far as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    /// The resource exists (a dangling reference is left alone).
    pub exists: bool,
    /// Created by gclb-acme for this `[[certificates]]`.
    pub ours: bool,
    /// Created by gclb-acme (for any `[[certificates]]`): never superseded by
    /// another configuration.
    pub marked: bool,
    /// Its names, lower case.
    pub sans: Vec<String>,
}

/// What becomes of one listed certificate when the new one is installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fate", rename_all = "snake_case")]
pub(crate) enum Fate {
    /// The new certificate itself (already listed).
    New,
    /// An older certificate of ours: replaced, then deleted.
    ReplaceOurs,
    /// Hand-made and fully covered: replaced; the resource is kept unless adopted.
    Supersede,
    /// Shares names but serves others too: kept in place, a warning.
    Compete { shared: Vec<String> },
    /// Nothing in common: kept in place.
    Keep,
}

/// Classifies one listed certificate against the configured `names`.
pub(crate) fn fate(names: &[String], new_name: &str, c: &Listed) -> Fate {
    if c.name == new_name {
        return Fate::New;
    }
    if c.ours {
        return Fate::ReplaceOurs;
    }
    if !c.exists {
        return Fate::Keep;
    }
    match overlap(names, &c.sans) {
        Overlap::None => Fate::Keep,
        Overlap::Covered if !c.marked => Fate::Supersede,
        // Another configuration's certificate for names of ours: a conflict of
        // configurations, reported, never resolved by deleting either.
        Overlap::Covered => Fate::Compete {
            shared: c.sans.clone(),
        },
        Overlap::Partial { shared, .. } => Fate::Compete { shared },
    }
}

/// A certificate that stays on a proxy and competes with ours for names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Competitor {
    pub proxy: String,
    pub certificate: String,
    /// Its names a visitor to one of ours could be handed it for.
    pub shared: Vec<String>,
}

impl fmt::Display for Competitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A Certificate Manager map entry is named `map M entry E` (lb::certmap).
        let at = if self.proxy.starts_with("map ") {
            format!("certificate {}", self.proxy)
        } else {
            format!("target HTTPS proxy {}", self.proxy)
        };
        write!(
            f,
            "{at} also lists {} for {}; gclb-acme keeps it in place (it serves names this certificate does not, or another [[certificates]] entry owns it), so which of the two a visitor gets for those names is up to Google's certificate selection: reissue it without those names, or add its other names to domains",
            self.certificate,
            self.shared.join(", ")
        )
    }
}

/// The change to one proxy's list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProxyTakeover {
    pub proxy: String,
    /// Names listed now, in order.
    pub before: Vec<String>,
    /// Names listed afterwards, in order.
    pub after: Vec<String>,
    /// Certificates of ours replaced (deleted once free).
    pub replaced_ours: Vec<String>,
    /// Hand-made certificates taken off the proxy.
    pub superseded: Vec<String>,
    /// Certificates kept in place that share nothing with ours.
    pub kept: Vec<String>,
    /// Certificates kept in place that compete with ours.
    pub competing: Vec<Competitor>,
}

impl ProxyTakeover {
    /// Whether the list changes.
    pub fn changes(&self) -> bool {
        self.before != self.after
    }
}

/// Plans one proxy: the new certificate `new_name` takes the slot of the first
/// replaced or superseded certificate (or is appended), later ones are dropped,
/// everything else keeps its position.
pub(crate) fn plan_proxy(
    proxy: &str,
    names: &[String],
    new_name: &str,
    listed: &[Listed],
) -> ProxyTakeover {
    let mut t = ProxyTakeover {
        proxy: proxy.to_string(),
        before: listed.iter().map(|c| c.name.clone()).collect(),
        after: Vec::with_capacity(listed.len() + 1),
        replaced_ours: Vec::new(),
        superseded: Vec::new(),
        kept: Vec::new(),
        competing: Vec::new(),
    };
    let fates: Vec<Fate> = listed.iter().map(|c| fate(names, new_name, c)).collect();
    let gone_at = |f: &Fate| matches!(f, Fate::ReplaceOurs | Fate::Supersede);
    let new_at = fates.iter().position(|f| *f == Fate::New);
    let first_gone = fates.iter().position(gone_at);
    // As in [`crate::lb::proxies::rewrite`]: listed behind a replaced one, the
    // new certificate moves up into that slot.
    let moves = matches!((new_at, first_gone), (Some(a), Some(g)) if g < a);
    let mut placed = new_at.is_some() && !moves;
    for (c, f) in listed.iter().zip(fates) {
        if moves && f == Fate::New {
            continue;
        }
        let gone = match f {
            Fate::New => false,
            Fate::ReplaceOurs => {
                t.replaced_ours.push(c.name.clone());
                true
            }
            Fate::Supersede => {
                t.superseded.push(c.name.clone());
                true
            }
            Fate::Compete { shared } => {
                t.competing.push(Competitor {
                    proxy: proxy.to_string(),
                    certificate: c.name.clone(),
                    shared,
                });
                false
            }
            Fate::Keep => {
                t.kept.push(c.name.clone());
                false
            }
        };
        if gone {
            if !placed {
                t.after.push(new_name.to_string());
                placed = true;
            }
        } else {
            t.after.push(c.name.clone());
        }
    }
    if !placed {
        t.after.push(new_name.to_string());
    }
    t
}

/// Where the new certificate sits in a proxy's list, said as it is (issue #20:
/// "now serves" was logged for a certificate listed second behind a competitor).
pub(crate) fn placement(
    proxy: &str,
    after: &[String],
    new_name: &str,
    competing: &[Competitor],
) -> String {
    let Some(i) = after.iter().position(|n| n == new_name) else {
        return format!("target HTTPS proxy {proxy} does not list {new_name}");
    };
    let pos = if i == 0 {
        format!(
            "first of {} (also the certificate for clients that send no matching name)",
            after.len()
        )
    } else {
        format!("at position {} of {}", i + 1, after.len())
    };
    let mut s = format!("target HTTPS proxy {proxy} lists {new_name} {pos}");
    if competing.is_empty() {
        s.push_str(", the only certificate on it for these names");
    } else {
        let others: Vec<String> = competing
            .iter()
            .map(|c| format!("{} (for {})", c.certificate, c.shared.join(", ")))
            .collect();
        s.push_str(&format!(
            ", beside {} competing for names of it: visitors may be handed either",
            others.join(", ")
        ));
    }
    s
}

/// The command that deletes a hand-made certificate we stopped serving.
pub(crate) fn delete_command(project: &str, name: &str) -> String {
    format!("gcloud compute ssl-certificates delete {name} --global --project {project}")
}

/// The command that deletes a hand-made Certificate Manager certificate.
pub(crate) fn certificate_manager_delete_command(project: &str, id: &str) -> String {
    format!(
        "gcloud certificate-manager certificates delete {id} --location=global --project {project}"
    )
}

/// Why an adopted certificate is not deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
pub(crate) enum AdoptRefusal {
    /// Some proxy still lists it (one we were not told about, or one where it competes).
    #[error(
        "not deleting adopted sslCertificate {certificate}: target HTTPS proxy {} still serves it{}; remove it from there first (or add the proxy to target_https_proxies, if its names are all this certificate's)",
        .proxies.join(", "), if *.unconfigured { " and is not configured for this certificate" } else { "" }
    )]
    StillServed {
        certificate: String,
        proxies: Vec<String>,
        unconfigured: bool,
    },
    /// It serves names the configured certificate does not.
    #[error(
        "not deleting adopted sslCertificate {certificate}: it also serves {}, which this certificate does not; reissue it without the names gclb-acme now serves, or add them to domains",
        .uncovered.join(", ")
    )]
    OtherNames {
        certificate: String,
        uncovered: Vec<String>,
    },
    /// It was created by gclb-acme: ours are cleaned up as ours, never adopted.
    #[error(
        "not deleting adopted sslCertificate {certificate}: gclb-acme created it (for another [[certificates]] entry, or this one, which cleans it up itself); remove it from adopt"
    )]
    Marked { certificate: String },
}

/// Whether the adopted certificate `c` may be deleted now, given every proxy
/// of the project that lists it (`served_by`) and the configured proxies. The
/// caller asks only after the new certificate is served everywhere.
pub(crate) fn may_delete_adopted(
    names: &[String],
    configured_proxies: &[String],
    c: &Listed,
    served_by: &[String],
) -> Result<(), AdoptRefusal> {
    if c.marked || c.ours {
        return Err(AdoptRefusal::Marked {
            certificate: c.name.clone(),
        });
    }
    if !served_by.is_empty() {
        return Err(AdoptRefusal::StillServed {
            certificate: c.name.clone(),
            proxies: served_by.to_vec(),
            unconfigured: served_by.iter().any(|p| !configured_proxies.contains(p)),
        });
    }
    match overlap(names, &c.sans) {
        Overlap::Covered => Ok(()),
        Overlap::Partial { uncovered, .. } => Err(AdoptRefusal::OtherNames {
            certificate: c.name.clone(),
            uncovered,
        }),
        // No names in common (or unreadable): not a certificate for these names.
        Overlap::None => Err(AdoptRefusal::OtherNames {
            certificate: c.name.clone(),
            uncovered: if c.sans.is_empty() {
                vec!["(no readable names)".into()]
            } else {
                c.sans.clone()
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }
    fn hand(name: &str, sans: &[&str]) -> Listed {
        Listed {
            name: name.into(),
            exists: true,
            ours: false,
            marked: false,
            sans: v(sans),
        }
    }
    fn ours(name: &str, sans: &[&str]) -> Listed {
        Listed {
            ours: true,
            marked: true,
            ..hand(name, sans)
        }
    }

    #[test]
    fn wildcards_serve_exactly_one_label() {
        assert!(serves("*.example.com", "www.example.com"));
        assert!(!serves("*.example.com", "example.com"));
        assert!(!serves("*.example.com", "a.b.example.com"));
        assert!(serves("*.example.com", "*.example.com"));
        assert!(!serves("www.example.com", "*.example.com"));
        assert!(!serves("*.example.com", "*.b.example.com"));
        assert!(overlaps("www.example.com", "*.example.com"));
        assert!(!overlaps("example.com", "*.example.com"));
    }

    #[test]
    fn overlap_kinds() {
        let n = v(&["example.com", "*.example.com"]);
        assert_eq!(overlap(&n, &v(&["example.com"])), Overlap::Covered);
        assert_eq!(
            overlap(&n, &v(&["www.example.com", "example.com"])),
            Overlap::Covered
        );
        assert_eq!(overlap(&n, &v(&["other.test"])), Overlap::None);
        assert_eq!(overlap(&n, &v(&[])), Overlap::None);
        assert_eq!(
            overlap(&n, &v(&["example.com", "other.test"])),
            Overlap::Partial {
                shared: v(&["example.com"]),
                uncovered: v(&["other.test"])
            }
        );
        // A hand-made wildcard serves hosts a single configured name does not.
        assert_eq!(
            overlap(&v(&["app.example.com"]), &v(&["*.example.com"])),
            Overlap::Partial {
                shared: v(&["*.example.com"]),
                uncovered: v(&["*.example.com"])
            }
        );
        // A deeper name is not served by the wildcard.
        assert_eq!(overlap(&n, &v(&["a.b.example.com"])), Overlap::None);
    }

    #[test]
    fn the_walkthrough_takeover_keeps_the_order() {
        let names = v(&["app.example.com"]);
        let listed = [
            hand("cloud-run-iap-cert", &["app.example.com"]),
            hand("unrelated", &["other.test"]),
        ];
        let t = plan_proxy("px", &names, "app-1", &listed);
        assert_eq!(t.after, v(&["app-1", "unrelated"]));
        assert_eq!(t.superseded, v(&["cloud-run-iap-cert"]));
        assert_eq!(t.kept, v(&["unrelated"]));
        assert!(t.competing.is_empty() && t.replaced_ours.is_empty());
        assert!(t.changes());
    }

    #[test]
    fn after_the_old_append_bug_both_go_into_the_first_slot() {
        // [hand-made, unrelated, ours-old] as the appending version left it.
        let names = v(&["app.example.com"]);
        let listed = [
            hand("cloud-run-iap-cert", &["app.example.com"]),
            hand("unrelated", &["other.test"]),
            ours("app-old", &["app.example.com"]),
        ];
        let t = plan_proxy("px", &names, "app-new", &listed);
        assert_eq!(t.after, v(&["app-new", "unrelated"]));
        assert_eq!(t.replaced_ours, v(&["app-old"]));
        // Already serving ours: only the hand-made one leaves.
        let listed = [
            hand("cloud-run-iap-cert", &["app.example.com"]),
            hand("unrelated", &["other.test"]),
            ours("app-new", &["app.example.com"]),
        ];
        let t = plan_proxy("px", &names, "app-new", &listed);
        assert_eq!(t.after, v(&["app-new", "unrelated"]));
        assert!(t.changes());
        let t = plan_proxy(
            "px",
            &names,
            "app-new",
            &[ours("app-new", &["app.example.com"])],
        );
        assert!(!t.changes());
    }

    #[test]
    fn a_subset_is_superseded_a_superset_competes() {
        let names = v(&["a.example.com", "b.example.com"]);
        // Covers fewer names than configured: ours serves all of its names.
        let t = plan_proxy("px", &names, "new", &[hand("h", &["a.example.com"])]);
        assert_eq!(t.superseded, v(&["h"]));
        assert_eq!(t.after, v(&["new"]));
        // Serves a name we do not: kept in place, ours appended, a warning.
        let t = plan_proxy(
            "px",
            &names,
            "new",
            &[hand("h", &["a.example.com", "c.example.com"])],
        );
        assert_eq!(t.after, v(&["h", "new"]));
        assert_eq!(
            t.competing,
            vec![Competitor {
                proxy: "px".into(),
                certificate: "h".into(),
                shared: v(&["a.example.com"])
            }]
        );
        let msg = t.competing[0].to_string();
        assert!(msg.contains("also lists h for a.example.com"), "{msg}");
        assert!(msg.contains("up to Google"), "{msg}");
    }

    #[test]
    fn another_configurations_certificate_is_never_superseded() {
        let names = v(&["a.example.com"]);
        let mut other = hand("other-abc", &["a.example.com"]);
        other.marked = true;
        let t = plan_proxy("px", &names, "new", &[other]);
        assert_eq!(t.after, v(&["other-abc", "new"]));
        assert_eq!(t.competing.len(), 1);
        assert!(t.superseded.is_empty());
    }

    #[test]
    fn dangling_references_are_left_alone() {
        let mut gone = hand("gone", &[]);
        gone.exists = false;
        let t = plan_proxy("px", &v(&["a.example.com"]), "new", &[gone]);
        assert_eq!(t.after, v(&["gone", "new"]));
    }

    #[test]
    fn placement_says_where_and_beside_what() {
        let s = placement("px", &v(&["new", "u"]), "new", &[]);
        assert!(s.contains("lists new first of 2"), "{s}");
        assert!(
            s.contains("the only certificate on it for these names"),
            "{s}"
        );
        let c = Competitor {
            proxy: "px".into(),
            certificate: "h".into(),
            shared: v(&["a.example.com"]),
        };
        let s = placement("px", &v(&["h", "new"]), "new", &[c]);
        assert!(s.contains("at position 2 of 2"), "{s}");
        assert!(s.contains("h (for a.example.com)"), "{s}");
        assert!(!s.contains("now serves"), "{s}");
    }

    #[test]
    fn adoption_deletes_only_an_unserved_fully_covered_hand_made_certificate() {
        let names = v(&["app.example.com"]);
        let conf = v(&["px"]);
        let h = hand("h", &["app.example.com"]);
        assert_eq!(may_delete_adopted(&names, &conf, &h, &[]), Ok(()));
        let e = may_delete_adopted(&names, &conf, &h, &v(&["elsewhere"])).unwrap_err();
        assert!(matches!(
            e,
            AdoptRefusal::StillServed {
                unconfigured: true,
                ..
            }
        ));
        let m = e.to_string();
        assert!(
            m.contains("target HTTPS proxy elsewhere still serves it"),
            "{m}"
        );
        assert!(m.contains("not configured"), "{m}");
        let wide = hand("w", &["app.example.com", "other.test"]);
        let e = may_delete_adopted(&names, &conf, &wide, &[]).unwrap_err();
        assert!(e.to_string().contains("also serves other.test"), "{e}");
        let mut marked = h.clone();
        marked.marked = true;
        assert!(matches!(
            may_delete_adopted(&names, &conf, &marked, &[]),
            Err(AdoptRefusal::Marked { .. })
        ));
        assert!(delete_command("p", "h").ends_with("delete h --global --project p"));
    }

    proptest::proptest! {
        /// The plan shown to users and the list sent to Compute never disagree.
        #[test]
        fn plan_and_rewrite_agree(kinds in proptest::collection::vec(0u8..5, 0..8)) {
            let names = v(&["app.example.com"]);
            let listed: Vec<Listed> = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| match k {
                    0 => ours("new", &["app.example.com"]),
                    1 => ours(&format!("old{i}"), &["app.example.com"]),
                    2 => hand(&format!("hand{i}"), &["app.example.com"]),
                    3 => hand(&format!("wide{i}"), &["app.example.com", "x.test"]),
                    _ => hand(&format!("other{i}"), &["other.test"]),
                })
                .collect();
            // At most one entry per name, as on a real proxy.
            let mut seen = std::collections::HashSet::new();
            let listed: Vec<Listed> = listed.into_iter().filter(|c| seen.insert(c.name.clone())).collect();
            let t = plan_proxy("px", &names, "new", &listed);
            let urls: Vec<String> = listed.iter().map(|c| format!("https://h/global/sslCertificates/{}", c.name)).collect();
            let gone: Vec<&String> = t.replaced_ours.iter().chain(&t.superseded).collect();
            let r = crate::lb::proxies::rewrite("px", &urls, "https://h/global/sslCertificates/new", |n| gone.iter().any(|g| *g == n)).unwrap();
            let sent: Vec<String> = match r {
                crate::lb::proxies::Rewrite::Unchanged => listed.iter().map(|c| c.name.clone()).collect(),
                crate::lb::proxies::Rewrite::Set(l) => l.iter().map(|u| crate::gcp::compute::name_of(u).to_string()).collect(),
            };
            proptest::prop_assert_eq!(&sent, &t.after);
            // Exactly one certificate for the name afterwards, unless one competes.
            let for_name = t.after.iter().filter(|n| *n == "new" || n.starts_with("hand") || n.starts_with("old")).count();
            proptest::prop_assert_eq!(for_name, 1);
        }
    }
}
