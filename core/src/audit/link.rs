//! Linking events into the chain: the check every event passes first ([`check_pending`]: the
//! sealer, verify and the writer alike), and on SQLite the audit writer linking its own events
//! as it inserts them.
//!
//! SQLite has one write lock. Left pending, each event would be written twice under it:
//! inserted by the writer, then given its `seq` and `hash` by the sealer, in batches that hold
//! the lock for milliseconds while downloads wait to commit their own events. Linked here, each
//! is written once, by the same single statement that inserted it before: the writer keeps the
//! head it linked last, and the insert takes effect only if that is still the chain's head and
//! nothing is pending (SQLite evaluates both under the write lock the insert holds). Otherwise
//! it inserts nothing, and the writer inserts the batch pending, for the sealer, as before: an
//! event waiting for the sealer (one another transaction or process wrote, or one that may not
//! be sealed) keeps its place ahead of the batch. Each event's MAC is checked as the sealer
//! checks it, though the writer made it.

use sea_orm::{
    ActiveModelTrait as _, DbBackend, DbErr, IdenStatic as _, Iterable as _, Statement,
    TryIntoModel as _, Value,
};

use entity::audit_event;

use super::encoding::{GENESIS, link_hash_written};
use super::writer::{execute, stored};
use crate::crypto::{KeyStore, Keyring};

/// Why a pending event is not sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unsealable {
    /// Its MAC is wrong or missing: not written by Coffer, or altered since.
    Forged,
    /// Its MAC is under an audit-key version this process does not hold (an operator's fault).
    UnknownKey(i32),
}

/// Whether `event` may be chained after a chain whose events so far `had_macs` (once one event
/// has a MAC, every later one must: an event without one is not Coffer's). `buffer` is reused
/// for the MAC message, and holds it afterwards for [`link_hash_written`].
pub(crate) fn check_pending(
    buffer: &mut Vec<u8>,
    ring: &Keyring,
    event: &audit_event::Model,
    had_macs: bool,
) -> Result<(), Unsealable> {
    let Some(version) = event.mac_version else {
        return if had_macs {
            Err(Unsealable::Forged)
        } else {
            Ok(())
        };
    };
    let key = ring
        .audit_key(version)
        .ok_or(Unsealable::UnknownKey(version))?;
    super::encoding::write_mac_message(buffer, event, version);
    if key.mac_matches(buffer, event.mac.as_deref().unwrap_or_default()) {
        Ok(())
    } else {
        Err(Unsealable::Forged)
    }
}

/// The chain's head as the writer last linked or read it: `None` for an empty chain.
#[derive(Debug, Clone)]
pub(super) struct Head {
    sealed: Option<(i64, Vec<u8>)>,
    macs: bool,
}

/// The head of the chain, and whether any event waits to be sealed, in one statement.
const HEAD: &str = "SELECT EXISTS (SELECT 1 FROM audit_events WHERE seq IS NULL) AS pending, \
     h.seq, h.hash, h.mac_version IS NOT NULL AS macs FROM (SELECT 1) \
     LEFT JOIN (SELECT seq, hash, mac_version FROM audit_events WHERE seq IS NOT NULL \
     ORDER BY seq DESC LIMIT 1) AS h ON 1";

/// What the insert requires to take effect: nothing pending, and the head it links after.
const STILL_THE_HEAD: &str = "WHERE NOT EXISTS (SELECT 1 FROM audit_events WHERE seq IS NULL) \
     AND (SELECT seq FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1) IS ? \
     AND (SELECT hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1) IS ?";

/// The head, or `None` while an event is pending (nothing may be linked past it).
fn read_head(connection: &rusqlite::Connection) -> Result<Option<Head>, DbErr> {
    let mut statement = connection.prepare_cached(HEAD).map_err(stored)?;
    let (pending, seq, hash, macs) = statement
        .query_row([], |row| {
            Ok((
                row.get::<_, bool>(0)?,
                row.get::<_, Option<i64>>(1)?,
                row.get::<_, Option<Vec<u8>>>(2)?,
                row.get::<_, Option<bool>>(3)?,
            ))
        })
        .map_err(stored)?;
    if pending {
        return Ok(None);
    }
    Ok(Some(Head {
        sealed: seq.map(|seq| (seq, hash.unwrap_or_default())),
        macs: macs.unwrap_or(false),
    }))
}

/// Inserts `rows` linked after `head` (read first when unknown) in one statement that inserts
/// nothing unless `head` is still the chain's head and nothing is pending. Answers whether it
/// inserted them; `head` is then theirs, or unknown.
pub(super) fn insert_linked(
    connection: &rusqlite::Connection,
    keys: &KeyStore,
    head: &mut Option<Head>,
    rows: &[audit_event::ActiveModel],
) -> Result<bool, DbErr> {
    if head.is_none() {
        *head = read_head(connection)?;
    }
    let Some(from) = head.take() else {
        return Ok(false);
    };
    let (mut seq, mut previous) = from.sealed.clone().unwrap_or((0, GENESIS.to_vec()));
    let mut macs = from.macs;
    let ring = keys.ring();
    let mut buffer = Vec::with_capacity(256);
    let columns: Vec<audit_event::Column> = audit_event::Column::iter().collect();
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * columns.len() + 2);
    for row in rows {
        let mut event = row.clone().try_into_model()?;
        if check_pending(&mut buffer, &ring, &event, macs).is_err() {
            // Not as this process writes them (its keyring changed): the sealer says why.
            return Ok(false);
        }
        macs |= event.mac_version.is_some();
        seq += 1;
        previous = link_hash_written(&mut buffer, &previous, &event, seq).to_vec();
        event.seq = Some(seq);
        event.hash = Some(previous.clone());
        let linked = audit_event::ActiveModel::from(event);
        for column in &columns {
            values.push(
                linked
                    .get(*column)
                    .into_value()
                    .ok_or_else(|| DbErr::Custom(format!("audit event without {column:?}")))?,
            );
        }
    }
    let (head_seq, head_hash) = from.sealed.unzip();
    values.push(head_seq.into());
    values.push(head_hash.into());
    let names = columns
        .iter()
        .map(|c| format!("\"{}\"", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let tuples = crate::db::values_rows(DbBackend::Sqlite, rows.len(), &vec![""; columns.len()]);
    let sql = format!(
        "INSERT INTO audit_events ({names}) SELECT * FROM (VALUES {tuples}) {STILL_THE_HEAD}"
    );
    // An error here (another process's commit moved SQLite's snapshot, say) is answered as a
    // refusal: the caller's plain insert then meets any lasting fault and reports it.
    let statement = Statement::from_sql_and_values(DbBackend::Sqlite, sql, values);
    let inserted = execute(connection, statement).is_ok_and(|n| n == rows.len() as u64);
    if inserted {
        *head = Some(Head {
            sealed: Some((seq, previous)),
            macs,
        });
    }
    Ok(inserted)
}
