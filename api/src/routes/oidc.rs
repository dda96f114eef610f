//! Single sign-on with an OpenID provider: the start, which sends the browser to the provider,
//! and the callback the provider sends it back to (`COFFER_OIDC_*`; 404 when unset).

use coffer_core::services::oidc::{self, Answer, NotFinished};
use poem::Request;
use poem::http::header;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, OpenApi};

use super::Tag;
use super::accounts::SessionToken;
use crate::auth::{core, meta};
use crate::problem::ApiError;
use crate::web::session::{self as web_session, SESSION_COOKIE};

/// The cookie that ties the provider's answer to the browser that started the sign-in:
/// `SameSite=Lax`, since the answer arrives from the provider's site.
pub const BINDING_COOKIE: &str = "coffer_sso";
const BINDING_PATH: &str = "/api/v1/auth/oidc";

pub struct OidcApi;

/// How the callback answers.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
enum AnswerName {
    /// The web app: its session cookie, then its page.
    Web,
    /// A script: the session's bearer token as JSON.
    Json,
}

#[derive(ApiResponse)]
enum Started {
    /// To the identity provider, with the cookie that ties its answer to this browser.
    #[oai(status = 303)]
    ToProvider(
        #[oai(header = "Location")] String,
        #[oai(header = "Set-Cookie")] String,
    ),
}

#[derive(ApiResponse)]
enum CallbackAnswer {
    /// Signed in (`answer=json`): the session's bearer token.
    #[oai(status = 200)]
    Session(Json<SessionToken>),
    /// The web app's way on: signed in (the session's cookie is set, and the page to go to
    /// follows), or the sign-in page saying why not (`/app/signin?sso=…`).
    #[oai(status = 303)]
    ToWebApp(
        #[oai(header = "Location")] String,
        #[oai(header = "Set-Cookie")] Option<String>,
    ),
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Auth")]
impl OidcApi {
    /// Sign in with the identity provider
    ///
    /// Sends the browser to the provider (authorization code flow with PKCE). The provider
    /// sends it back to `/api/v1/auth/oidc/callback`. `return_to` is a page of the web app to
    /// open once signed in.
    #[oai(path = "/auth/oidc/login", method = "get")]
    async fn login(
        &self,
        req: &Request,
        /// How the callback answers: `web` (default) or `json`.
        answer: Query<Option<AnswerName>>,
        #[oai(validator(max_length = 512))] return_to: Query<Option<String>>,
    ) -> Result<Started, ApiError> {
        let core = core(req)?;
        let answer = match answer.0 {
            Some(AnswerName::Json) => Answer::Json,
            _ => Answer::Web,
        };
        let begun = oidc::begin(core, answer, return_to.0.as_deref(), None, &meta(req)).await?;
        Ok(Started::ToProvider(
            begun.authorization_url,
            binding_cookie(core, begun.binding.expose()),
        ))
    }

    /// The identity provider's answer
    ///
    /// Where the provider sends the browser back to. Checks the answer (`state` against the
    /// sign-in this browser started, the code exchanged with its PKCE verifier, the ID token's
    /// signature and claims against the provider's keys and the `nonce`) and opens a session.
    #[oai(path = "/auth/oidc/callback", method = "get")]
    async fn callback(
        &self,
        req: &Request,
        #[oai(validator(max_length = 2048))] code: Query<Option<String>>,
        /// The sign-in's `state`, as Coffer sent it to the provider.
        #[oai(validator(max_length = 512))]
        state: Query<String>,
        #[oai(validator(max_length = 256))] error: Query<Option<String>>,
        #[oai(validator(max_length = 2048))] error_description: Query<Option<String>>,
        #[oai(validator(max_length = 2048))] iss: Query<Option<String>>,
    ) -> Result<CallbackAnswer, ApiError> {
        let _ = error_description; // the provider's words are not shown: they may be anything
        let core = core(req)?;
        let callback = oidc::Callback {
            code: code.0,
            state: Some(state.0),
            error: error.0,
            iss: iss.0,
        };
        let finished = oidc::finish(
            core,
            callback,
            web_session::cookie(req, BINDING_COOKIE),
            web_session::cookie(req, SESSION_COOKIE),
            &meta(req),
        )
        .await;
        match finished {
            Ok(done) => Ok(match done.answer {
                Answer::Json => CallbackAnswer::Session(Json(SessionToken {
                    token: done.token.expose().to_owned(),
                    expires_at: done.expires_at,
                })),
                // A page of Coffer's own leads on: the browser came from the provider's site,
                // and a `SameSite=Strict` cookie is sent only once a page of this site asks.
                Answer::Web => CallbackAnswer::ToWebApp(
                    format!(
                        "/app/signed-in?to={}",
                        percent_encoding::utf8_percent_encode(
                            &done.return_to,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    ),
                    Some(web_session::set_cookie(
                        core,
                        SESSION_COOKIE,
                        done.token.expose(),
                        u64::try_from((done.expires_at - chrono::Utc::now()).num_seconds())
                            .unwrap_or(0),
                    )),
                ),
            }),
            Err(NotFinished::Refused(refusal, answer)) => {
                let web = match answer {
                    Some(answer) => answer == Answer::Web,
                    None => wants_html(req),
                };
                if web {
                    Ok(CallbackAnswer::ToWebApp(
                        format!("/app/signin?sso={}", refusal.code()),
                        None,
                    ))
                } else {
                    Err(refusal.into_error().into())
                }
            }
            Err(NotFinished::Failed(err)) => Err(err.into()),
        }
    }
}

/// Whether the request came from a browser's navigation (which shows the web app's page
/// rather than JSON).
fn wants_html(req: &Request) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// `Set-Cookie` for the binding cookie: HttpOnly, `SameSite=Lax` (the provider's answer is a
/// navigation from its site), sent to the sign-in routes only, for as long as a sign-in may
/// take.
pub fn binding_cookie(core: &coffer_core::Core, value: &str) -> String {
    let secure = if core.config.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{BINDING_COOKIE}={value}; Max-Age=600; Path={BINDING_PATH}; HttpOnly; SameSite=Lax{secure}"
    )
}
