//! Sign-up, login, logout and the current user.

use chrono::{DateTime, Utc};
use coffer_core::services::{password_reset, users, verification};
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::SecretString;

use super::Tag;
use crate::auth::{UserAuth, core, meta};
use crate::problem::ApiError;

pub struct AccountsApi;

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct Credentials {
    /// Email address.
    #[oai(validator(max_length = 254))]
    email: String,
    /// At least 10 characters.
    #[oai(validator(max_length = 1024))]
    password: String,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct SignupRequest {
    /// Email address.
    #[oai(validator(max_length = 254))]
    email: String,
    /// At least 10 characters.
    #[oai(validator(max_length = 1024))]
    password: String,
    /// The token of an invitation to this address (from its link's `invite=`): needed when
    /// sign-up is by invitation, or for an address outside the allowed domains.
    #[oai(validator(max_length = 128))]
    invite: Option<String>,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct PasswordChange {
    /// The password the account has now.
    #[oai(validator(max_length = 1024))]
    current_password: String,
    /// At least 10 characters.
    #[oai(validator(max_length = 1024))]
    new_password: String,
}

#[derive(ApiResponse)]
enum PasswordChangeResponse {
    /// Changed: every other session of the account has ended; this one goes on.
    #[oai(status = 204)]
    Changed,
}

#[derive(Object)]
struct Account {
    id: uuid::Uuid,
    email: String,
    role: super::RoleName,
    /// Whether the address is confirmed: until it is, no share link is emailed in its name.
    email_verified: bool,
    /// Whether a second factor is on.
    mfa: bool,
    /// `COFFER_REQUIRE_MFA` is set and this account has no second factor: this session may
    /// only set one up (`POST /api/v1/me/mfa/totp`) or sign out.
    mfa_enrolment_due: bool,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct EmailVerification {
    /// The token of the emailed link (its `token=`).
    #[oai(validator(max_length = 128))]
    token: String,
}

#[derive(ApiResponse)]
enum VerifyResponse {
    /// The address is verified.
    #[oai(status = 204)]
    Verified,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct PasswordReset {
    /// The token of the emailed link (its `token=`).
    #[oai(validator(max_length = 128))]
    token: String,
    /// The new password: at least 10 characters.
    #[oai(validator(max_length = 1024))]
    password: String,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct ResetRequest {
    /// The account's email address.
    #[oai(validator(max_length = 254))]
    email: String,
}

/// The same whether or not the address has an account.
#[derive(Object)]
struct ResetRequested {
    /// What happens next.
    detail: String,
}

#[derive(ApiResponse)]
enum ResetRequestResponse {
    #[oai(status = 202)]
    Accepted(Json<ResetRequested>),
}

#[derive(ApiResponse)]
enum ResetDone {
    /// The new password is set; sign in with it.
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
enum ResendResponse {
    /// A new link is on its way to the account's address.
    #[oai(status = 202)]
    Sent,
}

#[derive(Object)]
pub(crate) struct SessionToken {
    /// Send as `Authorization: Bearer <token>`.
    pub(crate) token: String,
    pub(crate) expires_at: DateTime<Utc>,
}

/// The same for a new address and one that has an account already (whose owner is told by
/// email): sign-up tells nobody who is a user.
#[derive(Object)]
struct SignupAccepted {
    /// What happens next.
    detail: String,
}

#[derive(ApiResponse)]
enum SignupResponse {
    #[oai(status = 202)]
    Accepted(Json<SignupAccepted>),
}

#[derive(ApiResponse)]
enum LoginResponse {
    #[oai(status = 200)]
    Ok(Json<SessionToken>),
    /// The password is right and the account has a second factor: send a code of it with the
    /// challenge to `POST /api/v1/auth/login/mfa` within five minutes.
    #[oai(status = 202)]
    SecondStep(Json<SecondStepDue>),
}

#[derive(Object)]
pub(crate) struct SecondStepDue {
    /// `totp`: a code from the authenticator app, or a recovery code.
    second_factor: String,
    /// Send with the code; it works for five minutes and five codes.
    challenge: String,
    expires_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum LogoutResponse {
    #[oai(status = 204)]
    LoggedOut,
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Auth")]
impl AccountsApi {
    /// Create an account
    ///
    /// Who may sign up is the sign-up policy's to say (anyone, addresses at some domains, or
    /// holders of an invitation): a refused address gets 403, whether or not it has an account.
    #[oai(path = "/auth/signup", method = "post")]
    async fn signup(
        &self,
        req: &Request,
        body: Json<SignupRequest>,
    ) -> Result<SignupResponse, ApiError> {
        let body = body.0;
        users::signup(
            core(req)?,
            &body.email,
            SecretString::from(body.password),
            body.invite.as_deref(),
            &meta(req),
        )
        .await?;
        Ok(SignupResponse::Accepted(Json(SignupAccepted {
            detail: "Sign in with this address and password. If the address already had an account, its owner has been told by email and its password is unchanged.".into(),
        })))
    }

    /// Log in and receive a bearer token
    #[oai(path = "/auth/login", method = "post")]
    async fn login(
        &self,
        req: &Request,
        body: Json<Credentials>,
    ) -> Result<LoginResponse, ApiError> {
        let body = body.0;
        let signed_in = users::login(
            core(req)?,
            &body.email,
            SecretString::from(body.password),
            None, // a bearer client may hold several tokens at once
            &meta(req),
        )
        .await?;
        Ok(match signed_in {
            users::SignIn::Session(token, expires_at) => LoginResponse::Ok(Json(SessionToken {
                token: token.expose().to_owned(),
                expires_at,
            })),
            users::SignIn::SecondStep {
                challenge,
                expires_at,
            } => LoginResponse::SecondStep(Json(SecondStepDue {
                second_factor: "totp".into(),
                challenge: challenge.expose().to_owned(),
                expires_at,
            })),
        })
    }

    /// Revoke the current token
    #[oai(path = "/auth/logout", method = "post")]
    async fn logout(&self, req: &Request, auth: UserAuth) -> Result<LogoutResponse, ApiError> {
        users::logout(core(req)?, &auth.0, &meta(req)).await?;
        Ok(LogoutResponse::LoggedOut)
    }

    /// The signed-in account
    #[oai(path = "/me", method = "get")]
    async fn me(&self, req: &Request, auth: UserAuth) -> Result<Json<Account>, ApiError> {
        let user = auth.0.user;
        let mfa_enrolment_due = user.enrolment_due();
        let email_verified = verification::is_verified(core(req)?, user.id).await?;
        let mfa = coffer_core::services::mfa::enrolled(core(req)?, user.id).await?;
        Ok(Json(Account {
            id: user.id,
            email: user.email,
            role: user.role.into(),
            email_verified,
            mfa,
            mfa_enrolment_due,
        }))
    }

    /// Confirm an account's email address with the emailed link's token
    #[oai(path = "/auth/verify-email", method = "post")]
    async fn verify_email(
        &self,
        req: &Request,
        body: Json<EmailVerification>,
    ) -> Result<VerifyResponse, ApiError> {
        verification::confirm(core(req)?, &body.0.token, &meta(req)).await?;
        Ok(VerifyResponse::Verified)
    }

    /// Forgot your password? Ask for a link to set a new one
    ///
    /// The answer is the same whether or not the address has an account. If it has, a link that
    /// works once, for an hour, is emailed to it; nothing changes until it is followed.
    #[oai(path = "/auth/password-reset", method = "post")]
    async fn request_reset(
        &self,
        req: &Request,
        body: Json<ResetRequest>,
    ) -> Result<ResetRequestResponse, ApiError> {
        password_reset::request(core(req)?, &body.0.email, &meta(req)).await?;
        Ok(ResetRequestResponse::Accepted(Json(ResetRequested {
            detail: "If an account has this address, a link to set a new password is on its way to it. It works once, for an hour.".into(),
        })))
    }

    /// Set a new password with the link of a reset
    #[oai(path = "/auth/password-reset/confirm", method = "post")]
    async fn confirm_reset(
        &self,
        req: &Request,
        body: Json<PasswordReset>,
    ) -> Result<ResetDone, ApiError> {
        let body = body.0;
        password_reset::confirm(
            core(req)?,
            &body.token,
            SecretString::from(body.password),
            &meta(req),
        )
        .await?;
        Ok(ResetDone::Done)
    }

    /// Email a new verification link to the signed-in account's address
    #[oai(path = "/me/verify-email", method = "post")]
    async fn resend_verification(
        &self,
        req: &Request,
        auth: UserAuth,
    ) -> Result<ResendResponse, ApiError> {
        verification::resend(core(req)?, &auth.0.user).await?;
        Ok(ResendResponse::Sent)
    }

    /// Change the password (every other session ends)
    #[oai(path = "/me/password", method = "post")]
    async fn change_password(
        &self,
        req: &Request,
        auth: UserAuth,
        body: Json<PasswordChange>,
    ) -> Result<PasswordChangeResponse, ApiError> {
        let body = body.0;
        users::change_password(
            core(req)?,
            &auth.0,
            SecretString::from(body.current_password),
            SecretString::from(body.new_password),
            &meta(req),
        )
        .await?;
        Ok(PasswordChangeResponse::Changed)
    }
}
