//! An account's own preferences: how its download receipts come.

use coffer_core::services::receipts::{self, Preferences as CorePreferences};
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi};

use super::Tag;
use crate::auth::{UserAuth, core};
use crate::problem::ApiError;

pub struct PreferencesApi;

#[derive(Object)]
struct Preferences {
    /// New shares ask for download receipts unless they say otherwise (`receipts` on a share).
    receipts_on_new_shares: bool,
    /// Receipts come in at most one email a day, listing the downloads since the last,
    /// instead of one email per download.
    receipts_daily: bool,
}

impl From<CorePreferences> for Preferences {
    fn from(p: CorePreferences) -> Self {
        Self {
            receipts_on_new_shares: p.on_new_shares,
            receipts_daily: p.daily,
        }
    }
}

/// What to change; a field left out stays as it is.
#[derive(Object)]
#[oai(deny_unknown_fields)]
struct PreferencesChange {
    receipts_on_new_shares: MaybeUndefined<bool>,
    receipts_daily: MaybeUndefined<bool>,
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Auth")]
impl PreferencesApi {
    /// Your preferences
    #[oai(path = "/me/preferences", method = "get")]
    async fn get(&self, req: &Request, auth: UserAuth) -> Result<Json<Preferences>, ApiError> {
        let now = receipts::preferences(core(req)?, auth.0.user.id).await?;
        Ok(Json(now.into()))
    }

    /// Change your preferences
    ///
    /// Switching to daily receipts starts the day now: the first daily email goes out a day
    /// later, listing the downloads since.
    #[oai(path = "/me/preferences", method = "patch")]
    async fn change(
        &self,
        req: &Request,
        auth: UserAuth,
        body: Json<PreferencesChange>,
    ) -> Result<Json<Preferences>, ApiError> {
        use super::admin::given;
        let change = receipts::PreferencesChange {
            on_new_shares: given(body.0.receipts_on_new_shares, "receipts_on_new_shares")?,
            daily: given(body.0.receipts_daily, "receipts_daily")?,
        };
        let set = receipts::set_preferences(core(req)?, &auth.0.user, change).await?;
        Ok(Json(set.into()))
    }
}
