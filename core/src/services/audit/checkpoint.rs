//! Checkpoints: the chain's head (sequence number, hash, time) signed with the audit key's
//! Ed25519 half and written outside the database, to the blob store, whenever the head has
//! moved and the last one is `COFFER_AUDIT_CHECKPOINT_INTERVAL` old. Whoever can rewrite the
//! database cannot rewrite them; whoever holds the public key can check one.
//!
//! Objects: `audit/checkpoints/{seq, 20 digits}.json` (kept) and `audit/checkpoints/latest.json`
//! (the newest). The signature covers the UTF-8 text
//! `coffer audit checkpoint v1\n{seq}\n{hash hex}\n{at}\n{key_version}\n`, `at` being RFC 3339
//! with microseconds and `Z`.

use chrono::{DateTime, SecondsFormat, SubsecRound as _, Utc};
use object_store::path::Path;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _,
    QueryOrder as _,
};
use serde::{Deserialize, Serialize};

use entity::{audit_checkpoint, audit_event};

use super::verify::Finding;
use crate::Core;
use crate::audit::{Action, Actor, Event};
use crate::crypto::{AuditKey, Keyring, signature_is_valid};

const FORMAT: &str = "coffer-audit-checkpoint-v1";
const LATEST: &str = "audit/checkpoints/latest.json";
/// The action of the event that records a checkpoint in the chain itself.
pub(super) const ACTION: Action = Action::AuditCheckpoint;

fn path(seq: i64) -> Path {
    Path::from(format!("audit/checkpoints/{seq:020}.json"))
}

/// A signed checkpoint, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: String,
    pub seq: i64,
    /// The hash of event `seq`, hex.
    pub hash: String,
    pub at: DateTime<Utc>,
    pub key_version: i32,
    /// The Ed25519 signature of [`Checkpoint::message`], hex.
    pub signature: String,
}

impl Checkpoint {
    fn signed(seq: i64, hash: &[u8], at: DateTime<Utc>, key: &AuditKey) -> Self {
        let mut checkpoint = Self {
            format: FORMAT.to_owned(),
            seq,
            hash: hex::encode(hash),
            at: at.trunc_subsecs(6),
            key_version: key.version(),
            signature: String::new(),
        };
        checkpoint.signature = hex::encode(key.sign(&checkpoint.message()));
        checkpoint
    }

    /// The bytes the signature covers.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "coffer audit checkpoint v1\n{}\n{}\n{}\n{}\n",
            self.seq,
            self.hash,
            self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            self.key_version
        )
        .into_bytes()
    }

    /// Whether the signature is the audit key's (of the version it names) over this content.
    pub fn is_genuine(&self, ring: &Keyring) -> bool {
        let Some(key) = ring.audit_key(self.key_version) else {
            return false;
        };
        let Ok(signature) = hex::decode(&self.signature) else {
            return false;
        };
        self.format == FORMAT && signature_is_valid(&key.public_key(), &self.message(), &signature)
    }
}

/// What a checkpoint object turned out to be.
#[derive(Debug)]
pub(super) enum Stored {
    Absent,
    Genuine(Checkpoint),
    /// Unreadable, or not signed by the audit key; the sequence number it claims, if any.
    Forged(Option<i64>),
}

async fn read(core: &Core, path: &Path) -> Result<Stored, sea_orm::DbErr> {
    let bytes = match core.storage.read_raw(path).await {
        Ok(bytes) => bytes,
        Err(object_store::Error::NotFound { .. }) => return Ok(Stored::Absent),
        Err(err) => {
            return Err(sea_orm::DbErr::Custom(format!(
                "reading audit checkpoint {path}: {err}"
            )));
        }
    };
    Ok(match serde_json::from_slice::<Checkpoint>(&bytes) {
        Ok(checkpoint) if checkpoint.is_genuine(&core.keys.ring()) => Stored::Genuine(checkpoint),
        Ok(checkpoint) => Stored::Forged(Some(checkpoint.seq)),
        Err(_) => Stored::Forged(None),
    })
}

/// The newest checkpoint the database knows it wrote.
async fn newest_recorded(
    db: &impl ConnectionTrait,
) -> Result<Option<audit_checkpoint::Model>, sea_orm::DbErr> {
    audit_checkpoint::Entity::find()
        .order_by_desc(audit_checkpoint::Column::Seq)
        .one(db)
        .await
}

/// Whether the sealed event `seq` has the hash `hash` (hex).
async fn chain_has(core: &Core, seq: i64, hash: &str) -> Result<bool, sea_orm::DbErr> {
    Ok(super::stored_hash(&core.db, seq).await?.as_deref() == Some(hash))
}

/// Writes a checkpoint of the head if the head has moved (by more than the last checkpoint's
/// own event) and the last one is at least the interval old. Never overwrites a newer
/// checkpoint the chain does not contain: a database restored from a backup, or truncated,
/// leaves the evidence where it is, and the alarm says so.
pub(super) async fn write_if_due(core: &Core) -> Result<(), sea_orm::DbErr> {
    let interval = chrono::Duration::from_std(core.config.audit_checkpoint_interval)
        .unwrap_or(chrono::Duration::minutes(1));
    let last = newest_recorded(&core.db).await?;
    if last
        .as_ref()
        .is_some_and(|last| last.written_at + interval > Utc::now())
    {
        return Ok(());
    }
    let since = last.as_ref().map_or(0, |last| last.seq);
    let moved = audit_event::Entity::find()
        .filter(audit_event::Column::Seq.gt(since))
        .filter(audit_event::Column::Action.ne(ACTION.as_str()))
        .one(&core.db)
        .await?
        .is_some();
    if !moved {
        return Ok(());
    }
    match read(core, &Path::from(LATEST)).await? {
        Stored::Genuine(newest) if !chain_has(core, newest.seq, &newest.hash).await? => {
            core.audit_alarms.checkpoints.raise(format!(
                "the audit chain does not contain its newest checkpoint (sequence number {}): the database was restored from an older backup or the log was cut; no checkpoint is written until this is resolved (`coffer audit verify` says which)",
                newest.seq
            ));
            return Ok(());
        }
        Stored::Forged(seq) => tracing::error!(
            claimed_seq = ?seq,
            "the newest audit checkpoint in the blob store is not signed by the audit key; writing a genuine one over it"
        ),
        Stored::Genuine(_) | Stored::Absent => {}
    }
    let _entered = core.write_gate.enter().await;
    let txn = super::seal::begin_locked(core).await?;
    if newest_recorded(&txn).await?.map(|r| r.seq) != last.as_ref().map(|r| r.seq) {
        // Another process wrote one meanwhile.
        return txn.commit().await;
    }
    let Some(head) = audit_event::Entity::find()
        .filter(audit_event::Column::Seq.is_not_null())
        .order_by_desc(audit_event::Column::Seq)
        .one(&txn)
        .await?
    else {
        return txn.commit().await;
    };
    let (Some(seq), Some(hash)) = (head.seq, head.hash) else {
        return txn.commit().await;
    };
    let ring = core.keys.ring();
    let Some(key) = ring.newest_audit_key() else {
        return txn.commit().await;
    };
    let checkpoint = Checkpoint::signed(seq, &hash, Utc::now(), key);
    let body = bytes::Bytes::from(serde_json::to_vec_pretty(&checkpoint).unwrap_or_default());
    for target in [path(seq), Path::from(LATEST)] {
        if let Err(err) = core.storage.write_raw(&target, body.clone()).await {
            core.audit_alarms
                .checkpoints
                .raise(format!("writing audit checkpoint {target}: {err}"));
            return txn.rollback().await;
        }
    }
    audit_checkpoint::Entity::insert(audit_checkpoint::ActiveModel {
        seq: Set(seq),
        hash: Set(hash),
        key_version: Set(key.version()),
        written_at: Set(checkpoint.at),
    })
    .exec(&txn)
    .await?;
    Event::new(ACTION, Actor::System)
        .details(serde_json::json!({
            "seq": seq,
            "hash": checkpoint.hash,
            "key_version": key.version(),
        }))
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.audit_alarms.checkpoints.clear();
    Ok(())
}

/// What the walk of the chain found, for comparing it with the checkpoints.
#[derive(Debug, Default)]
pub(super) struct Walked {
    /// The last event the walk verified, and whether the walk stopped at a break before it.
    pub head_seq: Option<i64>,
    pub broken: bool,
    /// The checkpoint named by the newest `audit.checkpoint` event the walk verified.
    pub named: Option<(i64, String)>,
}

/// Compares the chain the walk verified with the checkpoints in the blob store; returns the
/// newest genuine checkpoint and what does not agree.
pub(super) async fn compare(
    core: &Core,
    walked: &Walked,
) -> Result<(Option<Checkpoint>, Vec<Finding>), sea_orm::DbErr> {
    let mut findings = Vec::new();
    let mut genuine = Vec::new();
    match read(core, &Path::from(LATEST)).await? {
        Stored::Genuine(c) => genuine.push(c),
        Stored::Forged(seq) => findings.push(Finding::CheckpointForged {
            checkpoint_seq: seq,
        }),
        Stored::Absent => {
            if let Some(recorded) = newest_recorded(&core.db).await? {
                findings.push(Finding::CheckpointMissing {
                    checkpoint_seq: recorded.seq,
                });
            }
        }
    }
    if let Some((seq, hash)) = &walked.named {
        match read(core, &path(*seq)).await? {
            Stored::Genuine(c) if c.hash == *hash => genuine.push(c),
            Stored::Genuine(_) | Stored::Forged(_) => findings.push(Finding::CheckpointForged {
                checkpoint_seq: Some(*seq),
            }),
            Stored::Absent => findings.push(Finding::CheckpointMissing {
                checkpoint_seq: *seq,
            }),
        }
    }
    // The chain and the database may name the same missing checkpoint.
    findings.dedup();
    let newest = genuine.into_iter().max_by_key(|c| c.seq);
    if let Some(checkpoint) = &newest
        && !walked.broken
    {
        let head = walked.head_seq.unwrap_or(0);
        if head >= checkpoint.seq {
            if !chain_has(core, checkpoint.seq, &checkpoint.hash).await? {
                findings.push(Finding::Rewritten {
                    checkpoint_seq: checkpoint.seq,
                });
            }
        } else if newest_recorded(&core.db)
            .await?
            .is_some_and(|r| r.seq >= checkpoint.seq)
        {
            findings.push(Finding::Truncated {
                head_seq: walked.head_seq,
                checkpoint_seq: checkpoint.seq,
            });
        } else {
            findings.push(Finding::RestoredFromBackup {
                head_seq: walked.head_seq,
                checkpoint_seq: checkpoint.seq,
                checkpoint_at: checkpoint.at,
            });
        }
    }
    Ok((newest, findings))
}

/// The audit key's public halves, by version: what a checkpoint is checked with.
pub fn public_keys(core: &Core) -> Vec<(i32, String)> {
    core.keys
        .ring()
        .audit_keys()
        .map(|key| (key.version(), key.public_key_hex()))
        .collect()
}
