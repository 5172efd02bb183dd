//! Moving state between stores (a directory to a bucket, and back), losing
//! nothing: the core of the command issue 17 asks for.
//!
//! Every object of the source is copied to the destination create-only
//! (`Expect::Absent`): an object already there with the same bytes is left
//! alone, one with other bytes is a conflict that is reported and never
//! overwritten. The source is never changed. Leases are not state to move
//! (they belong to running daemons and expire on their own) and are skipped.
//! A dry run reads both sides and reports what a real run would do.

use super::store::{Expect, Store, StoreError};

/// Names under this prefix are not copied.
const LEASES: &str = "leases/";

/// What a copy did (or, dry, would do), by object name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Written to the destination (or to be written, in a dry run).
    pub copied: Vec<String>,
    /// Already in the destination with the same content.
    pub identical: Vec<String>,
    /// In the destination with other content: left as they are.
    pub conflicts: Vec<String>,
}

impl CopyReport {
    /// Whether everything in the source is now (or would be) in the destination.
    pub fn complete(&self) -> bool {
        self.conflicts.is_empty()
    }
}

/// Copies every object of `from` into `to`; with `dry_run`, writes nothing.
pub async fn copy_all<F: Store, T: Store>(
    from: &F,
    to: &T,
    dry_run: bool,
) -> Result<CopyReport, StoreError> {
    let mut report = CopyReport::default();
    for name in from.list("").await? {
        if name.starts_with(LEASES) {
            continue;
        }
        // Gone since the listing: nothing to copy.
        let Some(src) = from.read(&name).await? else {
            continue;
        };
        match to.read(&name).await? {
            Some(dst) if dst.data == src.data => report.identical.push(name),
            Some(_) => report.conflicts.push(name),
            None if dry_run => report.copied.push(name),
            None => match to.write(&name, &src.data, Expect::Absent).await {
                Ok(_) => report.copied.push(name),
                // Someone wrote it meanwhile: compare again.
                Err(StoreError::Conflict { .. }) => match to.read(&name).await? {
                    Some(dst) if dst.data == src.data => report.identical.push(name),
                    _ => report.conflicts.push(name),
                },
                Err(e) => return Err(e),
            },
        }
    }
    Ok(report)
}
