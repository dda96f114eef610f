//! Sealing: pending events get their sequence number and their link in the chain, one writer
//! at a time, but only once their MAC has been checked: an event Coffer did not write (or
//! that was altered since) is never chained.

use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _, SqliteTransactionMode, TransactionOptions,
    TransactionTrait as _,
};

use entity::audit_event;

use crate::Core;
use crate::audit::encoding::{self, GENESIS};
use crate::audit::link::{Unsealable, check_pending};

/// Events sealed per transaction. Every download waits for its own event's insert, and inserts
/// wait while a batch is linked: at 1,000 a batch held SQLite's write lock long enough to make
/// the p99 of 4 KiB downloads at concurrency 16 30–38 ms; at 100 it is 8–9 ms, and sealing
/// still keeps up with 5,000 events/s (a pass every 200 ms takes as many batches as it needs).
const SEAL_BATCH: u64 = 100;
/// Key of the PostgreSQL advisory lock that serialises sealers across processes.
const SEAL_LOCK: i64 = 0x636f_6666_6572_5331; // "cofferS1"

/// A transaction holding the sealers' lock (on SQLite, the database's write lock).
pub(super) async fn begin_locked(core: &Core) -> Result<DatabaseTransaction, sea_orm::DbErr> {
    let txn = core
        .db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({SEAL_LOCK})"))
            .await?;
    }
    Ok(txn)
}

/// Seals pending events in batches until it has caught up with those pending when it began
/// (or one that may not be sealed is next), then writes a checkpoint if one is due; returns how
/// many were sealed. Cheap when there is nothing to seal: the lock is only taken once pending
/// events are seen, and whether a checkpoint is due is looked at after sealing, or else every
/// half interval (another process may have moved the head).
pub async fn seal(core: &Core) -> Result<u64, sea_orm::DbErr> {
    let pending = audit_event::Entity::find()
        .filter(audit_event::Column::Seq.is_null())
        .limit(1)
        .all(&core.db)
        .await?;
    let sealed = if pending.is_empty() {
        0
    } else {
        seal_pending(core).await?
    };
    if sealed > 0
        || core
            .audit_alarms
            .look_due(core.config.audit_checkpoint_interval / 2)
    {
        super::checkpoint::write_if_due(core).await?;
    }
    Ok(sealed)
}

/// The head of the chain: its sequence number, its hash, and whether its events carry MACs.
async fn head(db: &impl ConnectionTrait) -> Result<(i64, Vec<u8>, bool), sea_orm::DbErr> {
    let head = audit_event::Entity::find()
        .filter(audit_event::Column::Seq.is_not_null())
        .order_by_desc(audit_event::Column::Seq)
        .one(db)
        .await?;
    Ok(match head {
        Some(h) => (
            h.seq.unwrap_or(0),
            h.hash.unwrap_or_default(),
            h.mac_version.is_some(),
        ),
        None => (0, GENESIS.to_vec(), false),
    })
}

/// Seals in batches. Each batch is read, checked and linked without the write lock (on
/// SQLite reading a thousand rows takes ~10 ms, and every download waiting to commit its own
/// event waited that long behind it); the lock is taken only to see that the head has not
/// moved since (another process sealing) and for the one statement that links the batch.
async fn seal_pending(core: &Core) -> Result<u64, sea_orm::DbErr> {
    let mut sealed = 0;
    let mut buffer = Vec::with_capacity(256);
    loop {
        let (head_seq, previous, mut had_macs) = head(&core.db).await?;
        let pending = audit_event::Entity::find()
            .filter(audit_event::Column::Seq.is_null())
            .order_by_asc(audit_event::Column::Id)
            .limit(SEAL_BATCH)
            .all(&core.db)
            .await?;
        if pending.is_empty() {
            core.audit_alarms.sealing.clear();
            return Ok(sealed);
        }
        let ring = core.keys.ring();
        let mut seq = head_seq;
        let mut links: Vec<(uuid::Uuid, i64, Vec<u8>)> = Vec::with_capacity(pending.len());
        let mut stopped = None;
        for event in &pending {
            if let Err(why) = check_pending(&mut buffer, &ring, event, had_macs) {
                stopped = Some((event.id, why));
                break;
            }
            had_macs |= event.mac_version.is_some();
            seq += 1;
            let previous = links.last().map_or(&previous[..], |(_, _, hash)| hash);
            let hash = encoding::link_hash_written(&mut buffer, previous, event, seq).to_vec();
            links.push((event.id, seq, hash));
        }
        let count = links.len() as u64;
        if count > 0 {
            // Held until this batch commits or rolls back.
            let _entered = core.write_gate.enter().await;
            let txn = begin_locked(core).await?;
            if head(&txn).await?.0 != head_seq {
                // Another process sealed meanwhile: read again from its head.
                txn.rollback().await?;
                continue;
            }
            let linked = link(&txn, links).await?;
            if linked != count {
                // Only a writer outside Coffer could have sealed them meanwhile: leave the
                // chain as it was (the transaction rolls back) rather than fork it.
                return Err(sea_orm::DbErr::Custom(format!(
                    "sealing: {linked} of {count} pending audit events were still unsealed"
                )));
            }
            txn.commit().await?;
        }
        sealed += count;
        if let Some((id, why)) = stopped {
            match why {
                Unsealable::Forged => core.audit_alarms.sealing.raise(format!(
                    "audit event {id} fails its MAC: Coffer did not write it, or it was altered; sealing stops before it until it is removed (`coffer audit verify` lists it)"
                )),
                Unsealable::UnknownKey(version) => core.audit_alarms.sealing.raise(format!(
                    "audit event {id} is MACed under audit key version {version}, which this process's keyring lacks; give every process the same keyring"
                )),
            }
            return Ok(sealed);
        }
        core.audit_alarms.sealing.clear();
        if pending.len() < SEAL_BATCH as usize {
            // Caught up with what was pending when the pass began. Under load more events keep
            // arriving; they wait for the next pass rather than being linked a few at a time,
            // each time taking the write lock between two of the audit writer's commits.
            return Ok(sealed);
        }
    }
}

/// Gives each event its sequence number and hash in one statement (`UPDATE … FROM (VALUES …)`):
/// one round trip per batch, so the write lock every other writer waits for is held for a
/// moment. Updating event by event held it for up to 1,000 round trips, and concurrent
/// downloads waited that long to commit their own events. Returns how many rows it sealed.
async fn link(
    txn: &DatabaseTransaction,
    links: Vec<(uuid::Uuid, i64, Vec<u8>)>,
) -> Result<u64, sea_orm::DbErr> {
    let backend = txn.get_database_backend();
    let rows = crate::db::values_rows(backend, links.len(), &["uuid", "bigint", "bytea"]);
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(links.len() * 3);
    for (id, seq, hash) in links {
        values.extend([id.into(), seq.into(), hash.into()]);
    }
    let sql = match backend {
        DbBackend::Postgres => format!(
            "UPDATE audit_events AS a SET seq = v.seq, hash = v.hash \
             FROM (VALUES {rows}) AS v(id, seq, hash) \
             WHERE a.id = v.id AND a.seq IS NULL"
        ),
        _ => format!(
            "WITH v(id, seq, hash) AS (VALUES {rows}) \
             UPDATE audit_events SET seq = v.seq, hash = v.hash \
             FROM v WHERE audit_events.id = v.id AND audit_events.seq IS NULL"
        ),
    };
    let result = txn
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .await?;
    Ok(result.rows_affected())
}
