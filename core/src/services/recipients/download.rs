//! A recipient's download: opening the link, taking a place against its download limit, and
//! recording, when the transfer ends, whether it delivered the file.

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use sea_orm::EntityTrait as _;
use secrecy::SecretString;
use uuid::Uuid;

use entity::share;

use super::transfer::Transfer;
use super::{Refusal, Resolved, SharedFile, check_password, deny, files_of, gone_reason, resolve};
use crate::audit::{Action, Actor, Change, Event, RequestMeta};
use crate::db::by_key;
use crate::services::files::{Content, Delivery, FileView, open_ready};
use crate::services::receipts;
use crate::types::FileStatus;
use crate::{Core, ServiceError};

/// What a download through a link asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// What the link shares: its file (the one a bundle still opens), or every file of a
    /// bundle as one ZIP.
    Share,
    /// One file of the share.
    File(Uuid),
    /// Every file of the share as one ZIP ("Download all").
    All,
}

/// A link opened for a download: its share and the files asked for, the password checked,
/// the files ready.
pub struct Opened {
    share: share::Model,
    /// The files delivered: one, or (for a ZIP) every file the share still opens.
    files: Vec<SharedFile>,
    zip: bool,
    /// Whether `files` are every file the share still opens.
    whole: bool,
}

impl Opened {
    /// The file, to choose the range served; `None` for a ZIP, which is served whole.
    pub fn file(&self) -> Option<FileView> {
        match self.files.as_slice() {
            [one] if !self.zip => Some(FileView::from(one.file.clone())),
            _ => None,
        }
    }
}

/// Opens a link for a download of `which`: it works, the browser proved the recipient's
/// address (through `session`) if the link asks for it, the password (if any) is right and the
/// files are ready. Whether there is a download left to take is [`deliver`]'s to decide.
pub async fn open(
    core: &Core,
    raw_token: &str,
    which: Which,
    given: Option<SecretString>,
    session: Option<&str>,
    meta: &RequestMeta,
) -> Result<Opened, Refusal> {
    let Resolved { share, files, .. } = resolve(core, raw_token, meta, true).await?;
    super::verify::require(core, &share, session, meta).await?;
    check_password(core, &share, given, meta).await?;
    // What the link shares is what its page shows: the one file it still opens, or a ZIP.
    let live: Vec<Uuid> = files
        .iter()
        .filter(|f| !f.removed())
        .map(|f| f.file.id)
        .collect();
    let which = match (which, live.as_slice()) {
        (Which::Share, [one]) => Which::File(*one),
        (Which::Share, _) => Which::All,
        (other, _) => other,
    };
    let (files, zip) = match which {
        Which::File(id) => {
            let Some(one) = files.into_iter().find(|f| f.file.id == id) else {
                return Err(Refusal::Unknown);
            };
            if one.removed() {
                deny(core, share.id, "file removed", meta).await?;
                return Err(Refusal::Gone("file removed"));
            }
            (vec![one], false)
        }
        _ => (files.into_iter().filter(|f| !f.removed()).collect(), true),
    };
    if files.iter().any(|f| f.file.status != FileStatus::Ready) {
        return Err(Refusal::NotReady);
    }
    let whole = files.len() == live.len();
    Ok(Opened {
        share,
        files,
        zip,
        whole,
    })
}

/// What a download delivers.
pub enum Delivered {
    /// One file (or the inclusive range of it asked for).
    File(Content),
    /// Every file of a bundle, as a ZIP streamed while it is written (its length unknown).
    Zip {
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    },
}

/// Streams an opened link's file (or the inclusive `range` of it, checked against its size),
/// or its files as one ZIP, to a recipient. The rule (README, "What a recipient sees"):
///
/// - Each file of a share counts its downloads against `max_downloads`; a ZIP counts one of
///   each of its files, all or none.
/// - A download takes its places before the first byte, in one commit with its
///   `share.download_started` event, so concurrent requests never exceed the limit.
/// - It keeps them if it delivers its last byte (a complete download), and gives them back if
///   it stops short; either way `share.downloaded` records the bytes delivered and whether it
///   completed, when the transfer ends.
/// - Once a download of a file through the link is complete, a range of it that does not start
///   at the first byte (a resumed download) is free while the link lives, even when it is used
///   up. A ZIP is not resumed: it is written afresh each time.
/// - A HEAD gets the headers a download would, and is none.
pub async fn deliver(
    core: &Core,
    opened: Opened,
    range: Option<(u64, u64)>,
    delivery: Delivery,
    meta: &RequestMeta,
) -> Result<Delivered, Refusal> {
    let Opened {
        share,
        files,
        zip,
        whole,
    } = opened;
    let range = range.filter(|_| !zip);
    let resumed = !zip
        && range.is_some_and(|(start, _)| start > 0)
        && files.iter().all(|f| f.counts.downloads_completed > 0);
    if !resumed && files.iter().any(|f| f.used_up(&share)) {
        return Err(refuse_used_up(core, &share, &files, meta).await?);
    }
    if delivery == Delivery::HeadersOnly {
        return Ok(match (zip, files.into_iter().next()) {
            (false, Some(one)) => Delivered::File(Content::headers_only(one.file, range)),
            _ => Delivered::Zip {
                body: futures::stream::empty().boxed(),
            },
        });
    }
    let mut ids: Vec<Uuid> = files.iter().map(|f| f.file.id).collect();
    ids.sort_unstable();
    let started = Event::new(Action::ShareDownloadStarted, Actor::Recipient(share.id))
        .target("share", share.id)
        .details(serde_json::json!({
            "file_id": (!zip).then(|| ids[0]),
            "file_ids": zip.then(|| ids.clone()),
            "range": range.map(|(start, end)| [start, end]),
            "counted": !resumed,
        }))
        .from(meta);
    if resumed {
        core.audit.record(started).await?;
    } else {
        let claim = Change::ClaimDownload {
            share: share.id,
            files: ids.clone(),
        };
        if !core.audit.record_with(claim, started).await? {
            // Ended meanwhile (revoked, expired), or its places taken: by complete downloads,
            // or by downloads under way.
            let now = by_key(share::Entity::find_by_id(share.id), &core.db)
                .await?
                .unwrap_or(share);
            let all = files_of(core, now.id).await?;
            if let Some(reason) = gone_reason(&now, &all, Utc::now()) {
                deny(core, now.id, reason, meta).await?;
                return Err(Refusal::Gone(reason));
            }
            let asked: Vec<SharedFile> = all
                .into_iter()
                .filter(|f| ids.contains(&f.file.id))
                .collect();
            return Err(refuse_used_up(core, &now, &asked, meta).await?);
        }
    }
    let receipt = share.receipts.then(|| receipts::Download {
        owner: share.owner_id,
        share: share.id,
        file_name: files
            .iter()
            .map(|f| f.file.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        recipient: share.recipient.clone(),
        at: Utc::now(),
        meta: meta.clone(),
    });
    // Whether completing it leaves the link nothing to download.
    let last = whole
        && share.max_downloads.is_some_and(|max| {
            files
                .iter()
                .all(|f| f.counts.downloads_completed + 1 >= max)
        });
    let actor = Actor::Recipient(share.id);
    let (body, expected, reaches_end, content) = if zip {
        let models = files.iter().map(|f| f.file.clone()).collect();
        let body = super::zip::stream(core.clone(), models, actor, meta.clone());
        (body, None, true, None)
    } else {
        let file = files[0].file.clone();
        let size = u64::try_from(file.size).unwrap_or(0);
        let body = match open_ready(core, &file, range, actor, meta).await {
            Ok(body) => body,
            // Nothing was delivered: dropping the claim's transfer gives the place back.
            Err(err) => {
                drop(Transfer::new(core, &share, ids, !resumed, range, meta));
                return Err(Refusal::Error(err));
            }
        };
        let expected = range.map_or(size, |(start, end)| end - start + 1);
        let reaches_end = range.is_none_or(|(_, end)| end + 1 >= size);
        (body, Some(expected), reaches_end, Some(file))
    };
    let mut transfer = Transfer::new(core, &share, ids, !resumed, range, meta);
    transfer.last = last;
    transfer.expected = expected;
    transfer.reaches_end = reaches_end;
    transfer.receipt = receipt;
    let body = transfer.track(body);
    Ok(match content {
        Some(file) => Delivered::File(Content {
            file: FileView::from(file),
            range,
            body,
        }),
        None => Delivered::Zip { body },
    })
}

/// The refusal of a download for which the link has no place left: gone when its downloads
/// are complete, 409 while some are under way (one may still give its place back).
async fn refuse_used_up(
    core: &Core,
    share: &share::Model,
    files: &[SharedFile],
    meta: &RequestMeta,
) -> Result<Refusal, ServiceError> {
    let complete = share
        .max_downloads
        .is_some_and(|max| files.iter().any(|f| f.counts.downloads_completed >= max));
    let reason = if complete {
        "used up"
    } else {
        "download in progress"
    };
    deny(core, share.id, reason, meta).await?;
    Ok(if complete {
        Refusal::Gone("used up")
    } else {
        Refusal::InProgress
    })
}
