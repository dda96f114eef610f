//! The OpenID provider (single sign-on) as Coffer knows it: its discovery document and signing keys (fetched on
//! first use, the document again after an hour, the keys again whenever an ID token names a
//! key they lack, so that a provider's key rotation is picked up without a restart), the code
//! exchange, and the ID token's check, all by the `openidconnect` crate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenClaims,
    IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse as _, PkceCodeVerifier,
    ProviderMetadataWithLogout, RedirectUrl, RequestTokenError, StandardErrorResponse,
    StandardTokenResponse, TokenResponse as _, UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use crate::config::OidcConfig;

/// How long a discovery document is used before it is fetched again.
const DOCUMENT_LIFETIME: Duration = Duration::from_secs(3600);
/// Every call to the provider ends within this.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// The ID token's claims beyond the standard ones (the role claim is among them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct OtherClaims {
    #[serde(flatten)]
    pub(crate) rest: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

type Claims = IdTokenClaims<OtherClaims, CoreGenderClaim>;

/// The provider's account as a sign-in tells it: from the checked ID token, completed from the
/// userinfo endpoint when the token lacks the address or the role claim (providers that keep
/// claims out of the ID token when an access token is issued).
#[derive(Debug, Clone)]
pub(crate) struct ProviderAccount {
    pub(crate) issuer: String,
    pub(crate) subject: String,
    pub(crate) email: Option<String>,
    pub(crate) email_verified: Option<bool>,
    /// Every other claim (the role claim among them).
    pub(crate) other: serde_json::Map<String, serde_json::Value>,
}

impl From<&Claims> for ProviderAccount {
    fn from(claims: &Claims) -> Self {
        Self {
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified(),
            other: claims.additional_claims().rest.clone(),
        }
    }
}

type TokenResponse = StandardTokenResponse<
    IdTokenFields<
        OtherClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

pub(crate) type Client = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why the provider's answer was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProviderError {
    /// The provider could not be reached, or answered nonsense (503).
    #[error("the identity provider is unavailable: {0}")]
    Unreachable(String),
    /// The provider refused the code (used already, expired, not this client's).
    #[error("the identity provider refused the code: {0}")]
    CodeRefused(String),
    /// The ID token failed its check (signature, issuer, audience, expiry, nonce).
    #[error("the ID token failed its check: {0}")]
    BadIdToken(String),
}

/// The provider, with what Coffer fetched of it.
pub struct Provider {
    pub(crate) config: OidcConfig,
    redirect: RedirectUrl,
    http: openidconnect::reqwest::Client,
    document: RwLock<Option<(Arc<ProviderMetadataWithLogout>, Instant)>>,
    /// Held while the signing keys are fetched again, so that a burst fetches them once.
    refetching: Mutex<()>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// The provider of `config`, answering to `redirect` (Coffer's callback URL).
    pub fn new(config: OidcConfig, redirect: &str) -> anyhow::Result<Self> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a provider's answer send Coffer anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()?;
        Ok(Self {
            redirect: RedirectUrl::new(redirect.to_owned())?,
            config,
            http,
            document: RwLock::new(None),
            refetching: Mutex::new(()),
        })
    }

    /// Fetches the discovery document and keys ahead of the first sign-in, and says in the log
    /// whether the provider could be reached.
    pub async fn warm_up(&self) {
        match self.document().await {
            Ok(_) => {
                tracing::info!(issuer = %self.config.issuer, "single sign-on: the identity provider's discovery document and keys are fetched")
            }
            Err(err) => tracing::warn!(
                issuer = %self.config.issuer,
                error = %err,
                "single sign-on: the identity provider (COFFER_OIDC_ISSUER) cannot be reached; sign-ins with it answer 503 until it can"
            ),
        }
    }

    /// What the sign-in button calls the provider (`COFFER_OIDC_PROVIDER_NAME`).
    pub fn name(&self) -> &str {
        &self.config.provider_name
    }

    /// The discovery document (with the signing keys), fetched when there is none or it is an
    /// hour old (an old one is kept while the provider cannot be reached).
    pub(crate) async fn document(&self) -> Result<Arc<ProviderMetadataWithLogout>, ProviderError> {
        if let Some((doc, at)) = self.document.read().await.as_ref()
            && at.elapsed() < DOCUMENT_LIFETIME
        {
            return Ok(doc.clone());
        }
        let _one = self.refetching.lock().await;
        if let Some((doc, at)) = self.document.read().await.as_ref()
            && at.elapsed() < DOCUMENT_LIFETIME
        {
            return Ok(doc.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
        match ProviderMetadataWithLogout::discover_async(issuer, &self.http).await {
            Ok(doc) => {
                let doc = Arc::new(doc);
                *self.document.write().await = Some((doc.clone(), Instant::now()));
                Ok(doc)
            }
            Err(err) => {
                let err = ProviderError::Unreachable(chain(&err));
                match self.document.read().await.as_ref() {
                    Some((doc, _)) => {
                        tracing::warn!(error = %err, "could not fetch the identity provider's discovery document again; using the one fetched before");
                        Ok(doc.clone())
                    }
                    None => Err(err),
                }
            }
        }
    }

    /// The signing keys, fetched again because an ID token named a key `seen` lacks (unless
    /// another request fetched them since).
    async fn refetch_keys(
        &self,
        seen: &Arc<ProviderMetadataWithLogout>,
    ) -> Result<Arc<ProviderMetadataWithLogout>, ProviderError> {
        let _one = self.refetching.lock().await;
        if let Some((doc, _)) = self.document.read().await.as_ref()
            && !Arc::ptr_eq(doc, seen)
        {
            return Ok(doc.clone());
        }
        let keys = CoreJsonWebKeySet::fetch_async(seen.jwks_uri(), &self.http)
            .await
            .map_err(|e| ProviderError::Unreachable(chain(&e)))?;
        let doc = Arc::new((**seen).clone().set_jwks(keys));
        *self.document.write().await = Some((doc.clone(), Instant::now()));
        tracing::info!(
            issuer = %self.config.issuer,
            "fetched the identity provider's signing keys again (an ID token named a key Coffer did not have)"
        );
        Ok(doc)
    }

    pub(crate) fn client(&self, doc: &ProviderMetadataWithLogout) -> Client {
        use secrecy::ExposeSecret as _;
        Client::from_provider_metadata(
            doc.clone(),
            ClientId::new(self.config.client_id.clone()),
            self.config
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Exchanges `code` (with its PKCE verifier) at the token endpoint, checks the ID token it
    /// brings against `nonce`, and completes what it says from the userinfo endpoint when it
    /// lacks the address or the role claim (`wanted`).
    pub(crate) async fn redeem(
        &self,
        code: String,
        verifier: String,
        nonce: &str,
        wanted: Option<&str>,
    ) -> Result<ProviderAccount, ProviderError> {
        let doc = self.document().await?;
        let client = self.client(&doc);
        let answer = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&self.http)
            .await
            .map_err(|err| match err {
                RequestTokenError::ServerResponse(refusal) => {
                    ProviderError::CodeRefused(refusal.to_string())
                }
                other => ProviderError::Unreachable(chain(&other)),
            })?;
        let id_token = answer
            .id_token()
            .ok_or_else(|| ProviderError::BadIdToken("the answer has no ID token".to_owned()))?;
        let nonce = Nonce::new(nonce.to_owned());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            // A key Coffer does not have (or a signature its key does not match): the provider
            // may have rotated its keys. Fetch them again, once, and check again.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let doc = self.refetch_keys(&doc).await?;
                let client = self.client(&doc);
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .cloned()
                    .map_err(|e| ProviderError::BadIdToken(chain(&e)))?
            }
            Err(err) => return Err(ProviderError::BadIdToken(chain(&err))),
        };
        let mut account = ProviderAccount::from(&claims);
        let lacking =
            account.email.is_none() || wanted.is_some_and(|c| !account.other.contains_key(c));
        if lacking
            && let Ok(request) = client.user_info(
                answer.access_token().clone(),
                Some(claims.subject().clone()),
            )
        {
            // The answer must be about the same `sub` (checked by the crate). A provider that
            // cannot answer fails the sign-in rather than leave a role claim out (which would
            // make an admin a user).
            let info: UserInfoClaims<OtherClaims, CoreGenderClaim> = request
                .request_async(&self.http)
                .await
                .map_err(|e| ProviderError::Unreachable(format!("userinfo: {}", chain(&e))))?;
            if account.email.is_none() {
                account.email = info.email().map(|e| e.as_str().to_owned());
                account.email_verified = info.email_verified();
            }
            for (name, value) in &info.additional_claims().rest {
                account
                    .other
                    .entry(name.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        Ok(account)
    }
}

/// An error with its causes, on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
