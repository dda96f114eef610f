//! Rows of an SQLite database file read in place, on the calling thread.
//!
//! Through sea-orm every query on SQLite is handed to one of sqlx-sqlite's connection threads
//! and its rows are handed back: two thread wake-ups and context switches for a lookup SQLite
//! answers in microseconds, most of a small request's cost (BENCHMARKS.md, "Rows read in
//! place"). The lookups small requests make most are answered here instead, by a read-only
//! connection kept for the purpose, on the thread that asks: a lookup by primary key reads a
//! few pages, normally from the operating system's cache. A read that would wait for a lock
//! (SQLite holds one for a moment while a checkpoint restarts the log), or a row with a value
//! not stored as sqlx stores it, is not answered here: the caller reads through sea-orm, as
//! before. A test holds each read to sea-orm's.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, Row};
use uuid::Uuid;

use entity::file;
use entity::states::FileStatus;

/// Connections kept between reads (one per worker thread is all that is in use at once); a read
/// that finds none opens one.
const KEPT: usize = 4;

/// One of the caller's files, by id, unless deleted; the columns in the order [`file_row`]
/// reads them.
const OWNED_FILE: &str = "SELECT id, owner_id, name, size, content_type, sha256, status, \
     reject_reason, quarantine_key, quarantine_kek_version, dek, dek_kek_version, blob_id, \
     created_at, updated_at, ready_at, attempts, lease_holder, lease_until \
     FROM files WHERE id = ?1 AND owner_id = ?2 AND status <> 'deleted'";

/// Read-only connections to one database file.
#[derive(Debug)]
pub struct Reader {
    file: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Reader {
    /// A reader of the database behind `url`, when it is an SQLite file on disk.
    pub fn for_url(url: &str) -> Option<Self> {
        Some(Self {
            file: super::sqlite_file(url)?,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// File `id` if `owner` owns it and it is not deleted; `None` when the caller should read
    /// it through sea-orm.
    pub fn owned_file(&self, id: Uuid, owner: Uuid) -> Option<Option<file::Model>> {
        self.read("a file", |connection| {
            let mut statement = connection.prepare_cached(OWNED_FILE)?;
            let row = statement
                .query_row(
                    (id.as_bytes().as_slice(), owner.as_bytes().as_slice()),
                    |row| Ok(file_row(row)),
                )
                .optional()?;
            row.transpose()
        })
    }

    /// `read` on a kept connection, or on a new one. Any error is logged and answered `None`.
    fn read<T>(
        &self,
        what: &str,
        read: impl FnOnce(&Connection) -> Result<T, Unreadable>,
    ) -> Option<T> {
        let kept = self.idle().pop();
        let connection = match kept.map_or_else(|| open(&self.file), Ok) {
            Ok(connection) => connection,
            Err(err) => {
                tracing::debug!(error = %err, "no in-place read: opening the database");
                return None;
            }
        };
        let answer = read(&connection);
        let mut idle = self.idle();
        if idle.len() < KEPT {
            idle.push(connection);
        }
        drop(idle);
        answer
            .inspect_err(|err| tracing::debug!(error = %err, "{what} read through sea-orm instead"))
            .ok()
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A read-only connection that never waits for a lock.
pub(crate) fn open(file: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(Duration::ZERO)?;
    Ok(connection)
}

fn file_row(row: &Row<'_>) -> Result<file::Model, Unreadable> {
    let c = Columns(row);
    let status = c.text(6)?;
    Ok(file::Model {
        id: c.uuid(0)?,
        owner_id: c.uuid(1)?,
        name: c.text(2)?.to_owned(),
        size: c.integer(3)?,
        content_type: c.optional(4, Columns::text)?.map(str::to_owned),
        sha256: c.text(5)?.to_owned(),
        status: <FileStatus as sea_orm::ActiveEnum>::try_from_value(&status.to_owned())
            .map_err(|e| c.wrong(6, &e))?,
        reject_reason: c.optional(7, Columns::text)?.map(str::to_owned),
        quarantine_key: c.optional(8, Columns::blob)?.map(<[u8]>::to_vec),
        quarantine_kek_version: c.optional(9, Columns::int32)?,
        dek: c.optional(10, Columns::blob)?.map(<[u8]>::to_vec),
        dek_kek_version: c.optional(11, Columns::int32)?,
        blob_id: c.optional(12, Columns::uuid)?,
        created_at: c.time(13)?,
        updated_at: c.time(14)?,
        ready_at: c.optional(15, Columns::time)?,
        attempts: c.int32(16)?,
        lease_holder: c.optional(17, Columns::uuid)?,
        lease_until: c.optional(18, Columns::time)?,
    })
}

/// Why a row was not read here: SQLite's error, or a column not as sqlx stores it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreadable {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("column {column}: {why}")]
    Column { column: String, why: String },
}

/// A row's columns, read in place, each only from the storage classes sqlx decodes it from.
pub(crate) struct Columns<'a, 'r>(pub &'a Row<'r>);

impl<'a> Columns<'a, '_> {
    pub fn value(&self, index: usize) -> Result<ValueRef<'a>, Unreadable> {
        Ok(self.0.get_ref(index)?)
    }

    /// `read` of the column, or `None` for NULL.
    pub fn optional<T>(
        &self,
        index: usize,
        read: impl Fn(&Self, usize) -> Result<T, Unreadable>,
    ) -> Result<Option<T>, Unreadable> {
        match self.value(index)? {
            ValueRef::Null => Ok(None),
            _ => read(self, index).map(Some),
        }
    }

    pub fn text(&self, index: usize) -> Result<&'a str, Unreadable> {
        match self.value(index)? {
            ValueRef::Text(text) => std::str::from_utf8(text).map_err(|e| self.wrong(index, &e)),
            other => Err(self.unexpected(index, other, "text")),
        }
    }

    pub fn blob(&self, index: usize) -> Result<&'a [u8], Unreadable> {
        match self.value(index)? {
            // sqlx reads text as bytes too.
            ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Ok(bytes),
            other => Err(self.unexpected(index, other, "a blob")),
        }
    }

    pub fn uuid(&self, index: usize) -> Result<Uuid, Unreadable> {
        Uuid::from_slice(self.blob(index)?).map_err(|e| self.wrong(index, &e))
    }

    pub fn integer(&self, index: usize) -> Result<i64, Unreadable> {
        match self.value(index)? {
            ValueRef::Integer(n) => Ok(n),
            other => Err(self.unexpected(index, other, "an integer")),
        }
    }

    pub fn int32(&self, index: usize) -> Result<i32, Unreadable> {
        i32::try_from(self.integer(index)?).map_err(|e| self.wrong(index, &e))
    }

    /// A time as sqlx writes it (RFC 3339). sqlx also reads other forms, which Coffer does not
    /// write: a row with one is read through sea-orm.
    pub fn time(&self, index: usize) -> Result<chrono::DateTime<chrono::Utc>, Unreadable> {
        chrono::DateTime::parse_from_rfc3339(self.text(index)?)
            .map(|t| t.to_utc())
            .map_err(|e| self.wrong(index, &e))
    }

    fn unexpected(&self, index: usize, found: ValueRef<'_>, expected: &str) -> Unreadable {
        let found = found.data_type();
        self.wrong(index, &format!("{found} where {expected} was expected"))
    }

    /// What was wrong with a column, naming it.
    pub fn wrong(&self, index: usize, why: &dyn std::fmt::Display) -> Unreadable {
        Unreadable::Column {
            column: self.0.as_ref().column_name(index).unwrap_or("?").to_owned(),
            why: why.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
