//! Single sign-on with an OpenID provider: the authorization code flow with PKCE, `state` and
//! `nonce`. [`begin`] sends the browser to the provider and remembers the sign-in in the
//! database (so that the answer may reach any API instance), bound to the browser by a cookie;
//! [`finish`] takes the provider's answer, exchanges the code, checks the ID token
//! ([`provider`]), finds or makes the account ([`accounts`]) and opens a session.

use std::time::Duration;

use chrono::{DateTime, Utc};
use openidconnect::core::CoreResponseType;
use openidconnect::{AuthenticationFlow, CsrfToken, Nonce, PkceCodeChallenge, Scope};
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use entity::oidc_login;

use crate::audit::{Action, Actor, Event, Outcome, RequestMeta};
use crate::principal::Session;
use crate::types::Token;
use crate::{Core, ServiceError, ServiceResult};

mod accounts;
mod refusal;

pub use crate::identity_provider::Provider;
use crate::identity_provider::ProviderError;
pub use refusal::{NotFinished, Refusal};

/// How long a sign-in may stay at the provider.
const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
const START_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Sign-ins one client address may start per window (each is a row until it ends or the sweep
/// removes it): room for an office behind one address signing in at nine.
const STARTS_PER_IP: u32 = 1000;

/// How the callback answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The web app: the session's cookie and its page.
    Web,
    /// A script: the session's token as JSON, like `POST /api/v1/auth/login`.
    Json,
}

impl Answer {
    fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Json => "json",
        }
    }
}

/// A sign-in on its way to the provider.
#[derive(Debug)]
pub struct Begun {
    /// Where to send the browser.
    pub authorization_url: String,
    /// The value of the cookie that ties the answer to this browser.
    pub binding: Token,
}

/// The provider's answer, as the callback's query carries it.
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's own refusal (`access_denied`, …).
    pub error: Option<String>,
    /// The issuer, when the provider says who answers (RFC 9207).
    pub iss: Option<String>,
}

/// A finished sign-in.
#[derive(Debug)]
pub struct Finished {
    pub token: Token,
    pub expires_at: DateTime<Utc>,
    pub answer: Answer,
    /// The web app's page to go to.
    pub return_to: String,
}

/// The provider, or 404 when single sign-on is not set up.
pub fn provider(core: &Core) -> ServiceResult<&Provider> {
    core.oidc
        .as_deref()
        .ok_or(ServiceError::NotFound("single sign-on"))
}

/// Where the web app goes after a sign-in: a page of its own, never elsewhere (`None` for
/// anything else).
pub fn web_page(return_to: Option<&str>) -> Option<String> {
    return_to
        .filter(|p| {
            p.starts_with("/app/")
                && !p.contains("//")
                && !p.contains('\\')
                && p.len() <= 512
                && p.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_owned)
}

/// Starts a sign-in with the provider: where to send the browser, and the cookie that binds
/// the answer to it. With `link`, the provider account the person signs in with is linked to
/// the signed-in account instead (`user.oidc_linked`).
pub async fn begin(
    core: &Core,
    answer: Answer,
    return_to: Option<&str>,
    link: Option<&Session>,
    meta: &RequestMeta,
) -> ServiceResult<Begun> {
    let provider = provider(core)?;
    if let Some(session) = link {
        session.user.require_session()?;
    }
    let ip_key = format!("oidc:start:{}", meta.ip.as_deref().unwrap_or("unknown"));
    if let Some(retry_after) = core
        .limiter
        .take(&ip_key, STARTS_PER_IP, START_WINDOW)
        .await?
    {
        return Err(ServiceError::RateLimited { retry_after });
    }
    let doc = provider.document().await.map_err(unavailable)?;
    let client = provider.client(&doc);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = Token::generate();
    let nonce = Token::generate();
    let binding = Token::generate();
    let (state_text, nonce_text) = (state.expose().to_owned(), nonce.expose().to_owned());
    let mut request = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            move || CsrfToken::new(state_text),
            move || Nonce::new(nonce_text),
        )
        .set_pkce_challenge(challenge);
    for scope in provider.config.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, _, _) = request.url();
    let now = Utc::now();
    let expires_at = now + chrono::Duration::from_std(LOGIN_TTL).unwrap_or_default();
    let _gate = core.write_gate.enter().await;
    oidc_login::Entity::insert(oidc_login::ActiveModel {
        state_hash: Set(state.hash()),
        binding_hash: Set(binding.hash()),
        nonce: Set(nonce.expose().to_owned()),
        pkce_verifier: Set(verifier.secret().clone()),
        return_to: Set(web_page(return_to)),
        answer: Set(answer.as_str().to_owned()),
        link_user_id: Set(link.map(|s| s.user.id)),
        created_at: Set(now),
        expires_at: Set(expires_at),
    })
    .exec(&core.db)
    .await?;
    Ok(Begun {
        authorization_url: url.to_string(),
        binding,
    })
}

fn unavailable(err: ProviderError) -> ServiceError {
    ServiceError::Unavailable(anyhow::Error::new(err).context("identity provider"))
}

/// Takes the provider's answer: checks it belongs to a sign-in this browser (`binding`, its
/// cookie) started and has not finished, exchanges the code, checks the ID token, and opens a
/// session for the linked account (made first when just-in-time accounts are on).
/// `replacing` is the browser's session cookie, ended as a password sign-in ends it.
pub async fn finish(
    core: &Core,
    callback: Callback,
    binding: Option<&str>,
    replacing: Option<&str>,
    meta: &RequestMeta,
) -> Result<Finished, NotFinished> {
    let provider = provider(core)?;
    let login = take_login(core, callback.state.as_deref(), binding)
        .await?
        .ok_or(NotFinished::Refused(Refusal::Expired, None))?;
    let answer = if login.answer == "json" {
        Answer::Json
    } else {
        Answer::Web
    };
    if let Some(error) = callback.error {
        let error: String = error.chars().take(64).collect();
        return Err(refused(
            core,
            meta,
            answer,
            Refusal::ProviderRefused,
            format!("provider: {error}"),
        )
        .await);
    }
    if let Some(iss) = &callback.iss
        && iss.trim_end_matches('/') != provider.config.issuer.trim_end_matches('/')
    {
        return Err(refused(
            core,
            meta,
            answer,
            Refusal::NotVerified,
            "answer from another issuer".to_owned(),
        )
        .await);
    }
    let Some(code) = callback.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return Err(refused(core, meta, answer, Refusal::Expired, "no code".to_owned()).await);
    };
    let claims = match provider
        .redeem(
            code,
            login.pkce_verifier.clone(),
            &login.nonce,
            provider.config.roles.as_ref().map(|r| r.claim.as_str()),
        )
        .await
    {
        Ok(claims) => claims,
        Err(ProviderError::Unreachable(err)) => {
            return Err(NotFinished::Failed(unavailable(
                ProviderError::Unreachable(err),
            )));
        }
        Err(err) => {
            return Err(refused(core, meta, answer, Refusal::NotVerified, err.to_string()).await);
        }
    };
    let user = match accounts::resolve(core, provider, &claims, login.link_user_id, meta).await {
        Ok(user) => user,
        Err(NotFinished::Refused(refusal, _)) => {
            return Err(refused(core, meta, answer, refusal, refusal.code().to_owned()).await);
        }
        Err(other) => return Err(other),
    };
    let (token, expires_at) =
        crate::services::users::sessions::open(core, &user, "oidc", None, replacing, meta).await?;
    Ok(Finished {
        token,
        expires_at,
        answer,
        return_to: login.return_to.unwrap_or_else(|| "/app/files".to_owned()),
    })
}

/// Records a refused sign-in (`user.login_failed` with `method: oidc` and why), and the
/// refusal. Not collapsed with others like failed passwords are: each follows a sign-in
/// started here (limited per address) and a round trip to the provider.
async fn refused(
    core: &Core,
    meta: &RequestMeta,
    answer: Answer,
    refusal: Refusal,
    reason: String,
) -> NotFinished {
    let recorded = core
        .audit
        .record(
            Event::new(Action::UserLoginFailed, Actor::Anonymous)
                .outcome(Outcome::Denied)
                .details(serde_json::json!({ "method": "oidc", "reason": reason }))
                .from(meta),
        )
        .await;
    match recorded {
        Ok(_) => NotFinished::Refused(refusal, Some(answer)),
        Err(err) => NotFinished::Failed(err.into()),
    }
}

/// The sign-in `state` names, removed so that it is used once, if it is live and `binding`
/// is its browser's.
async fn take_login(
    core: &Core,
    state: Option<&str>,
    binding: Option<&str>,
) -> ServiceResult<Option<oidc_login::Model>> {
    let (Some(state), Some(binding)) =
        (state.and_then(Token::parse), binding.and_then(Token::parse))
    else {
        return Ok(None);
    };
    let Some(login) = oidc_login::Entity::find_by_id(state.hash())
        .one(&core.db)
        .await?
    else {
        return Ok(None);
    };
    // Another browser's answer (a link someone was sent) neither finishes nor spends it.
    if !bool::from(login.binding_hash.ct_eq(&binding.hash())) {
        return Ok(None);
    }
    let removed = {
        let _gate = core.write_gate.enter().await;
        oidc_login::Entity::delete_many()
            .filter(oidc_login::Column::StateHash.eq(state.hash()))
            .exec(&core.db)
            .await?
            .rows_affected
    };
    Ok((removed == 1 && login.expires_at > Utc::now()).then_some(login))
}

/// Where the browser goes after Coffer's session ends, to end the provider's too (RP-initiated
/// logout), when the session was opened by the provider and it offers that.
pub async fn logout_url(core: &Core, method: Option<&str>) -> Option<String> {
    let provider = core.oidc.as_deref()?;
    if method != Some("oidc") {
        return None;
    }
    let doc = provider.document().await.ok()?;
    let end = doc.additional_metadata().end_session_endpoint.clone()?;
    let back =
        openidconnect::PostLogoutRedirectUrl::new(core.config.public_link("/app/signin")).ok()?;
    Some(
        openidconnect::LogoutRequest::from(end)
            .set_client_id(openidconnect::ClientId::new(
                provider.config.client_id.clone(),
            ))
            .set_post_logout_redirect_uri(back)
            .http_get_url()
            .to_string(),
    )
}

/// Removes sign-ins that never came back from the provider.
pub async fn remove_stale_logins(core: &Core) -> Result<(), sea_orm::DbErr> {
    let _gate = core.write_gate.enter().await;
    oidc_login::Entity::delete_many()
        .filter(oidc_login::Column::ExpiresAt.lte(Utc::now()))
        .exec(&core.db)
        .await?;
    Ok(())
}

/// How many provider accounts are linked to `user_id`.
pub async fn linked(core: &Core, user_id: Uuid) -> ServiceResult<u64> {
    use sea_orm::PaginatorTrait as _;
    Ok(entity::oidc_identity::Entity::find()
        .filter(entity::oidc_identity::Column::UserId.eq(user_id))
        .count(&core.db)
        .await?)
}
