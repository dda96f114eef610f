//! The authorization matrix: every route × {anonymous, another user, the owner, an admin}, with
//! the status each must get. A route in the OpenAPI document without a row here fails the test.
//! Every answer is also checked for the security headers (HTML pages most strictly).

use std::collections::BTreeSet;

use crate::common::{TestApp, Topology, User, eventually};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("matrix-admin@example.org", "admin password 123");
const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    Anonymous,
    Other,
    Owner,
    Admin,
}

const ACTORS: [Actor; 4] = [Actor::Anonymous, Actor::Other, Actor::Owner, Actor::Admin];

/// What a row's request needs: the shared fixtures, or a fresh file, share and session for
/// each cell (for requests that destroy what they touch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Shared,
    Fresh,
    /// A fresh session only (the rows that sign out everywhere, run last, when the owner's
    /// sessions that would upload a fresh file are gone).
    FreshSession,
}

struct Row {
    method: &'static str,
    /// As in the OpenAPI document.
    path: &'static str,
    /// Anonymous, another user, the owner, an admin.
    expect: [u16; 4],
    needs: Needs,
    /// A web app page: signed in by the session cookie (not a bearer token), with the form's
    /// CSRF token on posts.
    page: bool,
}

const fn row(method: &'static str, path: &'static str, expect: [u16; 4]) -> Row {
    Row {
        method,
        path,
        expect,
        needs: Needs::Shared,
        page: false,
    }
}

const fn fresh(method: &'static str, path: &'static str, expect: [u16; 4]) -> Row {
    Row {
        method,
        path,
        expect,
        needs: Needs::Fresh,
        page: false,
    }
}

const fn page(method: &'static str, path: &'static str, expect: [u16; 4]) -> Row {
    Row {
        method,
        path,
        expect,
        needs: Needs::Shared,
        page: true,
    }
}

const fn fresh_page(method: &'static str, path: &'static str, expect: [u16; 4]) -> Row {
    Row {
        method,
        path,
        expect,
        needs: Needs::Fresh,
        page: true,
    }
}

/// In order: the rotation's progress is read after the rotation started.
const API_ROWS: &[Row] = &[
    row("POST", "/api/v1/auth/signup", [202, 202, 202, 202]),
    row("POST", "/api/v1/auth/login", [200, 200, 200, 200]),
    fresh("POST", "/api/v1/auth/logout", [401, 204, 204, 204]),
    row("GET", "/api/v1/me", [401, 200, 200, 200]),
    // A made-up token: refused alike for everyone.
    row("POST", "/api/v1/auth/verify-email", [422, 422, 422, 422]),
    // Anonymous: no account; the others are verified already.
    row("POST", "/api/v1/me/verify-email", [401, 409, 409, 409]),
    row(
        "POST",
        "/api/v1/auth/password-reset/confirm",
        [422, 422, 422, 422],
    ),
    // With a wrong current password (a right one would end the world's other sessions).
    row("POST", "/api/v1/me/password", [401, 403, 403, 403]),
    row("POST", "/api/v1/auth/password-reset", [202, 202, 202, 202]),
    // A made-up challenge.
    row("POST", "/api/v1/auth/login/mfa", [401, 401, 401, 401]),
    // Single sign-on is not set up here (tests/e2e/oidc.rs has a provider).
    row("GET", "/api/v1/auth/oidc/login", [404, 404, 404, 404]),
    // Without the `state` every answer of a provider carries: malformed, before anything else.
    row("GET", "/api/v1/auth/oidc/callback", [400, 400, 400, 400]),
    // Starts an enrolment (nothing is on until it is confirmed).
    row("POST", "/api/v1/me/mfa/totp", [401, 201, 201, 201]),
    // With a wrong code.
    row("POST", "/api/v1/me/mfa/totp/confirm", [401, 422, 422, 422]),
    // With a wrong password.
    row("DELETE", "/api/v1/me/mfa", [401, 403, 403, 403]),
    // The owner's (who has none: nothing changes).
    row(
        "DELETE",
        "/api/v1/admin/users/{id}/mfa",
        [401, 403, 403, 204],
    ),
    row("GET", "/api/v1/me/sessions", [401, 200, 200, 200]),
    row("GET", "/api/v1/me/preferences", [401, 200, 200, 200]),
    row("PATCH", "/api/v1/me/preferences", [401, 200, 200, 200]),
    // A spare session of the owner's.
    row("DELETE", "/api/v1/me/sessions/{id}", [401, 404, 204, 404]),
    // Signs the caller out everywhere: run last (see LAST).
    Row {
        needs: Needs::FreshSession,
        ..row("DELETE", "/api/v1/me/sessions", [401, 204, 204, 204])
    },
    row("POST", "/api/v1/me/tokens", [401, 201, 201, 201]),
    row("GET", "/api/v1/me/tokens", [401, 200, 200, 200]),
    // The owner's token (revoking one already revoked is no error).
    row("DELETE", "/api/v1/me/tokens/{id}", [401, 404, 204, 404]),
    row("POST", "/api/v1/files", [401, 202, 202, 202]),
    row("PUT", "/api/v1/files/{file}", [401, 202, 202, 202]),
    row("GET", "/api/v1/files", [401, 200, 200, 200]),
    row("GET", "/api/v1/files/{file}", [401, 404, 200, 404]),
    row("GET", "/api/v1/files/{id}/content", [401, 404, 200, 404]),
    fresh("DELETE", "/api/v1/files/{file}", [401, 404, 204, 404]),
    row("POST", "/api/v1/files/{id}/shares", [401, 404, 201, 404]),
    row("GET", "/api/v1/files/{id}/shares", [401, 404, 200, 404]),
    // A bundle of the owner's file (another's is not found).
    row("POST", "/api/v1/shares", [401, 404, 201, 404]),
    fresh("DELETE", "/api/v1/shares/{id}", [401, 404, 204, 404]),
    row("PATCH", "/api/v1/shares/{id}", [401, 404, 200, 404]),
    // The shared link has no recipient to email.
    row("POST", "/api/v1/shares/{id}/resend", [401, 404, 409, 404]),
    // Its owner's, and any share's for an admin.
    row("GET", "/api/v1/shares/{id}/activity", [401, 404, 200, 200]),
    row("GET", "/s/{token}", [200, 200, 200, 200]),
    row("GET", "/s/{token}/download", [200, 200, 200, 200]),
    row("POST", "/s/{token}/download", [200, 200, 200, 200]),
    row("GET", "/s/{token}/files/{file_id}", [200, 200, 200, 200]),
    row("POST", "/s/{token}/files/{file_id}", [200, 200, 200, 200]),
    row("GET", "/s/{token}/zip", [200, 200, 200, 200]),
    row("POST", "/s/{token}/zip", [200, 200, 200, 200]),
    // The link asks for no verification: back to its page (303, followed).
    row("POST", "/s/{token}/verify", [200, 200, 200, 200]),
    row("GET", "/api/v1/admin/users", [401, 403, 403, 200]),
    row("PATCH", "/api/v1/admin/users/{id}", [401, 403, 403, 200]),
    // Of an account no other row uses (it ends that account's sessions).
    row(
        "POST",
        "/api/v1/admin/users/{id}/password-reset",
        [401, 403, 403, 202],
    ),
    row("GET", "/api/v1/admin/keys", [401, 403, 403, 200]),
    row("GET", "/api/v1/audit/public-key", [200, 200, 200, 200]),
    row("GET", "/api/v1/admin/settings", [401, 403, 403, 200]),
    row("PATCH", "/api/v1/admin/settings", [401, 403, 403, 200]),
    row("POST", "/api/v1/admin/invites", [401, 403, 403, 201]),
    row("GET", "/api/v1/admin/invites", [401, 403, 403, 200]),
    row("POST", "/api/v1/admin/keys/rotate", [401, 403, 403, 202]),
    row("GET", "/api/v1/admin/keys/rotation", [401, 403, 403, 200]),
    row("GET", "/api/v1/admin/audit", [401, 403, 403, 200]),
    row("GET", "/api/v1/admin/audit/export", [401, 403, 403, 200]),
    row("GET", "/api/v1/admin/audit/verify", [401, 403, 403, 200]),
];

/// Routes outside the OpenAPI document: open to everyone (the web app's pages are below).
const OTHER_ROWS: &[Row] = &[
    row("GET", "/healthz", [200, 200, 200, 200]),
    row("GET", "/readyz", [200, 200, 200, 200]),
    // Only for the holder of COFFER_METRICS_TOKEN (tests/e2e/service.rs), or on the ops listener.
    row("GET", "/metrics", [401, 401, 401, 401]),
    row("GET", "/openapi.json", [200, 200, 200, 200]),
    row("GET", "/docs", [200, 200, 200, 200]),
    row("GET", "/assets/coffer.css", [200, 200, 200, 200]),
    // Error answers carry the headers too: an HTML page and a problem document.
    row("GET", "/s/not-a-share-token", [404, 404, 404, 404]),
    row("GET", "/no/such/route", [404, 404, 404, 404]),
];

/// The web app's pages (`coffer_api::web::ROUTES`; a page without a row fails the test). Signed
/// out, every page but sign-up and sign-in sends the browser to sign in (303); a successful
/// form post answers 303 too.
const PAGE_ROWS: &[Row] = &[
    page("GET", "/", [303, 303, 303, 303]),
    page("GET", "/assets/upload.js", [200, 200, 200, 200]),
    page("GET", "/app/signup", [200, 303, 303, 303]),
    page("POST", "/app/signup", [303, 303, 303, 303]),
    page("GET", "/app/signin", [200, 303, 303, 303]),
    // For anyone holding the emailed link; a made-up token is refused on the page.
    page("GET", "/app/verify-email", [200, 200, 200, 200]),
    page("POST", "/app/verify-email", [422, 422, 422, 422]),
    page("GET", "/app/password-reset", [200, 200, 200, 200]),
    page("POST", "/app/password-reset", [422, 422, 422, 422]),
    page("GET", "/app/forgot-password", [200, 200, 200, 200]),
    // Posted without an address.
    page("POST", "/app/forgot-password", [422, 422, 422, 422]),
    // Posted without a code.
    page("POST", "/app/signin/mfa", [422, 422, 422, 422]),
    // Where a sign-in with the identity provider leads on (it needs no session of its own).
    page("GET", "/app/signed-in", [200, 200, 200, 200]),
    // Single sign-on is not set up here (tests/e2e/oidc.rs has a provider).
    page("GET", "/app/sso", [303, 404, 404, 404]),
    page("POST", "/app/sso/connect", [303, 404, 404, 404]),
    // Signing in ends the session the browser held: each caller sends a session of its own.
    fresh_page("POST", "/app/signin", [303, 303, 303, 303]),
    fresh_page("POST", "/app/signout", [303, 303, 303, 303]),
    page("GET", "/app/files", [303, 200, 200, 200]),
    page("POST", "/app/files", [303, 303, 303, 303]),
    page("GET", "/app/upload", [303, 200, 200, 200]),
    page("GET", "/app/password", [303, 200, 200, 200]),
    // Posted without the password fields: refused, nothing changes.
    page("POST", "/app/password", [303, 422, 422, 422]),
    page("GET", "/app/sessions", [303, 200, 200, 200]),
    page("GET", "/app/preferences", [303, 200, 200, 200]),
    page("POST", "/app/preferences", [303, 303, 303, 303]),
    // Another spare session of the owner's.
    page("POST", "/app/sessions/{id}/end", [303, 404, 303, 404]),
    // Signs the caller out everywhere: run last (see LAST).
    Row {
        needs: Needs::FreshSession,
        ..page("POST", "/app/sessions/end-all", [303, 303, 303, 303])
    },
    page("GET", "/app/mfa", [303, 200, 200, 200]),
    // Starts an enrolment (nothing is on until it is confirmed).
    page("POST", "/app/mfa/start", [303, 200, 200, 200]),
    // Posted without a code.
    page("POST", "/app/mfa/confirm", [303, 422, 422, 422]),
    // Posted without the password.
    page("POST", "/app/mfa/off", [303, 403, 403, 403]),
    page("GET", "/app/tokens", [303, 200, 200, 200]),
    // Posted without a name: refused, nothing made.
    page("POST", "/app/tokens", [303, 422, 422, 422]),
    // The owner's token (revoking one already revoked is no error).
    page("POST", "/app/tokens/{id}/revoke", [303, 404, 303, 404]),
    page("GET", "/app/files/{id}", [303, 404, 200, 404]),
    page("GET", "/app/files/{id}/download", [303, 404, 200, 404]),
    page("GET", "/app/files/{id}/delete", [303, 404, 200, 404]),
    fresh_page("POST", "/app/files/{id}/delete", [303, 404, 303, 404]),
    page("POST", "/app/files/{id}/shares", [303, 404, 303, 404]),
    // The form for the owner's file (`?file=`; another's is not found).
    page("GET", "/app/shares/new", [303, 404, 200, 404]),
    page("POST", "/app/shares", [303, 404, 303, 404]),
    fresh_page("POST", "/app/shares/{id}/revoke", [303, 404, 303, 404]),
    page("GET", "/app/shares/{id}/edit", [303, 404, 200, 404]),
    page("POST", "/app/shares/{id}/edit", [303, 404, 303, 404]),
    page("POST", "/app/shares/{id}/resend", [303, 404, 409, 404]),
    page("GET", "/app/shares/{id}/activity", [303, 404, 200, 200]),
    page(
        "GET",
        "/app/shares/{id}/activity/export",
        [303, 404, 200, 200],
    ),
    page("GET", "/app/admin/audit", [303, 403, 403, 200]),
    page("GET", "/app/admin/audit/export", [303, 403, 403, 200]),
    page("POST", "/app/admin/audit/verify", [303, 403, 403, 200]),
    page("GET", "/app/admin/keys", [303, 403, 403, 200]),
    page("POST", "/app/admin/keys/rotate", [303, 403, 403, 303]),
    page("GET", "/app/admin/users", [303, 403, 403, 200]),
    page("POST", "/app/admin/users/{id}", [303, 403, 403, 303]),
    // The owner's (who has none: nothing changes).
    page(
        "POST",
        "/app/admin/users/{id}/mfa-reset",
        [303, 403, 403, 303],
    ),
    page("GET", "/app/admin/signup", [303, 403, 403, 200]),
    page("POST", "/app/admin/signup", [303, 403, 403, 303]),
    page("POST", "/app/admin/invites", [303, 403, 403, 303]),
];

/// A ready file of the owner's with a link share.
struct Target {
    file_id: String,
    share_id: String,
    share_token: String,
}

struct World {
    app: TestApp,
    /// A client that does not follow redirects (the pages' 303s are checked).
    pages: reqwest::Client,
    owner: User,
    other: User,
    admin: User,
    owner_id: String,
    /// An account of its own for the rows that would end the owner's sessions.
    bystander_id: String,
    shared: Target,
    /// A token of the owner's, for the row that revokes one.
    owner_token_id: String,
    /// Sessions of the owner's for the rows that end one (the API's, the page's).
    spare_sessions: [String; 2],
}

/// Rows that sign their caller out everywhere: sent after every other row.
const LAST: [(&str, &str); 2] = [
    ("DELETE", "/api/v1/me/sessions"),
    ("POST", "/app/sessions/end-all"),
];

fn is_last(row: &Row) -> bool {
    LAST.contains(&(row.method, row.path))
}

async fn target(app: &TestApp, owner: &User) -> Target {
    let file_id = app
        .upload(owner, "target.txt", b"matrix target".to_vec())
        .await;
    assert_eq!(
        app.wait_until_settled(owner, &file_id).await["status"],
        "ready"
    );
    let created = app
        .post_json(
            &format!("/api/v1/files/{file_id}/shares"),
            &json!({ "expires_in_hours": 1 }),
            Some(&owner.token),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.expect("json");
    let share = &body["shares"][0];
    let url = share["url"].as_str().expect("a link share has a url");
    Target {
        file_id,
        share_id: share["id"].as_str().expect("id").to_owned(),
        share_token: url.rsplit('/').next().expect("token").to_owned(),
    }
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> User {
    let login = app.login(email, password).await;
    assert_eq!(login.status(), StatusCode::OK);
    let body: Value = login.json().await.expect("json");
    User {
        email: email.to_owned(),
        token: body["token"].as_str().expect("token").to_owned(),
    }
}

impl World {
    async fn new(topology: Topology) -> Self {
        let settings = [
            ("COFFER_ADMIN_EMAIL", ADMIN.0),
            ("COFFER_ADMIN_PASSWORD", ADMIN.1),
        ];
        let app = TestApp::spawn_with(topology, &settings, coffer::Roles::ALL).await;
        let owner = app.user().await;
        let other = app.user().await;
        let admin = sign_in(&app, ADMIN.0, ADMIN.1).await;
        let me: Value = app
            .get("/api/v1/me", &owner.token)
            .await
            .json()
            .await
            .expect("json");
        let owner_id = me["id"].as_str().expect("id").to_owned();
        let bystander = app.user().await;
        let me: Value = app
            .get("/api/v1/me", &bystander.token)
            .await
            .json()
            .await
            .expect("json");
        let bystander_id = me["id"].as_str().expect("id").to_owned();
        let shared = target(&app, &owner).await;
        let owner_token_id = make_token(&app, &owner, &["files:read"]).await.0;
        let mut spare_sessions = [String::new(), String::new()];
        for (n, spare) in spare_sessions.iter_mut().enumerate() {
            let session = sign_in(&app, &owner.email, PASSWORD).await;
            let listed = app
                .get_json("/api/v1/me/sessions", Some(&session.token))
                .await;
            *spare = listed["sessions"]
                .as_array()
                .expect("sessions")
                .iter()
                .find(|s| s["current"] == true)
                .unwrap_or_else(|| panic!("spare session {n}"))["id"]
                .as_str()
                .expect("id")
                .to_owned();
        }
        Self {
            app,
            pages: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            owner,
            other,
            admin,
            owner_id,
            bystander_id,
            shared,
            owner_token_id,
            spare_sessions,
        }
    }

    fn user(&self, actor: Actor) -> Option<&User> {
        match actor {
            Actor::Anonymous => None,
            Actor::Other => Some(&self.other),
            Actor::Owner => Some(&self.owner),
            Actor::Admin => Some(&self.admin),
        }
    }

    /// Sends `row`'s request as `actor` and returns the status and headers.
    async fn call(&self, row: &Row, actor: Actor) -> (StatusCode, HeaderMap) {
        self.call_with(row, actor, None).await
    }

    /// Sends `row`'s request as `actor`, or with `bearer` (a personal API token of `actor`'s)
    /// in place of `actor`'s session.
    async fn call_with(
        &self,
        row: &Row,
        actor: Actor,
        bearer: Option<&str>,
    ) -> (StatusCode, HeaderMap) {
        let (fresh_target, fresh_session);
        let (target, session) = match row.needs {
            Needs::Shared => (&self.shared, self.user(actor).map(|u| u.token.clone())),
            Needs::Fresh if bearer.is_some() => {
                fresh_target = Some(target(&self.app, &self.owner).await);
                (fresh_target.as_ref().unwrap_or(&self.shared), None)
            }
            Needs::FreshSession if bearer.is_some() => (&self.shared, None),
            Needs::Fresh | Needs::FreshSession => {
                fresh_target = if row.needs == Needs::Fresh {
                    Some(target(&self.app, &self.owner).await)
                } else {
                    None
                };
                fresh_session = match self.user(actor) {
                    None => None,
                    Some(user) => {
                        let password = if actor == Actor::Admin {
                            ADMIN.1
                        } else {
                            PASSWORD
                        };
                        Some(sign_in(&self.app, &user.email, password).await.token)
                    }
                };
                (fresh_target.as_ref().unwrap_or(&self.shared), fresh_session)
            }
        };
        let id = if row.path.starts_with("/api/v1/shares/") || row.path.starts_with("/app/shares/")
        {
            &target.share_id
        } else if row.path.starts_with("/api/v1/me/sessions/") {
            &self.spare_sessions[0]
        } else if row.path.starts_with("/app/sessions/") {
            &self.spare_sessions[1]
        } else if row.path.starts_with("/api/v1/me/tokens/") || row.path.starts_with("/app/tokens/")
        {
            &self.owner_token_id
        } else if row.path.ends_with("/password-reset") {
            &self.bystander_id
        } else if row.path.starts_with("/api/v1/admin/users/")
            || row.path.starts_with("/app/admin/users/")
        {
            &self.owner_id
        } else {
            &target.file_id
        };
        let file = if row.method == "PUT" {
            "matrix.txt"
        } else {
            &target.file_id
        };
        let mut path = row
            .path
            .replace("{id}", id)
            .replace("{file}", file)
            .replace("{file_id}", &target.file_id)
            .replace("{token}", &target.share_token);
        if row.path == "/app/shares/new" {
            path.push_str(&format!("?file={}", target.file_id));
        }
        if row.page {
            return self.call_page(row, &path, session.as_deref()).await;
        }
        let method = Method::from_bytes(row.method.as_bytes()).expect("method");
        let mut request = self.app.http.request(method, self.app.url(&path));
        if let Some(token) = bearer.map(str::to_owned).or(session) {
            request = request.bearer_auth(token);
        }
        request = match (row.method, row.path) {
            ("POST", "/api/v1/auth/signup") => request.json(&json!({
                "email": format!("signup-{}@example.org", uuid::Uuid::new_v4().simple()),
                "password": PASSWORD,
            })),
            ("POST", "/api/v1/auth/verify-email") => {
                request.json(&json!({ "token": "made-up-token" }))
            }
            ("POST", "/api/v1/auth/password-reset/confirm") => request.json(&json!({
                "token": "made-up-token",
                "password": PASSWORD,
            })),
            ("POST", "/api/v1/auth/login") => {
                request.json(&json!({ "email": self.other.email, "password": PASSWORD }))
            }
            ("POST", "/api/v1/files") => {
                let part = reqwest::multipart::Part::bytes(b"form upload".to_vec())
                    .file_name("matrix.txt");
                request.multipart(reqwest::multipart::Form::new().part("file", part))
            }
            ("PUT", _) => request.body("raw upload"),
            ("POST", "/api/v1/files/{id}/shares") => {
                request.json(&json!({ "expires_in_hours": 1 }))
            }
            ("POST", "/api/v1/shares") => request.json(&json!({
                "file_ids": [target.file_id],
                "expires_in_hours": 1,
            })),
            ("POST", "/s/{token}/download" | "/s/{token}/files/{file_id}" | "/s/{token}/zip") => {
                request
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("password=")
            }
            ("POST", "/s/{token}/verify") => request
                .header("content-type", "application/x-www-form-urlencoded")
                .body("code="),
            // The policy as it is (open: the signup row above must keep working).
            ("PATCH", "/api/v1/admin/settings") => request.json(&json!({ "signup": "open" })),
            ("PATCH", "/api/v1/shares/{id}") => request.json(&json!({ "max_downloads": 50 })),
            ("PATCH", "/api/v1/me/preferences") => {
                request.json(&json!({ "receipts_daily": false }))
            }
            ("PATCH", _) => request.json(&json!({ "disabled": false })),
            ("POST", "/api/v1/admin/invites") => request.json(&json!({
                "email": format!("invited-{}@example.org", uuid::Uuid::new_v4().simple()),
            })),
            ("POST", "/api/v1/auth/password-reset") => {
                request.json(&json!({ "email": "matrix-reset@example.org" }))
            }
            ("POST", "/api/v1/auth/login/mfa") => {
                request.json(&json!({ "challenge": "made-up", "code": "123456" }))
            }
            ("POST", "/api/v1/me/mfa/totp") => request.json(&json!({})),
            ("POST", "/api/v1/me/mfa/totp/confirm") => request.json(&json!({ "code": "000000" })),
            ("DELETE", "/api/v1/me/mfa") => {
                request.json(&json!({ "password": "not the password at all" }))
            }
            ("POST", "/api/v1/me/tokens") => {
                request.json(&json!({ "name": "matrix", "scopes": ["files:read"] }))
            }
            ("POST", "/api/v1/me/password") => request.json(&json!({
                "current_password": "not the password at all",
                "new_password": "another long password",
            })),
            _ => request,
        };
        let response = request.send().await.expect("request");
        let (status, headers) = (response.status(), response.headers().clone());
        // Drain the body so that streamed answers complete.
        let _ = response.bytes().await;
        (status, headers)
    }
}

impl World {
    /// Sends a page row's request with the session cookie (and a form's CSRF token, taken from
    /// a page as a browser would).
    async fn call_page(
        &self,
        row: &Row,
        path: &str,
        session: Option<&str>,
    ) -> (StatusCode, HeaderMap) {
        if row.path == "/app/admin/keys/rotate" {
            self.wait_for_rotation().await;
        }
        let mut cookies: Vec<String> = session
            .map(|token| format!("coffer_session={token}"))
            .into_iter()
            .collect();
        let mut csrf = None;
        if row.method == "POST" {
            if matches!(
                row.path,
                "/app/signup"
                    | "/app/signin"
                    | "/app/verify-email"
                    | "/app/password-reset"
                    | "/app/forgot-password"
                    | "/app/signin/mfa"
            ) {
                // The visitor's double-submit token, from a page fetched without a session.
                let form = self
                    .pages
                    .get(self.app.url("/app/signin"))
                    .send()
                    .await
                    .expect("form");
                let cookie = form
                    .headers()
                    .get("set-cookie")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|c| c.split(';').next())
                    .expect("a CSRF cookie")
                    .to_owned();
                cookies.push(cookie);
                csrf = csrf_in(&form.text().await.expect("html"));
            } else if let Some(token) = session {
                let form = self
                    .pages
                    .get(self.app.url("/app/upload"))
                    .header("cookie", format!("coffer_session={token}"))
                    .send()
                    .await
                    .expect("form");
                csrf = csrf_in(&form.text().await.expect("html"));
            }
        }
        let method = Method::from_bytes(row.method.as_bytes()).expect("method");
        let mut request = self.pages.request(method, self.app.url(path));
        if !cookies.is_empty() {
            request = request.header("cookie", cookies.join("; "));
        }
        let csrf = csrf.unwrap_or_default();
        request = match (row.method, row.path) {
            ("POST", "/app/files") => {
                let part = reqwest::multipart::Part::bytes(b"page upload".to_vec())
                    .file_name("matrix.txt");
                request.multipart(
                    reqwest::multipart::Form::new()
                        .text("csrf", csrf)
                        .part("file", part),
                )
            }
            ("POST", "/app/signup") => request.form(&[
                ("csrf", csrf.as_str()),
                (
                    "email",
                    &format!("page-{}@example.org", uuid::Uuid::new_v4().simple()),
                ),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ]),
            ("POST", "/app/verify-email") => {
                request.form(&[("csrf", csrf.as_str()), ("token", "made-up")])
            }
            ("POST", "/app/password-reset") => request.form(&[
                ("csrf", csrf.as_str()),
                ("token", "made-up"),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ]),
            ("POST", "/app/signin") => request.form(&[
                ("csrf", csrf.as_str()),
                ("email", &self.other.email),
                ("password", PASSWORD),
            ]),
            ("POST", "/app/files/{id}/shares") => request.form(&[
                ("csrf", csrf.as_str()),
                ("recipients", "matrix-recipient@example.org"),
            ]),
            ("POST", "/app/shares") => request.form(&[
                ("csrf", csrf.as_str()),
                ("file", self.shared.file_id.as_str()),
                ("recipients", "matrix-recipient@example.org"),
            ]),
            ("POST", "/app/shares/{id}/edit") => {
                request.form(&[("csrf", csrf.as_str()), ("max_downloads", "50")])
            }
            ("POST", "/app/admin/users/{id}") => {
                request.form(&[("csrf", csrf.as_str()), ("disabled", "false")])
            }
            // The policy as it is: the sign-up rows must keep working.
            ("POST", "/app/admin/signup") => {
                request.form(&[("csrf", csrf.as_str()), ("kind", "open")])
            }
            ("POST", "/app/admin/invites") => request.form(&[
                ("csrf", csrf.as_str()),
                (
                    "email",
                    &format!("page-invite-{}@example.org", uuid::Uuid::new_v4().simple()),
                ),
            ]),
            ("POST", _) => request.form(&[("csrf", csrf.as_str())]),
            _ => request,
        };
        let response = request.send().await.expect("request");
        let (status, headers) = (response.status(), response.headers().clone());
        let _ = response.bytes().await;
        (status, headers)
    }

    /// Waits (with a deadline) until no key rotation runs, so that another may start.
    async fn wait_for_rotation(&self) {
        eventually(
            "no rotation running",
            std::time::Duration::from_secs(60),
            || async {
                let progress = coffer::coffer_core::services::rotation::progress(
                    self.app.core(),
                    coffer::coffer_core::principal::Operator::Console,
                )
                .await
                .expect("progress");
                if progress
                    .is_none_or(|r| r.state != coffer::coffer_core::types::RotationState::Running)
                {
                    Ok(())
                } else {
                    Err("a rotation never finished".to_owned())
                }
            },
        )
        .await;
    }
}

fn csrf_in(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[at..].find('"')?;
    Some(html[at..at + end].to_owned())
}

/// What is wrong with a response's security headers, if anything.
fn header_problems(headers: &HeaderMap) -> Vec<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut problems = Vec::new();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        if get(name) != Some(value) {
            problems.push(format!("{name}: {:?}", get(name)));
        }
    }
    let csp = get("content-security-policy").unwrap_or_default();
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for needed in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        if !directives.contains(&needed) {
            problems.push(format!("CSP without {needed}: {csp:?}"));
        }
    }
    let html = get("content-type").is_some_and(|t| t.starts_with("text/html"));
    if html
        && directives
            .iter()
            .any(|d| d.starts_with("script-src") && (d.contains("unsafe") || d.contains('*')))
    {
        problems.push(format!("HTML with a loose script policy: {csp:?}"));
    }
    problems
}

/// Every `METHOD /path` of the OpenAPI document.
async fn documented_operations(app: &TestApp) -> BTreeSet<String> {
    let spec: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    let paths = spec["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect()
}

async fn every_route_answers_each_caller_as_it_should(topology: Topology) {
    let world = World::new(topology).await;

    let documented = documented_operations(&world.app).await;
    let covered: BTreeSet<String> = API_ROWS
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the matrix: {missing:?}"
    );
    let stale: Vec<_> = covered.difference(&documented).collect();
    assert!(stale.is_empty(), "rows for routes that are gone: {stale:?}");

    let pages: BTreeSet<String> = coffer::coffer_api::web::ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.split(", ").map(move |m| format!("{m} {path}")))
        .collect();
    let covered: BTreeSet<String> = PAGE_ROWS
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        pages.difference(&covered).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "pages without a row in the matrix"
    );
    assert_eq!(
        covered.difference(&pages).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "rows for pages that are gone"
    );

    let mut wrong = Vec::new();
    let rows = API_ROWS.iter().chain(OTHER_ROWS).chain(PAGE_ROWS);
    let (last, first): (Vec<&Row>, Vec<&Row>) = rows.partition(|r| is_last(r));
    for row in first.into_iter().chain(last) {
        for (actor, expected) in ACTORS.iter().zip(row.expect) {
            let (got, headers) = world.call(row, *actor).await;
            if got.as_u16() != expected {
                wrong.push(format!(
                    "{} {} as {actor:?}: got {got}, expected {expected}",
                    row.method, row.path
                ));
            }
            for problem in header_problems(&headers) {
                wrong.push(format!(
                    "{} {} as {actor:?}: {problem}",
                    row.method, row.path
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    world.app.stop().await;
}

/// What a personal API token needs for a route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// Open to everyone: a token changes nothing.
    Open,
    /// Any token of the account.
    Any,
    /// A token with this scope.
    Scope(&'static str),
    /// Never a token: the account's own settings, and administration.
    SessionOnly,
}

/// The grant of every API row (a row without one fails the test).
const GRANTS: &[(&str, &str, Grant)] = &[
    ("POST", "/api/v1/auth/signup", Grant::Open),
    ("POST", "/api/v1/auth/login", Grant::Open),
    ("POST", "/api/v1/auth/logout", Grant::SessionOnly),
    ("GET", "/api/v1/me", Grant::Any),
    ("POST", "/api/v1/auth/verify-email", Grant::Open),
    ("POST", "/api/v1/me/verify-email", Grant::SessionOnly),
    ("POST", "/api/v1/auth/password-reset/confirm", Grant::Open),
    ("POST", "/api/v1/me/password", Grant::SessionOnly),
    ("POST", "/api/v1/auth/password-reset", Grant::Open),
    ("POST", "/api/v1/auth/login/mfa", Grant::Open),
    ("GET", "/api/v1/auth/oidc/login", Grant::Open),
    ("GET", "/api/v1/auth/oidc/callback", Grant::Open),
    ("POST", "/api/v1/me/mfa/totp", Grant::SessionOnly),
    ("POST", "/api/v1/me/mfa/totp/confirm", Grant::SessionOnly),
    ("DELETE", "/api/v1/me/mfa", Grant::SessionOnly),
    ("DELETE", "/api/v1/admin/users/{id}/mfa", Grant::SessionOnly),
    ("GET", "/api/v1/me/sessions", Grant::SessionOnly),
    ("GET", "/api/v1/me/preferences", Grant::Any),
    ("PATCH", "/api/v1/me/preferences", Grant::SessionOnly),
    ("DELETE", "/api/v1/me/sessions/{id}", Grant::SessionOnly),
    ("DELETE", "/api/v1/me/sessions", Grant::SessionOnly),
    ("POST", "/api/v1/me/tokens", Grant::SessionOnly),
    ("GET", "/api/v1/me/tokens", Grant::SessionOnly),
    ("DELETE", "/api/v1/me/tokens/{id}", Grant::SessionOnly),
    ("POST", "/api/v1/files", Grant::Scope("files:write")),
    ("PUT", "/api/v1/files/{file}", Grant::Scope("files:write")),
    ("GET", "/api/v1/files", Grant::Scope("files:read")),
    ("GET", "/api/v1/files/{file}", Grant::Scope("files:read")),
    (
        "GET",
        "/api/v1/files/{id}/content",
        Grant::Scope("files:read"),
    ),
    (
        "DELETE",
        "/api/v1/files/{file}",
        Grant::Scope("files:write"),
    ),
    (
        "POST",
        "/api/v1/files/{id}/shares",
        Grant::Scope("shares:write"),
    ),
    (
        "GET",
        "/api/v1/files/{id}/shares",
        Grant::Scope("files:read"),
    ),
    ("POST", "/api/v1/shares", Grant::Scope("shares:write")),
    (
        "DELETE",
        "/api/v1/shares/{id}",
        Grant::Scope("shares:write"),
    ),
    ("PATCH", "/api/v1/shares/{id}", Grant::Scope("shares:write")),
    (
        "POST",
        "/api/v1/shares/{id}/resend",
        Grant::Scope("shares:write"),
    ),
    (
        "GET",
        "/api/v1/shares/{id}/activity",
        Grant::Scope("files:read"),
    ),
    ("GET", "/s/{token}", Grant::Open),
    ("GET", "/s/{token}/download", Grant::Open),
    ("POST", "/s/{token}/download", Grant::Open),
    ("GET", "/s/{token}/files/{file_id}", Grant::Open),
    ("POST", "/s/{token}/files/{file_id}", Grant::Open),
    ("GET", "/s/{token}/zip", Grant::Open),
    ("POST", "/s/{token}/zip", Grant::Open),
    ("POST", "/s/{token}/verify", Grant::Open),
    ("GET", "/api/v1/admin/users", Grant::SessionOnly),
    ("PATCH", "/api/v1/admin/users/{id}", Grant::SessionOnly),
    (
        "POST",
        "/api/v1/admin/users/{id}/password-reset",
        Grant::SessionOnly,
    ),
    ("GET", "/api/v1/admin/keys", Grant::SessionOnly),
    ("GET", "/api/v1/audit/public-key", Grant::Open),
    ("GET", "/api/v1/admin/settings", Grant::SessionOnly),
    ("PATCH", "/api/v1/admin/settings", Grant::SessionOnly),
    ("POST", "/api/v1/admin/invites", Grant::SessionOnly),
    ("GET", "/api/v1/admin/invites", Grant::SessionOnly),
    ("POST", "/api/v1/admin/keys/rotate", Grant::SessionOnly),
    ("GET", "/api/v1/admin/keys/rotation", Grant::SessionOnly),
    ("GET", "/api/v1/admin/audit", Grant::Scope("audit:read")),
    (
        "GET",
        "/api/v1/admin/audit/export",
        Grant::Scope("audit:read"),
    ),
    (
        "GET",
        "/api/v1/admin/audit/verify",
        Grant::Scope("audit:read"),
    ),
];

/// Makes a personal API token with `scopes` for `user` (signed in); its id and secret.
async fn make_token(app: &TestApp, user: &User, scopes: &[&str]) -> (String, String) {
    let created = app
        .post_json(
            "/api/v1/me/tokens",
            &json!({ "name": format!("matrix {}", scopes.join(" ")), "scopes": scopes }),
            Some(&user.token),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.expect("json");
    (
        body["token"]["id"].as_str().expect("id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

/// Each scope × each API route: a token with one scope (the owner's for the file and share
/// scopes, the admin's for `audit:read`) gets what its account gets where the scope covers the
/// route, 403 where it does not, and 403 wherever only a signed-in person may act.
async fn every_route_answers_each_token_as_its_scopes_say(topology: Topology) {
    let world = World::new(topology).await;
    let rows: BTreeSet<String> = API_ROWS
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let granted: BTreeSet<String> = GRANTS.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    assert_eq!(rows, granted, "every API row has a grant, and only they");

    let mut tokens = Vec::new();
    for scope in ["files:read", "files:write", "shares:write"] {
        let (_, secret) = make_token(&world.app, &world.owner, &[scope]).await;
        tokens.push((scope, Actor::Owner, secret));
    }
    let (_, secret) = make_token(&world.app, &world.admin, &["audit:read"]).await;
    tokens.push(("audit:read", Actor::Admin, secret));

    let mut wrong = Vec::new();
    for row in API_ROWS {
        let grant = GRANTS
            .iter()
            .find(|(m, p, _)| *m == row.method && *p == row.path)
            .map(|(_, _, g)| *g)
            .expect("a grant");
        for (scope, actor, secret) in &tokens {
            let as_account = row.expect[ACTORS.iter().position(|a| a == actor).expect("actor")];
            let expected = match grant {
                Grant::Open | Grant::Any => as_account,
                Grant::Scope(needed) if needed == *scope => as_account,
                Grant::Scope(_) | Grant::SessionOnly => 403,
            };
            let (got, headers) = world.call_with(row, *actor, Some(secret)).await;
            if got.as_u16() != expected {
                wrong.push(format!(
                    "{} {} with a {scope} token: got {got}, expected {expected}",
                    row.method, row.path
                ));
            }
            for problem in header_problems(&headers) {
                wrong.push(format!(
                    "{} {} with a {scope} token: {problem}",
                    row.method, row.path
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    world.app.stop().await;
}

both_topologies!(
    every_route_answers_each_caller_as_it_should,
    every_route_answers_each_token_as_its_scopes_say
);
