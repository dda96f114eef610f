//! Who may create an account: the sign-up policy (fixed by `COFFER_SIGNUP`, or set by an admin
//! at run time) and invitations, which admit one address whatever the policy.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _,
};
use uuid::Uuid;

use entity::{invite, setting};

use crate::audit::{Action, Actor, Event, Outcome, RequestMeta};
use crate::principal::{Operator, User};
use crate::text::{Arg, t, t_with};
use crate::types::{EmailAddress, SignupPolicy, Token};
use crate::{Core, ServiceError, ServiceResult};

/// How long an invitation can be used.
pub const INVITE_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Most invitations listed.
const INVITES_LISTED: u64 = 500;
const SIGNUP_SETTING: &str = "signup";

/// The policy in force, and whether `COFFER_SIGNUP` fixes it (an admin cannot change it then),
/// as an admin's settings show it.
pub async fn policy(core: &Core, by: Operator<'_>) -> ServiceResult<(SignupPolicy, bool)> {
    by.require_admin()?;
    current_policy(core).await
}

async fn current_policy(core: &Core) -> ServiceResult<(SignupPolicy, bool)> {
    if let Some(fixed) = &core.config.signup {
        return Ok((fixed.clone(), true));
    }
    let stored = setting::Entity::find_by_id(SIGNUP_SETTING)
        .one(&core.db)
        .await?
        .and_then(|row| SignupPolicy::parse(&row.value).ok());
    Ok((stored.unwrap_or(SignupPolicy::Open), false))
}

/// An admin sets the policy (refused while `COFFER_SIGNUP` fixes it).
pub async fn set_policy(
    core: &Core,
    admin: &User,
    policy: SignupPolicy,
    meta: &RequestMeta,
) -> ServiceResult<SignupPolicy> {
    admin.require_admin()?;
    let (before, fixed) = current_policy(core).await?;
    if fixed {
        return Err(ServiceError::Conflict(t("signup-error-policy-fixed")));
    }
    let txn = crate::db::begin_write(&core.db).await?;
    setting::Entity::insert(setting::ActiveModel {
        key: Set(SIGNUP_SETTING.to_owned()),
        value: Set(policy.to_string()),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(setting::Column::Key)
            .update_columns([setting::Column::Value, setting::Column::UpdatedAt])
            .to_owned(),
    )
    .exec(&txn)
    .await?;
    Event::new(Action::AdminSettingsChanged, admin.actor())
        .details(serde_json::json!({
            "signup": { "from": before.to_string(), "to": policy.to_string() },
        }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    Ok(policy)
}

/// How a sign-up was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The policy admits the address.
    Policy,
    /// This invitation admits it.
    Invited(Uuid),
}

/// Whether `email` may sign up, with `invite` if given (checked before any password is hashed;
/// the answer never depends on whether the address has an account).
pub async fn admit(
    core: &Core,
    email: &EmailAddress,
    invite: Option<&str>,
) -> ServiceResult<Admission> {
    if let Some(raw) = invite {
        let token = Token::parse(raw)
            .ok_or_else(|| ServiceError::Forbidden(t("signup-error-invite-refused")))?;
        let found = invite::Entity::find()
            .filter(invite::Column::TokenHash.eq(token.hash()))
            .filter(invite::Column::UsedAt.is_null())
            .filter(invite::Column::ExpiresAt.gt(Utc::now()))
            .one(&core.db)
            .await?;
        return match found {
            Some(row) if row.email == email.as_str() => Ok(Admission::Invited(row.id)),
            _ => Err(ServiceError::Forbidden(t("signup-error-invite-refused"))),
        };
    }
    match current_policy(core).await?.0 {
        policy if policy.admits(email) => Ok(Admission::Policy),
        SignupPolicy::Domains(_) => Err(ServiceError::Forbidden(t("signup-error-domains-only"))),
        _ => Err(ServiceError::Forbidden(t("signup-error-invitation-only"))),
    }
}

/// Marks an invitation used (its emailed copy in the outbox goes with it).
pub(crate) async fn redeem(core: &Core, invite_id: Uuid) -> ServiceResult<()> {
    invite::Entity::update_many()
        .col_expr(invite::Column::UsedAt, Expr::value(Utc::now()))
        .filter(invite::Column::Id.eq(invite_id))
        .filter(invite::Column::UsedAt.is_null())
        .exec(&core.db)
        .await?;
    core.mailer.forget(&outbox_name(invite_id)).await;
    Ok(())
}

fn outbox_name(invite_id: Uuid) -> String {
    format!("invite-{invite_id}")
}

/// An invitation, as admins see it (never its token).
#[derive(Debug, Clone)]
pub struct InviteView {
    pub id: Uuid,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

impl InviteView {
    /// `pending`, `used` or `expired`.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        match self.used_at {
            Some(_) => "used",
            None if self.expires_at <= now => "expired",
            None => "pending",
        }
    }
}

impl From<invite::Model> for InviteView {
    fn from(m: invite::Model) -> Self {
        Self {
            id: m.id,
            email: m.email,
            created_at: m.created_at,
            expires_at: m.expires_at,
            used_at: m.used_at,
        }
    }
}

/// An admin invites `email`: the invitation's link is emailed to that address (it is the only
/// copy of the token) and signs up that address alone, within [`INVITE_TTL`].
pub async fn invite(
    core: &Core,
    admin: &User,
    email: &str,
    meta: &RequestMeta,
) -> ServiceResult<InviteView> {
    admin.require_admin()?;
    let email = EmailAddress::parse(email)?;
    let token = Token::generate();
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(INVITE_TTL).unwrap_or(chrono::Duration::days(7));
    let row = invite::Model {
        id: Uuid::now_v7(),
        email: email.as_str().to_owned(),
        token_hash: token.hash(),
        invited_by: admin.id,
        created_at: now,
        expires_at: now + ttl,
        used_at: None,
    };
    let link = core
        .config
        .public_link(&format!("/app/signup?invite={}", token.expose()));
    let from = core.config.mail_from.parse().map_err(|e| {
        ServiceError::Invalid(t_with(
            "email-error-mail-from",
            [("error", Arg::from(format!("{e}")))],
        ))
    })?;
    let message = crate::mail::invite_message(&from, email.as_str(), &link, row.expires_at)
        .map_err(|e| ServiceError::Invalid(format!("{e:#}")))?;
    // Sent first, so that no write lock waits on the mail server; an invitation whose record
    // then fails is a dead link (its outbox copy is removed).
    core.mailer
        .send(message, &outbox_name(row.id))
        .await
        .map_err(|err| {
            ServiceError::Unavailable(anyhow::anyhow!(
                "the invitation email could not be sent: {}",
                err.detail
            ))
        })?;
    let recorded = async {
        let txn = crate::db::begin_write(&core.db).await?;
        invite::Entity::insert(invite::ActiveModel::from(row.clone()))
            .exec(&txn)
            .await?;
        Event::new(Action::UserInvited, admin.actor())
            .target("invite", row.id)
            .details(serde_json::json!({ "email": row.email, "expires_at": row.expires_at }))
            .from(meta)
            .record(&txn, &core.audit)
            .await?;
        txn.commit().await
    }
    .await;
    if let Err(err) = recorded {
        core.mailer.forget(&outbox_name(row.id)).await;
        return Err(err.into());
    }
    Ok(row.into())
}

/// The newest invitations first.
pub async fn invites(core: &Core, by: Operator<'_>) -> ServiceResult<Vec<InviteView>> {
    by.require_admin()?;
    Ok(invite::Entity::find()
        .order_by_desc(invite::Column::CreatedAt)
        .limit(INVITES_LISTED)
        .all(&core.db)
        .await?
        .into_iter()
        .map(InviteView::from)
        .collect())
}

/// Records a refused sign-up (counted, as anyone may try as often as they like).
pub(crate) async fn record_refusal(
    core: &Core,
    email: &EmailAddress,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    let domain = email.as_str().rsplit_once('@').map_or("", |(_, d)| d);
    core.audit
        .record_repeatable(
            format!("user.signup_refused:{domain}"),
            Event::new(Action::UserSignupRefused, Actor::Anonymous)
                .outcome(Outcome::Denied)
                .details(serde_json::json!({ "domain": domain }))
                .from(meta),
        )
        .await?;
    Ok(())
}
