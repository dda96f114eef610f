//! A recipient's download: opening the link, taking a place against its download limit, and
//! recording, when the transfer ends, whether it delivered the file.

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use sea_orm::EntityTrait as _;
use secrecy::SecretString;
use uuid::Uuid;

use entity::{file, share};

use super::{Refusal, Resolved, check_password, deny, gone_reason, resolve, used_up};
use crate::audit::{Action, Actor, Change, Event, Outcome, RequestMeta};
use crate::db::by_key;
use crate::services::files::{Content, Delivery, FileView, open_ready};
use crate::services::receipts;
use crate::types::FileStatus;
use crate::{Core, ServiceError};

/// A link opened for a download: its share and file, the password checked, the file ready.
pub struct Opened {
    share: share::Model,
    file: file::Model,
}

impl Opened {
    /// The file, to choose the range served.
    pub fn file(&self) -> FileView {
        FileView::from(self.file.clone())
    }
}

/// Opens a link for a download: it works, the browser proved the recipient's address (through
/// `session`) if the link asks for it, the password (if any) is right and the file is ready.
/// Whether there is a download left to take is [`deliver`]'s to decide.
pub async fn open(
    core: &Core,
    raw_token: &str,
    given: Option<SecretString>,
    session: Option<&str>,
    meta: &RequestMeta,
) -> Result<Opened, Refusal> {
    let Resolved { share, file, .. } = resolve(core, raw_token, meta, true).await?;
    super::verify::require(core, &share, session, meta).await?;
    check_password(core, &share, given, meta).await?;
    if file.status != FileStatus::Ready {
        return Err(Refusal::NotReady);
    }
    Ok(Opened { share, file })
}

/// Streams an opened link's file (or the inclusive `range` of it, checked against its size)
/// to a recipient. The rule (README, "What a recipient sees"):
///
/// - A download takes its place against `max_downloads` before the first byte, in one commit
///   with its `share.download_started` event, so concurrent requests never exceed the limit.
/// - It keeps the place if it delivers the file's last byte (a complete download), and gives
///   it back if it stops short; either way `share.downloaded` records the bytes delivered and
///   whether it completed, when the transfer ends.
/// - Once a download of the link is complete, a range that does not start at the first byte
///   (a resumed download) is free while the link lives, even when it is used up.
/// - A HEAD gets the headers a download would, and is none.
pub async fn deliver(
    core: &Core,
    opened: Opened,
    range: Option<(u64, u64)>,
    delivery: Delivery,
    meta: &RequestMeta,
) -> Result<Content, Refusal> {
    let Opened { share, file } = opened;
    let resumed = range.is_some_and(|(start, _)| start > 0) && share.downloads_completed > 0;
    if !resumed && used_up(&share) {
        return Err(refuse_used_up(core, &share, meta).await?);
    }
    if delivery == Delivery::HeadersOnly {
        return Ok(Content::headers_only(file, range));
    }
    let started = Event::new(Action::ShareDownloadStarted, Actor::Recipient(share.id))
        .target("share", share.id)
        .details(serde_json::json!({
            "file_id": file.id,
            "range": range.map(|(start, end)| [start, end]),
            "counted": !resumed,
        }))
        .from(meta);
    if resumed {
        core.audit.record(started).await?;
    } else {
        let claim = Change::ClaimDownload { share: share.id };
        if !core.audit.record_with(claim, started).await? {
            // Ended meanwhile (revoked, expired), or its places taken: by complete downloads,
            // or by downloads under way.
            let now = by_key(share::Entity::find_by_id(share.id), &core.db)
                .await?
                .unwrap_or(share);
            if let Some(reason) = gone_reason(&now, &file, Utc::now()) {
                deny(core, now.id, reason, meta).await?;
                return Err(Refusal::Gone(reason));
            }
            return Err(refuse_used_up(core, &now, meta).await?);
        }
    }
    let size = u64::try_from(file.size).unwrap_or(0);
    let receipt = share.receipts.then(|| receipts::Download {
        owner: share.owner_id,
        share: share.id,
        file_name: file.name.clone(),
        recipient: share.recipient.clone(),
        at: Utc::now(),
        meta: meta.clone(),
    });
    let transfer = Transfer {
        core: core.clone(),
        share: share.id,
        last: share.max_downloads == Some(share.downloads_completed + 1),
        file_id: file.id,
        counted: !resumed,
        range,
        expected: range.map_or(size, |(start, end)| end - start + 1),
        reaches_end: range.is_none_or(|(_, end)| end + 1 >= size),
        delivered: 0,
        meta: meta.clone(),
        receipt,
    };
    match open_ready(core, &file, range, Actor::Recipient(share.id), meta).await {
        Ok(body) => Ok(Content {
            file: FileView::from(file),
            range,
            body: transfer.track(body),
        }),
        // Nothing was delivered: dropping the transfer gives the place back.
        Err(err) => Err(Refusal::Error(err)),
    }
}

/// The refusal of a download for which the link has no place left: gone when its downloads
/// are complete, 409 while some are under way (one may still give its place back).
async fn refuse_used_up(
    core: &Core,
    share: &share::Model,
    meta: &RequestMeta,
) -> Result<Refusal, ServiceError> {
    let complete = share
        .max_downloads
        .is_some_and(|max| share.downloads_completed >= max);
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

/// A recipient's download under way: counts what it delivers and, when it ends (completed,
/// cut off, or never started), records `share.downloaded` and keeps or gives back its place.
struct Transfer {
    core: Core,
    share: Uuid,
    /// Whether completing it makes the link used up.
    last: bool,
    file_id: Uuid,
    /// Whether it took a place (a resumed download does not).
    counted: bool,
    range: Option<(u64, u64)>,
    expected: u64,
    /// Whether its last byte is the file's.
    reaches_end: bool,
    /// Bytes handed to the connection. The server stops reading the body once it has the
    /// length it announced, so a transfer is complete when it handed over all of them.
    delivered: u64,
    meta: RequestMeta,
    /// The receipt its owner is sent if it completes (when the share asks for receipts).
    receipt: Option<receipts::Download>,
}

impl Transfer {
    /// `body`, counted; the transfer records itself when the body ends or is dropped.
    fn track(
        self,
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    ) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        futures::stream::unfold((body, Some(self)), |(mut body, transfer)| async move {
            let mut transfer = transfer?;
            match body.next().await {
                Some(Ok(piece)) => {
                    transfer.delivered += piece.len() as u64;
                    Some((Ok(piece), (body, Some(transfer))))
                }
                // The transfer ends here, short of its end.
                Some(Err(err)) => Some((Err(err), (body, None))),
                None => None,
            }
        })
        .boxed()
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        let completed = self.reaches_end && self.delivered == self.expected;
        let event = Event::new(Action::ShareDownloaded, Actor::Recipient(self.share))
            .target("share", self.share)
            .outcome(if completed {
                Outcome::Success
            } else {
                Outcome::Failure
            })
            .details(serde_json::json!({
                "file_id": self.file_id,
                "bytes": self.delivered,
                "completed": completed,
                "range": self.range.map(|(start, end)| [start, end]),
                "counted": self.counted,
            }))
            .from(&self.meta);
        let change = self.counted.then_some(if completed {
            Change::CompleteDownload { share: self.share }
        } else {
            Change::ReleaseDownload { share: self.share }
        });
        let (core, share, last) = (self.core.clone(), self.share, self.last && completed);
        let receipt = self.receipt.take().filter(|_| completed).map(|mut r| {
            r.at = Utc::now();
            r
        });
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(%share, "a download ended outside the runtime: its end is not recorded");
            return;
        };
        runtime.spawn(async move {
            let recorded = match change {
                Some(change) => core.audit.record_with(change, event).await.map(|_| ()),
                None => core.audit.record(event).await,
            };
            if let Err(err) = recorded {
                tracing::warn!(%share, error = %err, "could not record the end of a download");
            }
            if let Some(receipt) = receipt
                && let Err(err) = receipts::record(&core, receipt).await
            {
                tracing::warn!(%share, error = %err, "could not keep a download receipt");
            }
            if last {
                // The last download: the outbox copy of this link opens nothing any more.
                core.mailer.forget(&share.to_string()).await;
            }
        });
    }
}
