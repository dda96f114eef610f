//! Who may sign in, and how: single sign-on through an OpenID provider (`COFFER_OIDC_*`),
//! local passwords (`COFFER_LOCAL_LOGIN`) and the break-glass admin who keeps one when they are
//! off.

use secrecy::SecretString;
use url::Url;

use super::settings::Settings;
use super::{ConfigError, bad};
use crate::types::EmailAddress;

/// Single sign-on with an OpenID provider (authorization code flow with PKCE).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The provider's issuer: discovery is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE only).
    pub client_secret: Option<SecretString>,
    /// Always with `openid`.
    pub scopes: Vec<String>,
    /// What the sign-in button says: "Sign in with {provider_name}".
    pub provider_name: String,
    /// First sign-in of an unknown provider account creates a Coffer account.
    pub jit: bool,
    /// The role at each sign-in, from a claim: admin when the claim (a string or a list of
    /// strings) holds `admin_group`, user otherwise. `None`: roles are managed in Coffer.
    pub roles: Option<RoleMapping>,
}

#[derive(Debug, Clone)]
pub struct RoleMapping {
    pub claim: String,
    pub admin_group: String,
}

/// How people sign in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub oidc: Option<OidcConfig>,
    /// Passwords of Coffer's own: `false` leaves them to the break-glass admin only.
    pub local_login: bool,
    /// The admin who may sign in with a password when local passwords are off
    /// (`COFFER_BREAK_GLASS_ADMIN`, or else `COFFER_ADMIN_EMAIL`).
    pub break_glass_admin: Option<EmailAddress>,
}

impl Identity {
    /// Whether `email` may sign in with a password (the caller still checks it is an admin's,
    /// for the break-glass admin).
    pub fn password_allowed(&self, email: &str) -> PasswordUse {
        if self.local_login {
            return PasswordUse::Anyone;
        }
        match (&self.break_glass_admin, EmailAddress::parse(email)) {
            (Some(admin), Ok(typed)) if *admin == typed => PasswordUse::BreakGlassAdmin,
            _ => PasswordUse::Refused,
        }
    }
}

/// Whether a password may be used to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordUse {
    Anyone,
    /// Only if the account is an admin's.
    BreakGlassAdmin,
    Refused,
}

impl Settings {
    /// The identity settings, checked; `admin_email` is `COFFER_ADMIN_EMAIL`, the break-glass
    /// admin unless `COFFER_BREAK_GLASS_ADMIN` names another.
    pub(super) fn identity(
        &mut self,
        admin_email: Option<&EmailAddress>,
    ) -> Result<Identity, ConfigError> {
        let oidc = match self.oidc_issuer.take() {
            None => {
                if self.oidc_client_id.is_some() {
                    return Err(bad(
                        "COFFER_OIDC_ISSUER",
                        "set together with COFFER_OIDC_CLIENT_ID",
                    ));
                }
                None
            }
            Some(issuer) => Some(self.oidc(issuer)?),
        };
        if !self.local_login && oidc.is_none() {
            return Err(bad(
                "COFFER_LOCAL_LOGIN",
                "true, unless single sign-on is set up (COFFER_OIDC_ISSUER): with neither, nobody could sign in",
            ));
        }
        let break_glass_admin = match self.break_glass_admin.take() {
            Some(email) => Some(
                EmailAddress::parse(&email)
                    .map_err(|_| bad("COFFER_BREAK_GLASS_ADMIN", "an admin's email address"))?,
            ),
            None => admin_email.cloned(),
        };
        Ok(Identity {
            oidc,
            local_login: self.local_login,
            break_glass_admin,
        })
    }

    fn oidc(&mut self, issuer: String) -> Result<OidcConfig, ConfigError> {
        let expected = "the provider's issuer URL, such as https://sso.example.org/realms/staff (http:// only on this machine's loopback)";
        let url = Url::parse(&issuer).map_err(|_| bad("COFFER_OIDC_ISSUER", expected))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
        if !(url.scheme() == "https" || url.scheme() == "http" && loopback)
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(bad("COFFER_OIDC_ISSUER", expected));
        }
        let client_id = self.oidc_client_id.take().ok_or_else(|| {
            bad(
                "COFFER_OIDC_CLIENT_ID",
                "set together with COFFER_OIDC_ISSUER",
            )
        })?;
        let mut scopes: Vec<String> = self
            .oidc_scopes
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if scopes.iter().any(|s| {
            !s.chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        }) {
            return Err(bad(
                "COFFER_OIDC_SCOPES",
                "scopes separated by spaces or commas, such as openid email profile groups",
            ));
        }
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".to_owned());
        }
        let provider_name = self.oidc_provider_name.trim().to_owned();
        if provider_name.is_empty() || provider_name.chars().count() > 60 {
            return Err(bad(
                "COFFER_OIDC_PROVIDER_NAME",
                "a name of at most 60 characters, such as Keycloak or Microsoft",
            ));
        }
        let roles = match (self.oidc_role_claim.take(), self.oidc_admin_group.take()) {
            (None, None) => None,
            (Some(claim), Some(admin_group)) => Some(RoleMapping { claim, admin_group }),
            (Some(_), None) => {
                return Err(bad(
                    "COFFER_OIDC_ADMIN_GROUP",
                    "set together with COFFER_OIDC_ROLE_CLAIM",
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "COFFER_OIDC_ROLE_CLAIM",
                    "set together with COFFER_OIDC_ADMIN_GROUP",
                ));
            }
        };
        Ok(OidcConfig {
            issuer,
            client_id,
            client_secret: self.oidc_client_secret.take().map(SecretString::from),
            scopes,
            provider_name,
            jit: self.oidc_jit,
            roles,
        })
    }
}
