use sea_orm::entity::prelude::*;

/// A sign-in sent to the OpenID provider, waiting for its answer (keyed by the SHA-256 of its
/// `state`; `binding_hash` is the SHA-256 of the value in the cookie of the browser that
/// started it).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oidc_logins")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub state_hash: Vec<u8>,
    pub binding_hash: Vec<u8>,
    pub nonce: String,
    /// The PKCE verifier, sent to the provider with the code (useless without it).
    pub pkce_verifier: String,
    /// Where the web app goes once signed in (a path of its own).
    pub return_to: Option<String>,
    /// How the callback answers: `web` (the session's cookie, and a redirect) or `json`.
    pub answer: String,
    /// The signed-in account to link the provider's account to, when the person asked.
    pub link_user_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
