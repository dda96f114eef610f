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
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, Row};
use uuid::Uuid;

use entity::states::{FileStatus, Role, ShareState};
use entity::{file, share, share_file, user};

/// Connections kept between reads (one per worker thread is all that is in use at once); a read
/// that finds none opens one.
const KEPT: usize = 4;

/// A file's columns in the order [`file_row`] reads them, each after `{t}.`.
const FILE_COLUMNS: &str = "{t}.id, {t}.owner_id, {t}.name, {t}.size, {t}.content_type, \
     {t}.sha256, {t}.status, {t}.reject_reason, {t}.quarantine_key, {t}.quarantine_kek_version, \
     {t}.dek, {t}.dek_kek_version, {t}.blob_id, {t}.created_at, {t}.updated_at, {t}.ready_at, \
     {t}.attempts, {t}.lease_holder, {t}.lease_until";

/// A share's columns in the order [`share_row`] reads them.
const SHARE_COLUMNS: &str = "s.id, s.file_id, s.owner_id, s.recipient, s.token_hash, s.state, \
     s.expires_at, s.max_downloads, s.password_hash, s.verify_recipient, s.receipts, s.message, \
     s.last_error, s.created_at, s.emailed_at, s.revoked_at, s.claimed_at";
const SHARE_WIDTH: usize = 17;
const USER_COLUMNS: &str =
    "u.id, u.email, u.password_hash, u.role, u.disabled, u.created_at, u.email_verified_at";
const USER_WIDTH: usize = 7;
const SHARE_FILE_COLUMNS: &str =
    "sf.share_id, sf.file_id, sf.position, sf.downloads_used, sf.downloads_completed";
const SHARE_FILE_WIDTH: usize = 5;

/// One of the caller's files, by id, unless deleted.
static OWNED_FILE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM files AS f WHERE f.id = ?1 AND f.owner_id = ?2 AND f.status <> 'deleted'",
        FILE_COLUMNS.replace("{t}", "f")
    )
});

/// A link by its token's hash: the share, its sender, and each of its files with its counts, in
/// the order the recipient sees them (as `recipients::resolve` asks sea-orm).
static LINK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SHARE_COLUMNS}, {USER_COLUMNS}, {SHARE_FILE_COLUMNS}, {} FROM shares AS s \
         LEFT JOIN users AS u ON u.id = s.owner_id \
         LEFT JOIN share_files AS sf ON sf.share_id = s.id \
         LEFT JOIN files AS f ON f.id = sf.file_id \
         WHERE s.token_hash = ?1 ORDER BY sf.position",
        FILE_COLUMNS.replace("{t}", "f")
    )
});

/// A link's row: the share, its sender, one of its files' counts and that file.
pub type LinkRow = (
    share::Model,
    Option<user::Model>,
    Option<share_file::Model>,
    Option<file::Model>,
);

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
            let mut statement = connection.prepare_cached(&OWNED_FILE)?;
            let row = statement
                .query_row(
                    (id.as_bytes().as_slice(), owner.as_bytes().as_slice()),
                    |row| Ok(file_row(&Columns::new(row))),
                )
                .optional()?;
            row.transpose()
        })
    }

    /// The rows of the link whose token hashes to `token_hash` (none for an unknown link);
    /// `None` when the caller should read them through sea-orm.
    pub fn link(&self, token_hash: &[u8]) -> Option<Vec<LinkRow>> {
        self.read("a link", |connection| {
            let mut statement = connection.prepare_cached(&LINK)?;
            let mut rows = statement.query([token_hash])?;
            let mut link = Vec::new();
            while let Some(row) = rows.next()? {
                let user_at = SHARE_WIDTH;
                let counts_at = user_at + USER_WIDTH;
                let file_at = counts_at + SHARE_FILE_WIDTH;
                link.push((
                    share_row(&Columns::from(row, 0))?,
                    joined(&Columns::from(row, user_at), user_row)?,
                    joined(&Columns::from(row, counts_at), share_file_row)?,
                    joined(&Columns::from(row, file_at), file_row)?,
                ));
            }
            Ok(link)
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
fn open(file: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(Duration::ZERO)?;
    Ok(connection)
}

/// A model of a `LEFT JOIN`: none where the join found no row (its first column, the id, is
/// NULL), as sea-orm reads it.
fn joined<T>(
    c: &Columns<'_, '_>,
    read: impl Fn(&Columns<'_, '_>) -> Result<T, Unreadable>,
) -> Result<Option<T>, Unreadable> {
    match c.value(0)? {
        ValueRef::Null => Ok(None),
        _ => read(c).map(Some),
    }
}

fn share_row(c: &Columns<'_, '_>) -> Result<share::Model, Unreadable> {
    let state = c.text(5)?;
    Ok(share::Model {
        id: c.uuid(0)?,
        file_id: c.uuid(1)?,
        owner_id: c.uuid(2)?,
        recipient: c.optional(3, Columns::text)?.map(str::to_owned),
        token_hash: c.optional(4, Columns::blob)?.map(<[u8]>::to_vec),
        state: <ShareState as sea_orm::ActiveEnum>::try_from_value(&state.to_owned())
            .map_err(|e| c.wrong(5, &e))?,
        expires_at: c.time(6)?,
        max_downloads: c.optional(7, Columns::int32)?,
        password_hash: c.optional(8, Columns::text)?.map(str::to_owned),
        verify_recipient: c.boolean(9)?,
        receipts: c.boolean(10)?,
        message: c.optional(11, Columns::text)?.map(str::to_owned),
        last_error: c.optional(12, Columns::text)?.map(str::to_owned),
        created_at: c.time(13)?,
        emailed_at: c.optional(14, Columns::time)?,
        revoked_at: c.optional(15, Columns::time)?,
        claimed_at: c.optional(16, Columns::time)?,
    })
}

fn user_row(c: &Columns<'_, '_>) -> Result<user::Model, Unreadable> {
    let role = c.text(3)?;
    Ok(user::Model {
        id: c.uuid(0)?,
        email: c.text(1)?.to_owned(),
        password_hash: c.text(2)?.to_owned(),
        role: <Role as sea_orm::ActiveEnum>::try_from_value(&role.to_owned())
            .map_err(|e| c.wrong(3, &e))?,
        disabled: c.boolean(4)?,
        created_at: c.time(5)?,
        email_verified_at: c.optional(6, Columns::time)?,
    })
}

fn share_file_row(c: &Columns<'_, '_>) -> Result<share_file::Model, Unreadable> {
    Ok(share_file::Model {
        share_id: c.uuid(0)?,
        file_id: c.uuid(1)?,
        position: c.int32(2)?,
        downloads_used: c.int32(3)?,
        downloads_completed: c.int32(4)?,
    })
}

fn file_row(c: &Columns<'_, '_>) -> Result<file::Model, Unreadable> {
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
/// Indexes count from `base`: a joined row holds one model's columns after another's.
pub(crate) struct Columns<'a, 'r> {
    row: &'a Row<'r>,
    base: usize,
}

impl<'a, 'r> Columns<'a, 'r> {
    pub fn new(row: &'a Row<'r>) -> Self {
        Self { row, base: 0 }
    }

    /// The columns from `base` on.
    fn from(row: &'a Row<'r>, base: usize) -> Self {
        Self { row, base }
    }

    pub fn value(&self, index: usize) -> Result<ValueRef<'a>, Unreadable> {
        Ok(self.row.get_ref(self.base + index)?)
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

    /// A boolean as sqlx stores it (an integer, 0 or not).
    pub fn boolean(&self, index: usize) -> Result<bool, Unreadable> {
        self.integer(index).map(|n| n != 0)
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
            column: self
                .row
                .as_ref()
                .column_name(self.base + index)
                .unwrap_or("?")
                .to_owned(),
            why: why.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
