//! A recipient's download under way, from its first byte to the record of how it ended.

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use uuid::Uuid;

use entity::share;

use crate::Core;
use crate::audit::{Action, Actor, Change, Event, Outcome, RequestMeta};
use crate::services::receipts;

/// A recipient's download under way: counts what it delivers and, when it ends (completed,
/// cut off, or never started), records `share.downloaded` and keeps or gives back its place.
pub(super) struct Transfer {
    core: Core,
    share: Uuid,
    /// Whether completing it makes the link used up.
    pub(super) last: bool,
    /// The files delivered, by id (one, or a ZIP's).
    files: Vec<Uuid>,
    /// Whether it took a place of each (a resumed download does not).
    counted: bool,
    range: Option<(u64, u64)>,
    /// The bytes it ends with when complete; `None` for a ZIP, complete when its writer
    /// finished it.
    pub(super) expected: Option<u64>,
    /// Whether its last byte is the file's.
    pub(super) reaches_end: bool,
    /// Bytes handed to the connection. The server stops reading the body once it has the
    /// length it announced, so a transfer is complete when it handed over all of them.
    delivered: u64,
    /// Whether the body ended without an error.
    finished: bool,
    meta: RequestMeta,
    /// The receipt its owner is sent if it completes (when the share asks for receipts).
    pub(super) receipt: Option<receipts::Download>,
}

impl Transfer {
    /// A transfer that has delivered nothing yet.
    pub(super) fn new(
        core: &Core,
        share: &share::Model,
        files: Vec<Uuid>,
        counted: bool,
        range: Option<(u64, u64)>,
        meta: &RequestMeta,
    ) -> Self {
        Self {
            core: core.clone(),
            share: share.id,
            last: false,
            files,
            counted,
            range,
            expected: Some(u64::MAX),
            reaches_end: false,
            delivered: 0,
            finished: false,
            meta: meta.clone(),
            receipt: None,
        }
    }

    /// `body`, counted; the transfer records itself when the body ends or is dropped.
    pub(super) fn track(
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
                None => {
                    transfer.finished = true;
                    None
                }
            }
        })
        .boxed()
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        let completed = self.reaches_end
            && self
                .expected
                .map_or(self.finished, |expected| self.delivered == expected);
        let event = Event::new(Action::ShareDownloaded, Actor::Recipient(self.share))
            .target("share", self.share)
            .outcome(if completed {
                Outcome::Success
            } else {
                Outcome::Failure
            })
            .details(serde_json::json!({
                "file_id": self.expected.and(self.files.first()),
                "file_ids": self.expected.is_none().then_some(&self.files),
                "bytes": self.delivered,
                "completed": completed,
                "range": self.range.map(|(start, end)| [start, end]),
                "counted": self.counted,
            }))
            .from(&self.meta);
        let (share, files) = (self.share, std::mem::take(&mut self.files));
        let change = self.counted.then_some(if completed {
            Change::CompleteDownload { share, files }
        } else {
            Change::ReleaseDownload { share, files }
        });
        let (core, last) = (self.core.clone(), self.last && completed);
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
