//! TXT record sets: quoting, parsing, and the merge that turns "add these values,
//! remove those" into one exact Cloud DNS change (delete the current set as read,
//! add the merged one), so concurrent writers are detected (412/409) instead of
//! overwritten.

use crate::gcp::dns::{Change, ResourceRecordSet};

/// A TXT value as Cloud DNS stores it: one quoted character-string, or several when
/// longer than 255 bytes. ACME values (43 base64url characters) need no escaping,
/// but quotes and backslashes are escaped for safety.
pub fn quote(value: &str) -> String {
    // Split between characters, never inside an escape: each character-string holds
    // at most 255 bytes of escaped text.
    let mut parts = Vec::new();
    let mut part = String::new();
    for c in value.chars() {
        let escape = matches!(c, '"' | '\\');
        if part.len() + c.len_utf8() + usize::from(escape) > 255 {
            parts.push(std::mem::take(&mut part));
        }
        if escape {
            part.push('\\');
        }
        part.push(c);
    }
    parts.push(part);
    parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The value an rrdata holds: its character-strings concatenated, quotes removed
/// (`"a" "b"` -> `ab`; an unquoted `abc` -> `abc`).
pub fn unquote(rrdata: &str) -> String {
    let mut out = String::new();
    let mut chars = rrdata.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                out.push(n);
                            }
                        }
                        '"' => break,
                        c => out.push(c),
                    }
                }
            }
            c if c.is_whitespace() => {}
            c => {
                // An unquoted string runs to the next space.
                out.push(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || n == '"' {
                        break;
                    }
                    out.push(n);
                    chars.next();
                }
            }
        }
    }
    out
}

/// What we want at one name: values to be present and values to be gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edit {
    /// Absolute name with the trailing dot.
    pub name: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// Adds to `change` what `edit` needs given the `current` TXT set at its name.
/// Values of other writers are kept. Returns false when nothing needs changing.
pub fn plan_edit(
    change: &mut Change,
    current: Option<&ResourceRecordSet>,
    edit: &Edit,
    ttl: u32,
) -> bool {
    let existing: Vec<String> = current
        .map(|r| r.rrdatas.iter().map(|d| unquote(d)).collect())
        .unwrap_or_default();
    let mut merged: Vec<String> = current.map(|r| r.rrdatas.clone()).unwrap_or_default();
    merged.retain(|d| !edit.remove.contains(&unquote(d)));
    for v in &edit.add {
        let present_after = merged.iter().any(|d| &unquote(d) == v);
        if !present_after {
            merged.push(quote(v));
        }
    }
    let mut merged_values: Vec<String> = merged.iter().map(|d| unquote(d)).collect();
    let mut before = existing.clone();
    merged_values.sort();
    before.sort();
    if merged_values == before {
        return false;
    }
    if let Some(cur) = current {
        change.deletions.push(cur.clone());
    }
    if !merged.is_empty() {
        change.additions.push(ResourceRecordSet {
            name: edit.name.clone(),
            rtype: "TXT".into(),
            // Keep the TTL of a set another writer made; ours otherwise.
            ttl: Some(current.and_then(|c| c.ttl).unwrap_or(ttl)),
            rrdatas: merged,
            other: Default::default(),
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, ttl: u32, values: &[&str]) -> ResourceRecordSet {
        ResourceRecordSet {
            name: name.into(),
            rtype: "TXT".into(),
            ttl: Some(ttl),
            rrdatas: values.iter().map(|v| quote(v)).collect(),
            other: Default::default(),
        }
    }

    #[test]
    fn quoting_round_trips() {
        for v in [
            "abc",
            "with space",
            "q\"uote",
            "back\\slash",
            &"x".repeat(600),
        ] {
            assert_eq!(unquote(&quote(v)), v, "{v}");
        }
        assert_eq!(quote("tok"), "\"tok\"");
        let long = quote(&"y".repeat(300));
        assert!(long.starts_with('"') && long.contains("\" \""), "{long}");
        assert_eq!(unquote("\"a\" \"b\""), "ab");
        assert_eq!(unquote("plain"), "plain");
    }

    #[test]
    fn quoting_long_runs_of_escapes_terminates_and_round_trips() {
        // Found by fuzzing (dns_names): 128 or more backslashes made the splitter
        // back off to an empty cut and loop forever, growing memory.
        for v in [
            "\\".repeat(128),
            "\\".repeat(300),
            "\"".repeat(300),
            format!("a{}", "\\".repeat(200)),
            "é\\".repeat(200),
        ] {
            let q = quote(&v);
            assert_eq!(unquote(&q), v);
            for part in q.split("\" \"") {
                assert!(part.len() <= 257, "{} bytes", part.len());
            }
        }
    }

    #[test]
    fn add_to_empty_name_is_one_addition() {
        let mut c = Change::default();
        let e = Edit {
            name: "_acme-challenge.example.com.".into(),
            add: vec!["v1".into(), "v2".into()],
            remove: vec![],
        };
        assert!(plan_edit(&mut c, None, &e, 60));
        assert!(c.deletions.is_empty());
        assert_eq!(c.additions.len(), 1);
        assert_eq!(c.additions[0].rrdatas, vec!["\"v1\"", "\"v2\""]);
        assert_eq!(c.additions[0].ttl, Some(60));
    }

    #[test]
    fn merge_keeps_other_writers_values_and_ttl() {
        let cur = set("_acme-challenge.example.com.", 300, &["theirs"]);
        let mut c = Change::default();
        let e = Edit {
            name: cur.name.clone(),
            add: vec!["ours".into()],
            remove: vec![],
        };
        assert!(plan_edit(&mut c, Some(&cur), &e, 60));
        assert_eq!(c.deletions, vec![cur.clone()]);
        assert_eq!(c.additions[0].rrdatas, vec!["\"theirs\"", "\"ours\""]);
        assert_eq!(c.additions[0].ttl, Some(300));
    }

    #[test]
    fn cleanup_removes_only_ours_and_deletes_an_emptied_set() {
        let cur = set("n.", 60, &["theirs", "ours"]);
        let mut c = Change::default();
        let e = Edit {
            name: "n.".into(),
            add: vec![],
            remove: vec!["ours".into()],
        };
        assert!(plan_edit(&mut c, Some(&cur), &e, 60));
        assert_eq!(c.additions[0].rrdatas, vec!["\"theirs\""]);

        let cur = set("n.", 60, &["ours"]);
        let mut c = Change::default();
        assert!(plan_edit(&mut c, Some(&cur), &e, 60));
        assert_eq!(c.deletions.len(), 1);
        assert!(c.additions.is_empty());
    }

    #[test]
    fn nothing_to_do_is_no_change() {
        let cur = set("n.", 60, &["ours"]);
        let mut c = Change::default();
        let add = Edit {
            name: "n.".into(),
            add: vec!["ours".into()],
            remove: vec![],
        };
        assert!(!plan_edit(&mut c, Some(&cur), &add, 60));
        let rm = Edit {
            name: "n.".into(),
            add: vec![],
            remove: vec!["gone".into()],
        };
        assert!(!plan_edit(&mut c, None, &rm, 60));
        assert_eq!(c, Change::default());
    }

    #[test]
    fn values_match_however_they_were_quoted() {
        let mut cur = set("n.", 60, &[]);
        cur.rrdatas = vec!["ours".into()]; // unquoted by another tool
        let mut c = Change::default();
        let add = Edit {
            name: "n.".into(),
            add: vec!["ours".into()],
            remove: vec![],
        };
        assert!(!plan_edit(&mut c, Some(&cur), &add, 60));
    }
}
