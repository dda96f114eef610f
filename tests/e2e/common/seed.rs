//! Many ready files at once, straight into the database (no blobs): for rotation tests and the
//! rewrap benchmark, where only the wrapped keys matter.

use coffer::coffer_core::Core;
use coffer::coffer_core::crypto::SecretKey;
use sea_orm::{ActiveValue::Set, EntityTrait as _};

/// Inserts `count` ready files of a new owner, their keys wrapped under `version`.
pub async fn ready_files(core: &Core, count: usize, version: i32) {
    let owner = uuid::Uuid::now_v7();
    entity::user::Entity::insert(entity::user::ActiveModel {
        id: Set(owner),
        email: Set(format!("seed-{owner}@example.org")),
        password_hash: Set("-".into()),
        role: Set(entity::Role::User),
        disabled: Set(false),
        created_at: Set(chrono::Utc::now()),
        email_verified_at: Set(None),
    })
    .exec(core.db())
    .await
    .expect("seed owner");
    let now = chrono::Utc::now();
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        left -= n;
        let rows = (0..n).map(|i| {
            let id = uuid::Uuid::now_v7();
            let wrapped = core
                .keys
                .wrap(version, id, &SecretKey::generate())
                .expect("wrap");
            entity::file::ActiveModel {
                id: Set(id),
                owner_id: Set(owner),
                name: Set(format!("seed-{i}")),
                size: Set(1),
                content_type: Set(Some("text/plain".into())),
                sha256: Set(String::new()),
                status: Set(entity::FileStatus::Ready),
                reject_reason: Set(None),
                quarantine_key: Set(None),
                quarantine_kek_version: Set(None),
                dek: Set(Some(wrapped.bytes)),
                dek_kek_version: Set(Some(version)),
                blob_id: Set(Some(uuid::Uuid::new_v4())),
                created_at: Set(now),
                updated_at: Set(now),
                ready_at: Set(Some(now)),
                attempts: Set(0),
                lease_holder: Set(None),
                lease_until: Set(None),
            }
        });
        entity::file::Entity::insert_many(rows)
            .exec(core.db())
            .await
            .expect("seed files");
    }
}
