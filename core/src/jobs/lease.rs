//! A run's hold on a file it validates or encrypts. Taking the lease counts the run as one of
//! the file's attempts; while the run works, a task renews the lease, so the sweep never queues
//! a second copy of live work; a run killed mid-way leaves a lease that simply runs out.

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ColumnTrait as _, Condition, EntityTrait as _, QueryFilter as _};
use uuid::Uuid;

use entity::file;

use crate::Core;
use crate::types::FileStatus;

/// Held by one run until [`Lease::release`], or until it runs out `stuck_after` after the last
/// renewal.
pub(super) struct Lease {
    core: Core,
    file_id: Uuid,
    holder: Uuid,
    renewing: tokio::task::JoinHandle<()>,
}

fn length(core: &Core) -> Duration {
    core.config.stuck_after.max(Duration::from_secs(1))
}

fn until(length: Duration) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::minutes(2))
}

impl Lease {
    /// Takes the lease on `file_id` while it is in `status` and no live run holds it, counting
    /// one attempt. `None`: another run is working on the file, or it moved on.
    pub(super) async fn take(
        core: &Core,
        file_id: Uuid,
        status: FileStatus,
    ) -> Result<Option<Self>, sea_orm::DbErr> {
        let holder = Uuid::new_v4();
        let length = length(core);
        let now = Utc::now();
        let taken = file::Entity::update_many()
            .col_expr(
                file::Column::Attempts,
                Expr::col(file::Column::Attempts).add(1),
            )
            .col_expr(file::Column::LeaseHolder, Expr::value(holder))
            .col_expr(file::Column::LeaseUntil, Expr::value(until(length)))
            .filter(file::Column::Id.eq(file_id))
            .filter(file::Column::Status.eq(status))
            .filter(
                Condition::any()
                    .add(file::Column::LeaseUntil.is_null())
                    .add(file::Column::LeaseUntil.lt(now)),
            )
            .exec(&core.db)
            .await?
            .rows_affected
            == 1;
        if !taken {
            return Ok(None);
        }
        let renewing = tokio::spawn(renew(core.clone(), file_id, holder, length));
        Ok(Some(Self {
            core: core.clone(),
            file_id,
            holder,
            renewing,
        }))
    }

    /// Gives the file back: the next run (a retry, or the sweep's) may take it at once.
    pub(super) async fn release(self) {
        self.renewing.abort();
        let released = file::Entity::update_many()
            .col_expr(file::Column::LeaseHolder, Expr::value(Option::<Uuid>::None))
            .col_expr(
                file::Column::LeaseUntil,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .filter(file::Column::Id.eq(self.file_id))
            .filter(file::Column::LeaseHolder.eq(self.holder))
            .exec(&self.core.db)
            .await;
        if let Err(err) = released {
            tracing::warn!(file_id = %self.file_id, error = %err, "could not release a file's lease; it runs out by itself");
        }
    }

    /// Takes back the attempt this run was counted as: it failed for the operator's reason (a
    /// keyring fault), not the file's.
    pub(super) async fn uncount(&self) {
        let uncounted = file::Entity::update_many()
            .col_expr(
                file::Column::Attempts,
                Expr::col(file::Column::Attempts).sub(1),
            )
            .filter(file::Column::Id.eq(self.file_id))
            .filter(file::Column::LeaseHolder.eq(self.holder))
            .filter(file::Column::Attempts.gt(0))
            .exec(&self.core.db)
            .await;
        if let Err(err) = uncounted {
            tracing::warn!(file_id = %self.file_id, error = %err, "could not take back an attempt");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewing.abort();
    }
}

/// Renews the lease every third of its length while the run works; stops when the lease is no
/// longer this run's (the file moved on, or the lease ran out and another run took it).
async fn renew(core: Core, file_id: Uuid, holder: Uuid, length: Duration) {
    let every = length / 3;
    loop {
        tokio::time::sleep(every).await;
        let renewed = file::Entity::update_many()
            .col_expr(file::Column::LeaseUntil, Expr::value(until(length)))
            .filter(file::Column::Id.eq(file_id))
            .filter(file::Column::LeaseHolder.eq(holder))
            .exec(&core.db)
            .await;
        match renewed {
            Ok(done) if done.rows_affected == 0 => return,
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(%file_id, error = %err, "could not renew a file's lease; trying again");
            }
        }
    }
}
