//! Stored objects that no file needs any more. A step commits its database change before it
//! deletes objects, so a process killed in between leaves them behind: the quarantine copy of a
//! file just rejected or encrypted, the blob of a file just deleted, the blobs of encryption
//! runs that were killed before the run that finished the file. They are sealed under keys that
//! no longer exist, so they are unreadable, but they take space. This pass finds them by
//! listing the store against the file rows.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use object_store::path::Path;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QuerySelect as _};
use uuid::Uuid;

use entity::file;

use crate::types::FileStatus;
use crate::{Core, JobError};

/// Rows looked up per database query while listing.
const PAGE: usize = 500;

/// What an object path says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Quarantine(Uuid),
    Blob { file: Uuid, blob: Uuid },
}

impl Object {
    fn parse(path: &Path) -> Option<Self> {
        let mut parts = path.parts();
        let kind = parts.next()?;
        let file = Uuid::parse_str(parts.next()?.as_ref()).ok()?;
        let blob = parts.next();
        if parts.next().is_some() {
            return None;
        }
        match (kind.as_ref(), blob) {
            ("quarantine", None) => Some(Self::Quarantine(file)),
            ("blobs", Some(blob)) => Some(Self::Blob {
                file,
                blob: Uuid::parse_str(blob.as_ref()).ok()?,
            }),
            _ => None,
        }
    }

    fn file(self) -> Uuid {
        match self {
            Self::Quarantine(file) | Self::Blob { file, .. } => file,
        }
    }
}

/// Whether `object` is no longer needed, given its file's row (status and blob id), if any.
/// Objects of files still on their way to `ready` are left to the jobs, which clean up after
/// themselves; an object without a row is only removed after `grace`, since an upload writes
/// its quarantine object just before it records the row — and only when the pass before found
/// it without a row too: an object's age is not a safe guide on its own (a store may date a
/// multipart object from the start of its upload, so a slow upload's object is "old" the
/// moment it is complete, before its row is written).
fn is_orphan(object: Object, row: Option<&(FileStatus, Option<Uuid>)>, old_enough: bool) -> bool {
    let Some((status, current_blob)) = row else {
        return old_enough;
    };
    match status {
        FileStatus::Quarantined | FileStatus::Validated => false,
        FileStatus::Ready => match object {
            Object::Quarantine(_) => true,
            Object::Blob { blob, .. } => *current_blob != Some(blob),
        },
        FileStatus::Rejected | FileStatus::Deleted => true,
    }
}

/// Deletes every orphaned object (and, in a local store, stale staging files). Returns how
/// many it removed. Safe to run in several processes at once: deletes are idempotent.
pub async fn remove(core: &Core) -> Result<usize, JobError> {
    let grace = core.config.orphan_grace;
    let cutoff =
        Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::hours(1));
    let mut removed = 0;
    let seen_before = std::mem::take(&mut *lock(&core.rowless));
    let mut rowless = HashSet::new();
    for prefix in ["quarantine", "blobs"] {
        let mut listing = core.storage.list_dated(prefix).chunks(PAGE);
        while let Some(page) = listing.next().await {
            let page: Vec<(Path, DateTime<Utc>)> =
                page.into_iter().collect::<Result<_, _>>().map_err(|e| {
                    JobError::Transient(anyhow::Error::new(e).context("listing stored objects"))
                })?;
            removed += remove_page(core, page, cutoff, &seen_before, &mut rowless).await?;
        }
    }
    *lock(&core.rowless) = rowless;
    removed += core.storage.remove_stale_partials(grace).await;
    if removed > 0 {
        tracing::info!(removed, "removed stored objects that no file needs");
    }
    Ok(removed)
}

fn lock(set: &std::sync::Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes the page's orphans. An object without a row is removed only if it is in
/// `seen_before` (the last pass found it without a row too); otherwise it goes into `rowless`
/// for the next pass.
async fn remove_page(
    core: &Core,
    page: Vec<(Path, DateTime<Utc>)>,
    cutoff: DateTime<Utc>,
    seen_before: &HashSet<String>,
    rowless: &mut HashSet<String>,
) -> Result<usize, JobError> {
    let objects: Vec<(Path, Object, DateTime<Utc>)> = page
        .into_iter()
        .filter_map(|(path, modified)| Object::parse(&path).map(|o| (path, o, modified)))
        .collect();
    let mut ids: Vec<Uuid> = objects.iter().map(|(_, o, _)| o.file()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows: HashMap<Uuid, (FileStatus, Option<Uuid>)> = file::Entity::find()
        .select_only()
        .columns([file::Column::Id, file::Column::Status, file::Column::BlobId])
        .filter(file::Column::Id.is_in(ids))
        .into_tuple::<(Uuid, FileStatus, Option<Uuid>)>()
        .all(&core.db)
        .await?
        .into_iter()
        .map(|(id, state, blob)| (id, (state, blob)))
        .collect();
    let mut removed = 0;
    for (path, object, modified) in objects {
        let row = rows.get(&object.file());
        if !is_orphan(object, row, modified < cutoff) {
            continue;
        }
        if row.is_none() && !seen_before.contains(path.as_ref()) {
            rowless.insert(path.to_string());
            continue;
        }
        match core.storage.delete(&path).await {
            Ok(()) => removed += 1,
            Err(err) => tracing::warn!(%path, error = %err, "could not delete an orphaned object"),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_parse() {
        let (f, b) = (Uuid::now_v7(), Uuid::new_v4());
        assert_eq!(
            Object::parse(&Path::from(format!("quarantine/{f}"))),
            Some(Object::Quarantine(f))
        );
        assert_eq!(
            Object::parse(&Path::from(format!("blobs/{f}/{b}"))),
            Some(Object::Blob { file: f, blob: b })
        );
        for other in [
            format!("blobs/{f}"),
            format!("quarantine/{f}/{b}"),
            format!("blobs/{f}/{b}/x"),
            "blobs/not-a-uuid/x".to_owned(),
            format!("elsewhere/{f}"),
        ] {
            assert_eq!(Object::parse(&Path::from(other.as_str())), None, "{other}");
        }
    }

    #[test]
    fn only_what_no_file_needs_is_an_orphan() {
        let (f, b, other) = (Uuid::now_v7(), Uuid::new_v4(), Uuid::new_v4());
        let q = Object::Quarantine(f);
        let blob = Object::Blob { file: f, blob: b };
        let row = |s: &str, blob: Option<Uuid>| FileStatus::parse(s).map(|s| (s, blob));
        let cases = [
            // in flight: the jobs own these
            (q, row("quarantined", None), true, false),
            (q, row("validated", None), true, false),
            (blob, row("validated", None), true, false),
            // finished: only the current blob of a ready file stays
            (q, row("ready", Some(b)), false, true),
            (blob, row("ready", Some(b)), true, false),
            (blob, row("ready", Some(other)), false, true),
            (q, row("rejected", None), false, true),
            (blob, row("rejected", None), false, true),
            (blob, row("deleted", None), false, true),
            // no row: an upload about to record it, until the grace period is over
            (q, None, false, false),
            (q, None, true, true),
        ];
        for (object, row, old, expected) in cases {
            assert_eq!(
                is_orphan(object, row.as_ref(), old),
                expected,
                "{object:?} {row:?} old={old}"
            );
        }
    }
}
