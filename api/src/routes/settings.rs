//! Who may sign up: the policy an admin sets (unless `COFFER_SIGNUP` fixes it) and
//! invitations.

use chrono::{DateTime, Utc};
use coffer_core::principal::Operator;
use coffer_core::services::signup;
use coffer_core::types::SignupPolicy;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use crate::auth::{AdminAuth, core, meta};
use crate::problem::ApiError;

pub struct SettingsApi;

#[derive(Object)]
struct Settings {
    /// Who may sign up: `open`, `invite`, or `domains:example.org,…` (invitations admit
    /// their address whatever this says).
    signup: String,
    /// Whether `COFFER_SIGNUP` fixes `signup` (it cannot be changed here then).
    signup_fixed: bool,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct SettingsChange {
    /// `open`, `invite`, or `domains:example.org,…`; left out, it stays as it is.
    signup: MaybeUndefined<String>,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct InviteRequest {
    /// The address to invite; the invitation signs up this address only.
    #[oai(validator(max_length = 254))]
    email: String,
}

/// Where an invitation stands.
#[derive(poem_openapi::Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
enum InviteState {
    Pending,
    Used,
    Expired,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct Invite {
    id: uuid::Uuid,
    email: String,
    state: InviteState,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
}

impl From<signup::InviteView> for Invite {
    fn from(v: signup::InviteView) -> Self {
        let state = match v.state(Utc::now()) {
            "used" => InviteState::Used,
            "expired" => InviteState::Expired,
            _ => InviteState::Pending,
        };
        Self {
            id: v.id,
            email: v.email,
            state,
            created_at: v.created_at,
            expires_at: v.expires_at,
            used_at: v.used_at,
        }
    }
}

#[derive(Object)]
struct InviteList {
    /// Newest first.
    invites: Vec<Invite>,
}

#[derive(ApiResponse)]
enum InviteResponse {
    /// Invited: the link has been emailed to the address (the only copy of it).
    #[oai(status = 201)]
    Created(Json<Invite>),
}

async fn settings(req: &Request, admin: &AdminAuth) -> Result<Settings, ApiError> {
    let (policy, fixed) = signup::policy(core(req)?, Operator::Admin(&admin.0.user)).await?;
    Ok(Settings {
        signup: policy.to_string(),
        signup_fixed: fixed,
    })
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "Tag::Admin")]
impl SettingsApi {
    /// The settings an admin may change at run time
    #[oai(path = "/settings", method = "get")]
    async fn get(&self, req: &Request, admin: AdminAuth) -> Result<Json<Settings>, ApiError> {
        Ok(Json(settings(req, &admin).await?))
    }

    /// Change settings (409 for one an environment variable fixes)
    #[oai(path = "/settings", method = "patch")]
    async fn change(
        &self,
        req: &Request,
        admin: AdminAuth,
        body: Json<SettingsChange>,
    ) -> Result<Json<Settings>, ApiError> {
        if let Some(raw) = super::admin::given(body.0.signup, "signup")? {
            let policy = SignupPolicy::parse(&raw)
                .map_err(|e| ApiError::unprocessable(format!("signup: {e}")))?;
            signup::set_policy(core(req)?, &admin.0.user, policy, &meta(req)).await?;
        }
        Ok(Json(settings(req, &admin).await?))
    }

    /// Invite an address to sign up (emailed a link valid for 7 days)
    #[oai(path = "/invites", method = "post")]
    async fn invite(
        &self,
        req: &Request,
        admin: AdminAuth,
        body: Json<InviteRequest>,
    ) -> Result<InviteResponse, ApiError> {
        let view = signup::invite(core(req)?, &admin.0.user, &body.0.email, &meta(req)).await?;
        Ok(InviteResponse::Created(Json(view.into())))
    }

    /// Invitations, newest first
    #[oai(path = "/invites", method = "get")]
    async fn invites(&self, req: &Request, admin: AdminAuth) -> Result<Json<InviteList>, ApiError> {
        let invites = signup::invites(core(req)?, Operator::Admin(&admin.0.user))
            .await?
            .into_iter()
            .map(Invite::from)
            .collect();
        Ok(Json(InviteList { invites }))
    }
}
