//! TXT record sets, provider-neutral: quoting, parsing, and the merge that turns
//! "add these values, remove those" into the set a name must hold afterwards,
//! keeping every value another writer put there. A provider writes that set in one
//! conditional write (Cloud DNS: delete the set as read, add the merged one), so a
//! concurrent writer is detected instead of overwritten.

/// A TXT value in presentation format (RFC 1035 5.1), as Cloud DNS and most DNS
/// APIs store it: one quoted character-string, or several when longer than 255
/// bytes. ACME values (43 base64url characters) need no escaping,
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

/// The rrdatas `edit`'s name must hold afterwards, given the `current` ones (in
/// presentation format, as the provider returned them), or `None` when nothing
/// needs changing. Values of other writers are kept exactly as they were quoted;
/// an empty result means the set is to be deleted.
pub fn merge(current: &[String], edit: &Edit) -> Option<Vec<String>> {
    let mut before: Vec<String> = current.iter().map(|d| unquote(d)).collect();
    let mut merged: Vec<String> = current.to_vec();
    merged.retain(|d| !edit.remove.contains(&unquote(d)));
    for v in &edit.add {
        let present_after = merged.iter().any(|d| &unquote(d) == v);
        if !present_after {
            merged.push(quote(v));
        }
    }
    let mut after: Vec<String> = merged.iter().map(|d| unquote(d)).collect();
    before.sort();
    after.sort();
    if after == before { None } else { Some(merged) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| quote(v)).collect()
    }

    fn edit(add: &[&str], remove: &[&str]) -> Edit {
        Edit {
            name: "n.".into(),
            add: add.iter().map(|v| v.to_string()).collect(),
            remove: remove.iter().map(|v| v.to_string()).collect(),
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
    fn merge_adds_keeps_theirs_and_removes_only_ours() {
        assert_eq!(
            merge(&[], &edit(&["v1", "v2"], &[])),
            Some(quoted(&["v1", "v2"]))
        );
        assert_eq!(
            merge(&quoted(&["theirs"]), &edit(&["ours"], &[])),
            Some(quoted(&["theirs", "ours"]))
        );
        assert_eq!(
            merge(&quoted(&["theirs", "ours"]), &edit(&[], &["ours"])),
            Some(quoted(&["theirs"]))
        );
        // The last value gone: the set is to be deleted.
        assert_eq!(
            merge(&quoted(&["ours"]), &edit(&[], &["ours"])),
            Some(vec![])
        );
    }

    #[test]
    fn merge_without_effect_is_none() {
        assert_eq!(merge(&quoted(&["ours"]), &edit(&["ours"], &[])), None);
        assert_eq!(merge(&[], &edit(&[], &["gone"])), None);
        // Another tool stored it unquoted: still the same value.
        assert_eq!(merge(&["ours".to_string()], &edit(&["ours"], &[])), None);
    }
}
