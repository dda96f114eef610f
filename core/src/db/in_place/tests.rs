use sea_orm::{ConnectionTrait as _, EntityTrait as _};
use uuid::Uuid;

use entity::states::{FileStatus, Role, ShareState};
use entity::{file, share, share_file, user};

use super::Reader;

/// Files unlike each other in every way a column can be: each status, absent values, names in
/// several scripts and with quotes, times to the microsecond.
fn files(owner: Uuid) -> Vec<file::Model> {
    let at = chrono::DateTime::parse_from_rfc3339("2026-12-07T12:34:56.789012Z")
        .expect("a time")
        .to_utc();
    [
        FileStatus::Ready,
        FileStatus::Quarantined,
        FileStatus::Validated,
        FileStatus::Rejected,
        FileStatus::Deleted,
    ]
    .into_iter()
    .enumerate()
    .map(|(n, status)| {
        let ready = status == FileStatus::Ready;
        let n32 = i32::try_from(n).expect("small");
        file::Model {
            id: Uuid::now_v7(),
            owner_id: owner,
            name: format!("rapport \"{n}\" 日本語 <script>\u{202e}.pdf"),
            size: i64::from(n32) * 4096 + 1,
            content_type: ready.then(|| "application/pdf".into()),
            sha256: "ab".repeat(32),
            status,
            reject_reason: (status == FileStatus::Rejected).then(|| "not a PDF".into()),
            quarantine_key: (!ready).then(|| vec![7; 60]),
            quarantine_kek_version: (!ready).then_some(1),
            dek: ready.then(|| vec![9; 60]),
            dek_kek_version: ready.then_some(2),
            blob_id: ready.then(Uuid::now_v7),
            created_at: at,
            updated_at: at + chrono::Duration::microseconds(1_000_001),
            ready_at: ready.then(|| at + chrono::Duration::microseconds(7)),
            attempts: n32,
            lease_holder: (status == FileStatus::Validated).then(Uuid::now_v7),
            lease_until: (status == FileStatus::Validated).then_some(at),
        }
    })
    .collect()
}

/// A new account's id (each file has an owner).
async fn owner(db: &sea_orm::DatabaseConnection) -> Uuid {
    let id = Uuid::now_v7();
    user::Entity::insert(user::ActiveModel::from(user::Model {
        id,
        email: format!("{id}@example.org"),
        password_hash: "not a hash".into(),
        role: Role::User,
        disabled: false,
        created_at: chrono::Utc::now(),
        email_verified_at: None,
    }))
    .exec(db)
    .await
    .expect("an account");
    id
}

/// What `services::files` reads when the file is not read in place.
async fn through_sea_orm(
    db: &sea_orm::DatabaseConnection,
    id: Uuid,
    owner: Uuid,
) -> Option<file::Model> {
    crate::services::files::owned_select(owner, id)
        .one(db)
        .await
        .expect("a lookup")
}

#[tokio::test]
async fn a_file_read_in_place_is_what_sea_orm_reads() {
    let (_dir, url, db) = crate::db::migrated_sqlite().await;
    let (owner, stranger) = (owner(&db).await, owner(&db).await);
    let written = files(owner);
    file::Entity::insert_many(written.iter().cloned().map(file::ActiveModel::from))
        .exec(&db)
        .await
        .expect("files");
    let reader = Reader::for_url(&url).expect("a database on disk");

    for file in &written {
        let in_place = reader.owned_file(file.id, owner).expect("read in place");
        assert_eq!(in_place, through_sea_orm(&db, file.id, owner).await);
        if file.status == FileStatus::Deleted {
            assert_eq!(in_place, None, "a deleted file is not found");
        } else {
            assert_eq!(in_place.as_ref(), Some(file));
        }
        assert_eq!(
            reader.owned_file(file.id, stranger),
            Some(None),
            "nobody else's file is found"
        );
    }
    assert_eq!(reader.owned_file(Uuid::now_v7(), owner), Some(None));
}

/// A share of `files` (a bundle when several) under `hash`, its optional columns set or not.
fn share_of(owner: Uuid, files: &[Uuid], hash: u8, full: bool) -> share::Model {
    let at = chrono::DateTime::parse_from_rfc3339("2026-12-07T12:34:56.000001Z")
        .expect("a time")
        .to_utc();
    share::Model {
        id: Uuid::now_v7(),
        file_id: files[0],
        owner_id: owner,
        recipient: full.then(|| "o'brien@example.org".into()),
        token_hash: Some(vec![hash; 32]),
        state: if full {
            ShareState::Emailed
        } else {
            ShareState::Active
        },
        expires_at: at + chrono::Duration::days(7),
        max_downloads: full.then_some(3),
        password_hash: full.then(|| "$argon2id$v=19$…".into()),
        verify_recipient: full,
        receipts: !full,
        message: full.then(|| "Voilà \"the\" files\n<b>bold</b>".into()),
        last_error: full.then(|| "an earlier try failed".into()),
        created_at: at,
        emailed_at: full.then_some(at),
        revoked_at: None,
        claimed_at: full.then_some(at),
    }
}

/// What `services::recipients` reads when the link is not read in place.
async fn link_through_sea_orm(
    db: &sea_orm::DatabaseConnection,
    hash: &[u8],
) -> Vec<super::LinkRow> {
    crate::services::recipients::link_select(hash.to_vec())
        .all(db)
        .await
        .expect("a link")
}

#[tokio::test]
async fn a_link_read_in_place_is_what_sea_orm_reads() {
    let (_dir, url, db) = crate::db::migrated_sqlite().await;
    let owner = owner(&db).await;
    let written = files(owner);
    file::Entity::insert_many(written.iter().cloned().map(file::ActiveModel::from))
        .exec(&db)
        .await
        .expect("files");
    let ids: Vec<Uuid> = written.iter().map(|f| f.id).collect();
    // A bundle whose files were added out of the order the recipient sees them, and a link
    // with no file rows at all.
    let bundle = share_of(owner, &ids[..3], 1, true);
    let bare = share_of(owner, &ids[3..], 2, false);
    share::Entity::insert_many([bundle.clone(), bare.clone()].map(share::ActiveModel::from))
        .exec(&db)
        .await
        .expect("shares");
    let counts = [(ids[2], 0), (ids[0], 2), (ids[1], 1)].map(|(file_id, position)| {
        share_file::ActiveModel::from(share_file::Model {
            share_id: bundle.id,
            file_id,
            position,
            downloads_used: position + 1,
            downloads_completed: position,
        })
    });
    share_file::Entity::insert_many(counts)
        .exec(&db)
        .await
        .expect("counts");
    let reader = Reader::for_url(&url).expect("a database on disk");

    for (share, rows) in [(&bundle, 3), (&bare, 1)] {
        let hash = share.token_hash.clone().expect("a hash");
        let in_place = reader.link(&hash).expect("read in place");
        assert_eq!(in_place, link_through_sea_orm(&db, &hash).await);
        assert_eq!(in_place.len(), rows);
        assert!(in_place.iter().all(|(s, sender, _, _)| s == share
            && sender.as_ref().map(|u| u.id) == Some(owner)));
    }
    let files: Vec<Uuid> = reader
        .link(&[1; 32])
        .expect("read in place")
        .into_iter()
        .filter_map(|(_, _, _, file)| file.map(|f| f.id))
        .collect();
    assert_eq!(files, [ids[2], ids[1], ids[0]], "in the recipient's order");
    let (_, _, counts, file) = &reader.link(&[2; 32]).expect("read in place")[0];
    assert_eq!((counts, file), (&None, &None), "no file rows");
    assert_eq!(reader.link(&[3; 32]), Some(Vec::new()), "an unknown link");
}

#[tokio::test]
async fn a_row_not_as_sqlx_writes_it_is_left_to_sea_orm() {
    let (_dir, url, db) = crate::db::migrated_sqlite().await;
    let owner = owner(&db).await;
    let file = files(owner).remove(0);
    let id = file.id;
    file::Entity::insert(file::ActiveModel::from(file))
        .exec(&db)
        .await
        .expect("a file");
    // A time in a form sqlx reads but never writes.
    db.execute_unprepared("UPDATE files SET updated_at = '2026-12-07 12:34:56'")
        .await
        .expect("an update");
    let reader = Reader::for_url(&url).expect("a database on disk");

    assert_eq!(reader.owned_file(id, owner), None, "left to sea-orm");
    let read = through_sea_orm(&db, id, owner)
        .await
        .expect("sea-orm reads it");
    assert_eq!(read.updated_at.to_rfc3339(), "2026-12-07T12:34:56+00:00");
}

#[test]
fn only_a_database_on_disk_is_read_in_place() {
    assert!(Reader::for_url("sqlite::memory:").is_none());
    assert!(Reader::for_url("postgres://127.0.0.1/coffer").is_none());
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = format!("sqlite://{}", dir.path().join("none.db").display());
    assert!(Reader::for_url(&missing).is_none());
}
