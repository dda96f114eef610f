//! The validate job: reads a quarantined upload back once, checking that every chunk is the one
//! sealed at upload, its size, malware (clamd, when configured), real type, allowlist and
//! extension, and moves it to `validated` (queueing encryption) or `rejected` with a reason its
//! owner can read.

use futures::StreamExt as _;
use sea_orm::sea_query::Expr;
use uuid::Uuid;

use entity::file;

use super::encrypt::EncryptFile;
use super::quarantine::{
    UNSCANNED, load, open_quarantine, read_error, reject, settle, transition, with_lease,
};
use crate::audit::{Action, Actor, Event};
use crate::crypto::stream::CHUNK_SIZE;
use crate::filetype::{self, MacroProbe, TextProbe};
use crate::queue::payload;
use crate::scan::Verdict;
use crate::text::{Arg, t, t_with};
use crate::types::{FileName, FileStatus};
use crate::{Core, JobError};

payload! {
    /// Check a quarantined upload: integrity, size, malware, real type, allowlist, extension.
    ValidateFile(file_id) in "validate";
}

impl super::Job for ValidateFile {
    async fn run(self, core: &Core, _attempt: usize) -> Result<(), JobError> {
        validate(core, self.file_id).await
    }
}

/// Reads the quarantine object back, checks what the file really is, and moves it to
/// `validated` (then enqueues encryption) or `rejected` with a reason its owner can read.
#[tracing::instrument(skip(core))]
pub async fn validate(core: &Core, file_id: Uuid) -> Result<(), JobError> {
    let Some(row) = load(core, file_id).await? else {
        return Ok(());
    };
    match row.status {
        FileStatus::Quarantined => {}
        FileStatus::Validated => {
            // An earlier run got this far; make sure encryption is queued.
            core.queue.enqueue(EncryptFile::new(file_id)).await?;
            return Ok(());
        }
        _ => return Ok(()),
    }
    with_lease(core, &row, UNSCANNED, |row| validate_leased(core, row)).await
}

async fn validate_leased(core: &Core, row: file::Model) -> Result<(), JobError> {
    let file_id = row.id;
    let limit = core.config.max_upload_bytes;
    if u64::try_from(row.size).unwrap_or(u64::MAX) > limit {
        let reason = t_with(
            "file-rejected-over-limit",
            [("limit", Arg::from(limit.to_string()))],
        );
        return reject(core, &row, &reason, None).await;
    }

    let mut body = match open_quarantine(core, &row).await {
        Ok(body) => body,
        Err(err) => return settle(core, &row, err).await,
    };
    // clamd sees the plaintext as it is read: one pass for every check. Unreachable or failing,
    // it fails the job (retried); the file stays quarantined, never ready unscanned.
    let mut scan = match &core.scanner {
        Some(scanner) => Some(scanner.start().await?),
        None => None,
    };
    let mut head = Vec::with_capacity(CHUNK_SIZE);
    let mut probe = TextProbe::default();
    let mut macros = MacroProbe::default();
    let mut seen = 0u64;
    while let Some(piece) = body.next().await {
        let piece = match piece {
            Ok(piece) => piece,
            Err(err) => return settle(core, &row, read_error(err)).await,
        };
        if head.len() < CHUNK_SIZE {
            let take = (CHUNK_SIZE - head.len()).min(piece.len());
            head.extend_from_slice(&piece[..take]);
        }
        probe.update(&piece);
        macros.update(&piece);
        seen += piece.len() as u64;
        if let Some(scan) = scan.as_mut() {
            scan.feed(&piece).await?;
        }
    }
    // Every chunk was authenticated as it was opened (AES-256-GCM under the upload's own key,
    // bound to this file, its position and whether it is the last), so the plaintext is what the
    // upload sealed and hashed: the digest it recorded holds without hashing it again
    // (docs/SECURITY.md). The length is checked all the same.
    if i64::try_from(seen).ok() != Some(row.size) {
        return reject(core, &row, &t("file-rejected-mismatch"), None).await;
    }

    if let Some(scan) = scan {
        let reason = match scan.verdict().await? {
            Verdict::Clean => None,
            Verdict::Infected(signature) => Some(t_with(
                "file-rejected-malware",
                [("signature", Arg::from(signature))],
            )),
            Verdict::TooLarge => Some(t("file-rejected-too-large-to-scan")),
        };
        if let Some(reason) = reason {
            return reject(core, &row, &reason, None).await;
        }
    }

    let (mime, executable) = filetype::sniff(&head, probe.is_text(), macros.found());
    let reason = match FileName::parse(&row.name) {
        Ok(name) => filetype::reject_reason(&name, &mime, executable, &core.config.allowed_types),
        Err(err) => Some(err.0),
    };
    if let Some(reason) = reason {
        return reject(core, &row, &reason, Some(&mime)).await;
    }
    let event = Event::new(Action::FileValidated, Actor::System)
        .target("file", file_id)
        .details(serde_json::json!({ "content_type": mime }));
    let sets = vec![
        (file::Column::Status, Expr::value(FileStatus::Validated)),
        (file::Column::ContentType, Expr::value(mime)),
    ];
    if transition(core, file_id, FileStatus::Quarantined, sets, event).await? {
        core.queue.enqueue(EncryptFile::new(file_id)).await?;
    }
    Ok(())
}
