//! The data of the `scale` section, generated straight into the service's database: owners,
//! ready files whose data keys are really wrapped under the service's master key (so that a
//! rotation rewraps them), shares in every state, and audit events that continue the service's
//! own sealed chain, each with its MAC (so that verification checks them all). One core builds
//! rows while the other inserts them, 1,000 to a statement and 20 statements to a transaction,
//! with the secondary indexes set aside until the load is done (`bulk`).

use std::time::Instant;

use crate::bulk;
use chrono::{Duration, Utc};
use coffer::coffer_core::Core;
use coffer::coffer_core::audit::encoding::authenticate;
use coffer::coffer_core::crypto::SecretKey;
use coffer::coffer_core::services::audit;
use entity::{audit_event, file, share, share_file, user};
use rand::{Rng as _, SeedableRng as _};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait as _, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, TransactionTrait as _,
};
use uuid::Uuid;

const ROWS_PER_STATEMENT: usize = 1000;
const STATEMENTS_PER_TRANSACTION: usize = 20;
pub const SHARES_PER_FILE: u64 = 5;
pub const EVENTS_PER_FILE: u64 = 20;
/// Files per seeded owner; the bench user holds a tenth of all files.
const FILES_PER_OWNER: u64 = 1000;
/// The audit log covers this many days before now.
pub const HISTORY_DAYS: i64 = 365;

/// Actions by weight, as a busy installation records them.
const ACTIONS: [(&str, u32); 11] = [
    ("file.downloaded", 40),
    ("share.viewed", 15),
    ("share.downloaded", 10),
    ("file.uploaded", 8),
    ("file.validated", 6),
    ("file.encrypted", 6),
    ("share.created", 6),
    ("share.emailed", 5),
    ("user.login", 2),
    ("user.logout", 1),
    ("user.login_failed", 1),
];
/// An action recorded only a handful of times in the whole log, to query for.
pub const RARE_ACTION: &str = "admin.settings_changed";
const RARE_EVERY: u64 = 2_000_000;

/// What was seeded, and what the measurements look up.
pub struct Seeded {
    pub files: u64,
    pub shares: u64,
    pub events: u64,
    pub seconds: f64,
    /// The bench user's files, in the order inserted (ids grow).
    pub bench_files: Vec<Uuid>,
    /// A seeded owner who acts in the audit log (as `actor_id`).
    pub actor: Uuid,
    /// A file named as the target of some events.
    pub target: Uuid,
}

enum Batch {
    Users(Vec<user::ActiveModel>),
    Files(Vec<file::ActiveModel>),
    Shares(Vec<share::ActiveModel>),
    ShareFiles(Vec<share_file::ActiveModel>),
    Events(Vec<audit_event::ActiveModel>),
}

/// Seeds `files` files (a tenth the bench user's), five shares each and twenty audit events
/// each, then makes the bench user an admin. The service must be idle: the chain is continued
/// from its sealed head.
pub async fn seed(core: &Core, bench_email: &str, files: u64) -> Seeded {
    let started = Instant::now();
    let db = core.db().clone();
    let bench = user::Entity::find()
        .filter(user::Column::Email.eq(bench_email))
        .one(&db)
        .await
        .expect("find the bench user")
        .expect("the bench user signed up");
    let head = audit_event::Entity::find()
        .filter(audit_event::Column::Seq.is_not_null())
        .order_by_desc(audit_event::Column::Seq)
        .one(&db)
        .await
        .expect("the chain's head");
    let (head_seq, head_hash) = head
        .map(|e| (e.seq.unwrap_or(0), e.hash.unwrap_or_default()))
        .unwrap_or((0, audit::GENESIS.to_vec()));
    let set_aside = bulk::set_aside(
        &db,
        &["users", "files", "shares", "share_files", "audit_events"],
    )
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(8);
    let producer_core = core.clone();
    let bench_id = bench.id;
    let producer = tokio::task::spawn_blocking(move || {
        generate(&producer_core, bench_id, files, head_seq, head_hash, &tx)
    });
    let mut batches = 0usize;
    let mut txn = db.begin().await.expect("begin");
    while let Some(batch) = rx.recv().await {
        match batch {
            Batch::Users(rows) => user::Entity::insert_many(rows).exec(&txn).await.map(drop),
            Batch::Files(rows) => file::Entity::insert_many(rows).exec(&txn).await.map(drop),
            Batch::Shares(rows) => share::Entity::insert_many(rows).exec(&txn).await.map(drop),
            Batch::ShareFiles(rows) => share_file::Entity::insert_many(rows)
                .exec(&txn)
                .await
                .map(drop),
            Batch::Events(rows) => audit_event::Entity::insert_many(rows)
                .exec(&txn)
                .await
                .map(drop),
        }
        .expect("insert a batch");
        batches += 1;
        if batches.is_multiple_of(STATEMENTS_PER_TRANSACTION) {
            txn.commit().await.expect("commit");
            txn = db.begin().await.expect("begin");
        }
    }
    txn.commit().await.expect("commit");
    bulk::restore(&db, set_aside).await;
    let mut seeded = producer.await.expect("the generator");
    user::Entity::update_many()
        .col_expr(
            user::Column::Role,
            sea_orm::sea_query::Expr::value(entity::Role::Admin),
        )
        .filter(user::Column::Id.eq(bench.id))
        .exec(&db)
        .await
        .expect("make the bench user an admin");
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        // What autovacuum does soon after a bulk load; SQLite gathers no statistics unless
        // asked, and Coffer does not ask, so it is measured without.
        db.execute_unprepared("ANALYZE").await.expect("analyze");
    }
    seeded.seconds = started.elapsed().as_secs_f64();
    seeded
}

fn send(tx: &tokio::sync::mpsc::Sender<Batch>, batch: Batch) {
    tx.blocking_send(batch).expect("the inserter stopped");
}

fn generate(
    core: &Core,
    bench: Uuid,
    files: u64,
    head_seq: i64,
    head_hash: Vec<u8>,
    tx: &tokio::sync::mpsc::Sender<Batch>,
) -> Seeded {
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let now = Utc::now();
    let version = core.keys.ring().versions().max().expect("a master key");
    let bench_count = files / 10;
    let seeded_owners = (files - bench_count).div_ceil(FILES_PER_OWNER).max(1);
    let owners: Vec<Uuid> = (0..seeded_owners).map(|_| Uuid::now_v7()).collect();
    for chunk in owners.chunks(ROWS_PER_STATEMENT) {
        let rows = chunk.iter().map(|id| user::ActiveModel {
            id: Set(*id),
            email: Set(format!("owner-{id}@example.org")),
            password_hash: Set("-".into()),
            role: Set(entity::Role::User),
            disabled: Set(false),
            created_at: Set(now - Duration::days(HISTORY_DAYS)),
            email_verified_at: Set(Some(now - Duration::days(HISTORY_DAYS))),
        });
        send(tx, Batch::Users(rows.collect()));
    }

    // Files, each batch followed by its shares (a share names its file).
    let mut all_files = Vec::with_capacity(files as usize);
    let mut bench_files = Vec::with_capacity(bench_count as usize);
    let mut shares = 0u64;
    let mut made = 0u64;
    while made < files {
        let n = (files - made).min(ROWS_PER_STATEMENT as u64);
        let mut file_rows = Vec::with_capacity(n as usize);
        let mut share_rows = Vec::with_capacity((n * SHARES_PER_FILE) as usize);
        for i in made..made + n {
            let id = Uuid::now_v7();
            // Every tenth file is the bench user's.
            let owner = if i % 10 == 0 {
                bench_files.push(id);
                bench
            } else {
                owners[((i / 10) * 9 + i % 10 - 1) as usize % owners.len()]
            };
            all_files.push(id);
            let created = now - Duration::seconds(rng.random_range(3600..HISTORY_DAYS * 86_400));
            let wrapped = core
                .keys
                .wrap(version, id, &SecretKey::generate())
                .expect("wrap");
            file_rows.push(file::ActiveModel {
                id: Set(id),
                owner_id: Set(owner),
                name: Set(format!("report-{i}.pdf")),
                size: Set(rng.random_range(1_000..50_000_000)),
                content_type: Set(Some("application/pdf".into())),
                sha256: Set(hex::encode(rng.random::<[u8; 32]>())),
                status: Set(entity::FileStatus::Ready),
                reject_reason: Set(None),
                quarantine_key: Set(None),
                quarantine_kek_version: Set(None),
                dek: Set(Some(wrapped.bytes)),
                dek_kek_version: Set(Some(version)),
                blob_id: Set(Some(Uuid::new_v4())),
                created_at: Set(created),
                updated_at: Set(created),
                ready_at: Set(Some(created)),
                attempts: Set(1),
                lease_holder: Set(None),
                lease_until: Set(None),
            });
            for _ in 0..SHARES_PER_FILE {
                share_rows.push(share_row(&mut rng, id, owner, created, now, shares));
                shares += 1;
            }
        }
        made += n;
        send(tx, Batch::Files(file_rows));
        for chunk in share_rows.chunks(ROWS_PER_STATEMENT) {
            let (shares, files): (Vec<_>, Vec<_>) = chunk.iter().cloned().unzip();
            send(tx, Batch::Shares(shares));
            send(tx, Batch::ShareFiles(files));
        }
    }

    let events = events(core, &mut rng, &owners, &all_files, head_seq, head_hash, tx);
    Seeded {
        files,
        shares,
        events,
        seconds: 0.0,
        bench_files,
        actor: owners[0],
        target: all_files[all_files.len() / 2],
    }
}

/// Most shares ended long ago; a tenth are live, and one in two hundred is live past its
/// expiry (what the sweep marks expired). Each names its one file, with its downloads.
fn share_row(
    rng: &mut rand::rngs::StdRng,
    file_id: Uuid,
    owner: Uuid,
    created: chrono::DateTime<Utc>,
    now: chrono::DateTime<Utc>,
    n: u64,
) -> (share::ActiveModel, share_file::ActiveModel) {
    use entity::ShareState as S;
    let (state, expires) = match n % 200 {
        0 => (S::Emailed, now - Duration::hours(1)),
        1..=20 => (S::Emailed, now + Duration::days(rng.random_range(1..30))),
        21..=30 => (S::Revoked, created + Duration::days(7)),
        _ => (S::Expired, created + Duration::days(7)),
    };
    let id = Uuid::now_v7();
    let counts = share_file::ActiveModel {
        share_id: Set(id),
        file_id: Set(file_id),
        position: Set(0),
        downloads_used: Set((n % 4) as i32),
        downloads_completed: Set((n % 4) as i32),
    };
    let share = share::ActiveModel {
        id: Set(id),
        file_id: Set(file_id),
        owner_id: Set(owner),
        recipient: Set(Some(format!("recipient-{}@example.org", n % 50_000))),
        token_hash: Set(Some(rng.random::<[u8; 32]>().to_vec())),
        state: Set(state),
        expires_at: Set(expires),
        max_downloads: Set(n.is_multiple_of(3).then_some(5)),
        password_hash: Set(None),
        verify_recipient: Set(false),
        receipts: Set(false),
        message: Set(None),
        last_error: Set(None),
        created_at: Set(created),
        emailed_at: Set(Some(created)),
        revoked_at: Set((state == S::Revoked).then_some(created + Duration::days(1))),
        claimed_at: Set(None),
    };
    (share, counts)
}

/// Twenty events per file, oldest first over [`HISTORY_DAYS`], continuing the sealed chain.
fn events(
    core: &Core,
    rng: &mut rand::rngs::StdRng,
    owners: &[Uuid],
    files: &[Uuid],
    head_seq: i64,
    head_hash: Vec<u8>,
    tx: &tokio::sync::mpsc::Sender<Batch>,
) -> u64 {
    let ring = core.keys.ring();
    let key = ring.newest_audit_key().expect("an audit key");
    let total = files.len() as u64 * EVENTS_PER_FILE;
    let start = Utc::now() - Duration::days(HISTORY_DAYS);
    let step_us = (HISTORY_DAYS * 86_400_000_000) / total.max(1) as i64;
    let weights: u32 = ACTIONS.iter().map(|(_, w)| w).sum();
    let mut previous = head_hash;
    let mut rows = Vec::with_capacity(ROWS_PER_STATEMENT);
    for i in 0..total {
        let action = if i % RARE_EVERY == RARE_EVERY / 2 {
            RARE_ACTION
        } else {
            let mut pick = rng.random_range(0..weights);
            ACTIONS
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or("file.downloaded", |(a, _)| a)
        };
        // Owner 0 acts often enough to page through; the rest share the remainder.
        let actor = if i % 50 == 0 {
            owners[0]
        } else {
            owners[rng.random_range(0..owners.len())]
        };
        let seq = head_seq + 1 + i as i64;
        let mut event = audit_event::Model {
            id: Uuid::now_v7(),
            occurred_at: start + Duration::microseconds(step_us * i as i64),
            actor_kind: "user".into(),
            actor_id: Some(actor.to_string()),
            ip: Some(format!(
                "10.{}.{}.{}",
                i % 200,
                (i / 200) % 250,
                (i / 50_000) % 250
            )),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) bench".into()),
            action: action.into(),
            target_kind: Some("file".into()),
            target_id: Some(files[rng.random_range(0..files.len())].to_string()),
            outcome: "success".into(),
            details: serde_json::json!({ "bytes": rng.random_range(0..50_000_000u64) }),
            seq: None,
            hash: None,
            mac_version: None,
            mac: None,
        };
        authenticate(&mut event, key);
        let hash = audit::chain_hash(&previous, &event, seq);
        event.seq = Some(seq);
        event.hash = Some(hash.clone());
        previous = hash;
        rows.push(audit_event::ActiveModel::from(event));
        if rows.len() == ROWS_PER_STATEMENT {
            send(tx, Batch::Events(std::mem::take(&mut rows)));
            rows.reserve(ROWS_PER_STATEMENT);
        }
    }
    if !rows.is_empty() {
        send(tx, Batch::Events(rows));
    }
    total
}
