//! Verification: the chain walked from its first event (every link recomputed, every MAC
//! checked), then compared with the signed checkpoints in the blob store, and the events
//! waiting to be sealed checked for forgeries.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait as _, DatabaseConnection, DbBackend, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _,
};
use tokio_util::task::AbortOnDropHandle;

use entity::audit_event;

use super::checkpoint::{self, Checkpoint, Walked};
use super::sqlite_pages;
use crate::Core;
use crate::audit::encoding::{self, GENESIS};
use crate::audit::link::{Unsealable, check_pending};
use crate::crypto::Keyring;

/// Rows read per page while verifying.
const VERIFY_PAGE: u64 = 10_000;
/// Pages being read, each on a task of its own, so that decoding rows uses every core while
/// the page before is hashed.
const PAGES_AHEAD: i64 = 2;
/// Pending events checked for forgeries, and most reported.
const PENDING_CHECKED: u64 = 1000;
const PENDING_REPORTED: usize = 10;

/// Something verification found wrong, naming where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Event `seq` is missing, out of place, or its stored hash is not its link.
    ChainBroken { seq: i64 },
    /// Event `seq` no longer matches its MAC: it was edited after it was written.
    Altered { seq: i64 },
    /// Event `seq` has no MAC (or one under an audit key that does not exist) although events
    /// before it have one: it was not written by Coffer.
    Unauthenticated { seq: i64 },
    /// The chain ends at `head_seq`, before the newest checkpoint, which the database
    /// recorded writing: events after `head_seq` were deleted.
    Truncated {
        head_seq: Option<i64>,
        checkpoint_seq: i64,
    },
    /// The chain's event `checkpoint_seq` is not the one the checkpoint signed: the chain was
    /// rewritten up to there.
    Rewritten { checkpoint_seq: i64 },
    /// The chain ends before the newest checkpoint, which the database does not know: the
    /// database is a backup older than that checkpoint (or was made to look like one).
    RestoredFromBackup {
        head_seq: Option<i64>,
        checkpoint_seq: i64,
        checkpoint_at: DateTime<Utc>,
    },
    /// A checkpoint the chain or the database says was written is not in the blob store.
    CheckpointMissing { checkpoint_seq: i64 },
    /// A checkpoint object that is not signed by the audit key (or not what the chain says).
    CheckpointForged { checkpoint_seq: Option<i64> },
    /// A pending event whose MAC is wrong or missing: the sealer will not chain it.
    PendingForged { event_id: uuid::Uuid },
}

impl Finding {
    /// A stable name for the kind of finding.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ChainBroken { .. } => "chain_broken",
            Self::Altered { .. } => "altered",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Truncated { .. } => "truncated",
            Self::Rewritten { .. } => "rewritten",
            Self::RestoredFromBackup { .. } => "restored_from_backup",
            Self::CheckpointMissing { .. } => "checkpoint_missing",
            Self::CheckpointForged { .. } => "checkpoint_forged",
            Self::PendingForged { .. } => "pending_forged",
        }
    }

    /// The sequence number of the event the finding is about, if it is one event.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Self::ChainBroken { seq } | Self::Altered { seq } | Self::Unauthenticated { seq } => {
                Some(*seq)
            }
            _ => None,
        }
    }

    /// The checkpoint the finding is about, if any.
    pub fn checkpoint_seq(&self) -> Option<i64> {
        match self {
            Self::Truncated { checkpoint_seq, .. }
            | Self::Rewritten { checkpoint_seq }
            | Self::RestoredFromBackup { checkpoint_seq, .. }
            | Self::CheckpointMissing { checkpoint_seq } => Some(*checkpoint_seq),
            Self::CheckpointForged { checkpoint_seq } => *checkpoint_seq,
            _ => None,
        }
    }

    /// One sentence for a person.
    pub fn describe(&self) -> String {
        let head = |h: &Option<i64>| h.map_or("no event".to_owned(), |h| format!("event {h}"));
        match self {
            Self::ChainBroken { seq } => format!(
                "the chain breaks at event {seq}: it is missing, out of place, or its hash was changed"
            ),
            Self::Altered { seq } => {
                format!("event {seq} was edited after it was written (its MAC no longer matches)")
            }
            Self::Unauthenticated { seq } => format!(
                "event {seq} has no valid MAC although earlier events do: Coffer did not write it"
            ),
            Self::Truncated {
                head_seq,
                checkpoint_seq,
            } => format!(
                "the log was cut: it ends at {}, but checkpoint {checkpoint_seq} was written; events after {} were deleted",
                head(head_seq),
                head(head_seq)
            ),
            Self::Rewritten { checkpoint_seq } => format!(
                "the log was rewritten: event {checkpoint_seq} is not the one checkpoint {checkpoint_seq} signed"
            ),
            Self::RestoredFromBackup {
                head_seq,
                checkpoint_seq,
                checkpoint_at,
            } => format!(
                "the database is older than the newest checkpoint: it ends at {}, but checkpoint {checkpoint_seq} was written at {checkpoint_at}, which this database does not know (restored from a backup, or made to look so)",
                head(head_seq)
            ),
            Self::CheckpointMissing { checkpoint_seq } => format!(
                "checkpoint {checkpoint_seq} was written but is not in the blob store (deleted)"
            ),
            Self::CheckpointForged {
                checkpoint_seq: Some(seq),
            } => format!("checkpoint {seq} is not signed by the audit key (forged or altered)"),
            Self::CheckpointForged {
                checkpoint_seq: None,
            } => "the newest checkpoint object is unreadable or not signed by the audit key".into(),
            Self::PendingForged { event_id } => format!(
                "event {event_id}, waiting to be sealed, fails its MAC: Coffer did not write it, or it was altered; sealing stops before it"
            ),
        }
    }
}

/// The outcome of verifying the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub ok: bool,
    pub checked: u64,
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    /// The first sequence number whose row is missing, altered or out of place.
    pub first_bad_seq: Option<i64>,
    /// The newest genuine checkpoint found.
    pub checkpoint: Option<Checkpoint>,
    pub findings: Vec<Finding>,
}

/// Where a walk of the chain has got to.
#[derive(Debug)]
struct Walk {
    /// The hash the next event must chain from.
    previous: Vec<u8>,
    /// The sequence number the next event must have.
    expected: i64,
    checked: u64,
    /// Whether an event with a MAC has been passed: every later one must have one too.
    had_macs: bool,
    /// The first event that did not check out.
    bad: Option<Finding>,
    /// The checkpoint named by the newest `audit.checkpoint` event passed.
    named: Option<(i64, String)>,
}

impl Walk {
    /// Checks one page of events, in order, stopping at the first bad one.
    fn check(mut self, page: &[audit_event::Model], ring: &Keyring) -> Self {
        let mut buffer = Vec::with_capacity(256);
        for event in page {
            let seq = event.seq.unwrap_or(-1);
            if seq != self.expected {
                self.bad = Some(Finding::ChainBroken { seq: self.expected });
                return self;
            }
            if let Err(why) = check_pending(&mut buffer, ring, event, self.had_macs) {
                self.bad = Some(match (why, event.mac_version) {
                    (Unsealable::Forged, Some(_)) => Finding::Altered { seq },
                    _ => Finding::Unauthenticated { seq },
                });
                return self;
            }
            let stored = event.hash.as_deref().unwrap_or_default();
            if encoding::link_hash_written(&mut buffer, &self.previous, event, seq)[..] != *stored {
                self.bad = Some(Finding::ChainBroken { seq });
                return self;
            }
            if event.action == checkpoint::ACTION.as_str() && event.mac_version.is_some() {
                let named = &event.details;
                if let (Some(at), Some(hash)) = (named["seq"].as_i64(), named["hash"].as_str()) {
                    self.named = Some((at, hash.to_owned()));
                }
            }
            self.had_macs |= event.mac_version.is_some();
            self.checked += 1;
            self.expected += 1;
            self.previous.clear();
            self.previous.extend_from_slice(stored);
        }
        self
    }
}

/// The sealed events numbered `from..from + VERIFY_PAGE`, in order (fewer where rows are
/// missing, or past the head).
async fn sealed_range(
    db: &DatabaseConnection,
    from: i64,
) -> Result<Vec<audit_event::Model>, sea_orm::DbErr> {
    audit_event::Entity::find()
        .filter(audit_event::Column::Seq.gte(from))
        .filter(audit_event::Column::Seq.lt(from + VERIFY_PAGE as i64))
        .order_by_asc(audit_event::Column::Seq)
        .all(db)
        .await
}

/// Recomputes the chain from the first sealed event, page by page (each page is checked on
/// the blocking pool while the next ones are read), compares it with the newest checkpoints,
/// and checks the events waiting to be sealed.
pub async fn verify(
    core: &Core,
    by: crate::principal::Operator<'_>,
) -> crate::ServiceResult<Verification> {
    by.require_audit_reader()?;
    let db = &core.db;
    let ring = core.keys.ring();
    let page_len = VERIFY_PAGE as i64;
    // On SQLite each page is read from the file on a blocking thread, not through the pool.
    let file = (db.get_database_backend() == DbBackend::Sqlite)
        .then(|| crate::db::sqlite_file(&core.config.database_url))
        .flatten();
    // Reads still under way when the walk stops are cancelled as they are dropped (a page
    // already being read from SQLite's file is read to its end first).
    let read = |from: i64| {
        AbortOnDropHandle::new(match file.clone() {
            Some(file) => tokio::task::spawn_blocking(move || {
                sqlite_pages::sealed_range(&file, from, from + page_len)
            }),
            None => {
                let db = db.clone();
                tokio::spawn(async move { sealed_range(&db, from).await })
            }
        })
    };
    let failed = |e: tokio::task::JoinError| sea_orm::DbErr::Custom(format!("verifying: {e}"));
    let head_before: Option<i64> = audit_event::Entity::find()
        .select_only()
        .column_as(audit_event::Column::Seq.max(), "head")
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?
        .flatten();
    let mut walk = Walk {
        previous: GENESIS.to_vec(),
        expected: 1,
        checked: 0,
        had_macs: false,
        bad: None,
        named: None,
    };
    let mut ahead: std::collections::VecDeque<_> =
        (0..PAGES_AHEAD).map(|k| read(1 + k * page_len)).collect();
    let mut next_from = 1 + PAGES_AHEAD * page_len;
    while let Some(reading) = ahead.pop_front() {
        let page = reading.await.map_err(failed)??;
        let whole = page.len() as i64 == page_len;
        if whole {
            ahead.push_back(read(next_from));
            next_from += page_len;
        }
        let ring = ring.clone();
        walk = tokio::task::spawn_blocking(move || walk.check(&page, &ring))
            .await
            .map_err(failed)?;
        if walk.bad.is_some() || !whole {
            break;
        }
    }
    drop(ahead);
    // The walk stopped at a page that was not whole: at the head, or at a gap if the head was
    // further on when the walk began (what the sealer added meanwhile is the next walk's).
    if walk.bad.is_none() && head_before.is_some_and(|head| walk.expected <= head) {
        walk.bad = Some(Finding::ChainBroken { seq: walk.expected });
    }
    let head = (walk.checked > 0).then(|| (walk.expected - 1, hex::encode(&walk.previous)));
    let walked = Walked {
        head_seq: head.as_ref().map(|h| h.0),
        broken: walk.bad.is_some(),
        named: walk.named.take(),
    };
    let (checkpoint, compared) = checkpoint::compare(core, &walked).await?;
    let first_bad_seq = walk.bad.as_ref().and_then(Finding::seq);
    let mut findings: Vec<Finding> = walk.bad.into_iter().chain(compared).collect();
    findings.extend(pending_forgeries(core, &ring, walk.had_macs).await?);
    Ok(Verification {
        ok: findings.is_empty(),
        checked: walk.checked,
        head_seq: head.as_ref().map(|h| h.0),
        head_hash: head.map(|h| h.1),
        first_bad_seq,
        checkpoint,
        findings,
    })
}

/// The first pending events that fail their MAC.
async fn pending_forgeries(
    core: &Core,
    ring: &Keyring,
    had_macs: bool,
) -> Result<Vec<Finding>, sea_orm::DbErr> {
    let pending = audit_event::Entity::find()
        .filter(audit_event::Column::Seq.is_null())
        .order_by_asc(audit_event::Column::Id)
        .limit(PENDING_CHECKED)
        .all(&core.db)
        .await?;
    let mut buffer = Vec::with_capacity(256);
    let mut had_macs = had_macs;
    let mut found = Vec::new();
    for event in &pending {
        if check_pending(&mut buffer, ring, event, had_macs) == Err(Unsealable::Forged) {
            found.push(Finding::PendingForged { event_id: event.id });
            if found.len() == PENDING_REPORTED {
                break;
            }
        }
        had_macs |= event.mac_version.is_some();
    }
    Ok(found)
}
