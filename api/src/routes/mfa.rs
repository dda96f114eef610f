//! The second factor: enrolment (a secret, its QR code, then a first code), turning it off, an
//! admin's reset, and the second step of a sign-in.

use coffer_core::principal::Operator;
use coffer_core::services::{mfa, users};
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::{ExposeSecret as _, SecretString};

use super::Tag;
use super::accounts::SessionToken;
use crate::auth::{AdminAuth, UserAuth, core, meta};
use crate::problem::ApiError;

pub struct MfaApi;

#[derive(Object)]
struct TotpEnrolment {
    /// The secret in base32, to type into an app that cannot scan.
    secret: String,
    /// The `otpauth://` URL the QR code holds.
    otpauth_url: String,
    /// The QR code, as an SVG document drawn by Coffer.
    qr_svg: String,
}

#[derive(ApiResponse)]
enum EnrolResponse {
    /// Scan the code (or type the secret), then confirm with a first code.
    #[oai(status = 201)]
    Started(Json<TotpEnrolment>),
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct CodeRequest {
    /// The 6 digits the authenticator app shows.
    #[oai(validator(max_length = 64))]
    code: String,
}

#[derive(Object)]
struct RecoveryCodes {
    /// Ten codes, each good for one sign-in without the app: shown this once, never again.
    recovery_codes: Vec<String>,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct PasswordConfirmation {
    /// The account's current password.
    #[oai(validator(max_length = 1024))]
    password: String,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct SecondStep {
    /// The `challenge` of the login's 202.
    #[oai(validator(max_length = 128))]
    challenge: String,
    /// A code from the authenticator app, or a recovery code.
    #[oai(validator(max_length = 64))]
    code: String,
}

#[derive(ApiResponse)]
enum Done {
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
enum SignedIn {
    #[oai(status = 200)]
    Ok(Json<SessionToken>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Auth")]
impl MfaApi {
    /// Start enrolling a second factor (TOTP)
    #[oai(path = "/me/mfa/totp", method = "post")]
    async fn enrol(&self, req: &Request, auth: UserAuth) -> Result<EnrolResponse, ApiError> {
        let enrolment = mfa::start(core(req)?, &auth.0).await?;
        Ok(EnrolResponse::Started(Json(TotpEnrolment {
            secret: enrolment.secret.expose_secret().to_owned(),
            otpauth_url: enrolment.otpauth_url.expose_secret().to_owned(),
            qr_svg: enrolment.qr_svg,
        })))
    }

    /// Confirm enrolment with a first code: the second factor is on
    #[oai(path = "/me/mfa/totp/confirm", method = "post")]
    async fn confirm(
        &self,
        req: &Request,
        auth: UserAuth,
        body: Json<CodeRequest>,
    ) -> Result<Json<RecoveryCodes>, ApiError> {
        let codes = mfa::confirm(core(req)?, &auth.0, &body.0.code, &meta(req)).await?;
        Ok(Json(RecoveryCodes {
            recovery_codes: codes.iter().map(|c| c.expose_secret().to_owned()).collect(),
        }))
    }

    /// Turn your second factor off (needs your password)
    #[oai(path = "/me/mfa", method = "delete")]
    async fn turn_off(
        &self,
        req: &Request,
        auth: UserAuth,
        body: Json<PasswordConfirmation>,
    ) -> Result<Done, ApiError> {
        let password = SecretString::from(body.0.password);
        mfa::turn_off(core(req)?, &auth.0, password, &meta(req)).await?;
        Ok(Done::Done)
    }

    /// Complete a sign-in with a code of the second factor
    #[oai(path = "/auth/login/mfa", method = "post")]
    async fn second_step(
        &self,
        req: &Request,
        body: Json<SecondStep>,
    ) -> Result<SignedIn, ApiError> {
        let body = body.0;
        let (token, expires_at) =
            users::complete_second_step(core(req)?, &body.challenge, &body.code, None, &meta(req))
                .await?;
        Ok(SignedIn::Ok(Json(SessionToken {
            token: token.expose().to_owned(),
            expires_at,
        })))
    }
}

pub struct MfaAdminApi;

#[OpenApi(prefix_path = "/api/v1/admin", tag = "Tag::Admin")]
impl MfaAdminApi {
    /// Reset an account's second factor (a lost phone): off until they enrol again
    #[oai(path = "/users/:id/mfa", method = "delete")]
    async fn reset(
        &self,
        req: &Request,
        admin: AdminAuth,
        id: Path<String>,
    ) -> Result<Done, ApiError> {
        let id = uuid::Uuid::parse_str(&id.0)
            .map_err(|_| ApiError::from(coffer_core::ServiceError::NotFound("account")))?;
        mfa::reset(core(req)?, Operator::Admin(&admin.0.user), id, &meta(req)).await?;
        Ok(Done::Done)
    }
}
