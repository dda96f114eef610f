//! Personal API tokens: made, listed and revoked by the signed-in person (never with a token).

use chrono::{DateTime, Utc};
use coffer_core::services::tokens::{self, NewToken, TokenView};
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use crate::auth::{UserAuth, core, meta};
use crate::problem::ApiError;

pub struct TokensApi;

/// A scope a token may be granted.
#[derive(poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeName {
    /// List, read and download your files, and list their shares.
    #[oai(rename = "files:read")]
    FilesRead,
    /// Upload and delete your files.
    #[oai(rename = "files:write")]
    FilesWrite,
    /// Share your files and revoke their shares.
    #[oai(rename = "shares:write")]
    SharesWrite,
    /// Query, export and verify the audit log (admins only).
    #[oai(rename = "audit:read")]
    AuditRead,
}

impl From<coffer_core::principal::Scope> for ScopeName {
    fn from(scope: coffer_core::principal::Scope) -> Self {
        use coffer_core::principal::Scope;
        match scope {
            Scope::FilesRead => Self::FilesRead,
            Scope::FilesWrite => Self::FilesWrite,
            Scope::SharesWrite => Self::SharesWrite,
            Scope::AuditRead => Self::AuditRead,
        }
    }
}

impl ScopeName {
    fn word(self) -> &'static str {
        match self {
            Self::FilesRead => "files:read",
            Self::FilesWrite => "files:write",
            Self::SharesWrite => "shares:write",
            Self::AuditRead => "audit:read",
        }
    }
}

/// A token's state.
#[derive(poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum TokenStateName {
    Active,
    Expired,
    Revoked,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct TokenRequest {
    /// What the token is for (1 to 100 characters), shown in the list.
    #[oai(validator(max_length = 400))]
    name: String,
    /// What it may do: at least one.
    #[oai(validator(max_items = 8))]
    scopes: Vec<ScopeName>,
    /// 1 to 366; 30 by default.
    #[oai(validator(minimum(value = "1"), maximum(value = "366")))]
    expires_in_days: Option<i64>,
}

#[derive(Object)]
struct Token {
    id: uuid::Uuid,
    name: String,
    scopes: Vec<ScopeName>,
    state: TokenStateName,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// When it was last used (to the minute), if ever.
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<TokenView> for Token {
    fn from(v: TokenView) -> Self {
        use coffer_core::services::tokens::TokenState;
        Self {
            id: v.id,
            name: v.name,
            scopes: v.scopes.iter().map(ScopeName::from).collect(),
            state: match v.state {
                TokenState::Active => TokenStateName::Active,
                TokenState::Expired => TokenStateName::Expired,
                TokenState::Revoked => TokenStateName::Revoked,
            },
            created_at: v.created_at,
            expires_at: v.expires_at,
            last_used_at: v.last_used_at,
            revoked_at: v.revoked_at,
        }
    }
}

#[derive(Object)]
struct CreatedToken {
    /// The token's secret: shown this once, never again. Send as `Authorization: Bearer <secret>`.
    secret: String,
    token: Token,
}

#[derive(Object)]
struct TokenList {
    /// Newest first; revoked and expired tokens stay listed for 30 days.
    tokens: Vec<Token>,
}

#[derive(ApiResponse)]
enum CreateResponse {
    #[oai(status = 201)]
    Created(Json<CreatedToken>),
}

#[derive(ApiResponse)]
enum RevokeResponse {
    /// Revoked: the next request with it is refused.
    #[oai(status = 204)]
    Revoked,
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Auth")]
impl TokensApi {
    /// Make a personal API token (needs a signed-in session; the secret is shown once)
    #[oai(path = "/me/tokens", method = "post")]
    async fn create(
        &self,
        req: &Request,
        auth: UserAuth,
        body: Json<TokenRequest>,
    ) -> Result<CreateResponse, ApiError> {
        let body = body.0;
        let new = NewToken {
            name: body.name,
            scopes: body.scopes.iter().map(|s| s.word().to_owned()).collect(),
            expires_in_days: body.expires_in_days,
        };
        let (view, secret) = tokens::create(core(req)?, &auth.0.user, new, &meta(req)).await?;
        Ok(CreateResponse::Created(Json(CreatedToken {
            secret: secret.expose(),
            token: view.into(),
        })))
    }

    /// Your personal API tokens (never their secrets)
    #[oai(path = "/me/tokens", method = "get")]
    async fn list(&self, req: &Request, auth: UserAuth) -> Result<Json<TokenList>, ApiError> {
        let views = tokens::list(core(req)?, &auth.0.user).await?;
        Ok(Json(TokenList {
            tokens: views.into_iter().map(Token::from).collect(),
        }))
    }

    /// Revoke one of your personal API tokens
    #[oai(path = "/me/tokens/:id", method = "delete")]
    async fn revoke(
        &self,
        req: &Request,
        auth: UserAuth,
        id: Path<String>,
    ) -> Result<RevokeResponse, ApiError> {
        let id = uuid::Uuid::parse_str(&id.0)
            .map_err(|_| ApiError::from(coffer_core::ServiceError::NotFound("token")))?;
        tokens::revoke(core(req)?, &auth.0.user, id, &meta(req)).await?;
        Ok(RevokeResponse::Revoked)
    }
}
