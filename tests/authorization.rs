//! The authorization matrix: every route × {anonymous, another user, the owner, an admin}, with
//! the status each must get. A route in the OpenAPI document without a row here fails the test.
//! Every answer is also checked for the security headers (HTML pages most strictly).

mod common;

use std::collections::BTreeSet;

use common::{TestApp, Topology, User};
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
}

struct Row {
    method: &'static str,
    /// As in the OpenAPI document.
    path: &'static str,
    /// Anonymous, another user, the owner, an admin.
    expect: [u16; 4],
    needs: Needs,
}

const fn row(method: &'static str, path: &'static str, expect: [u16; 4]) -> Row {
    Row {
        method,
        path,
        expect,
        needs: Needs::Shared,
    }
}

const fn fresh(method: &'static str, path: &'static str, expect: [u16; 4]) -> Row {
    Row {
        method,
        path,
        expect,
        needs: Needs::Fresh,
    }
}

/// In order: the rotation's progress is read after the rotation started.
const API_ROWS: &[Row] = &[
    row("POST", "/api/v1/auth/signup", [201, 201, 201, 201]),
    row("POST", "/api/v1/auth/login", [200, 200, 200, 200]),
    fresh("POST", "/api/v1/auth/logout", [401, 204, 204, 204]),
    row("GET", "/api/v1/me", [401, 200, 200, 200]),
    row("POST", "/api/v1/files", [401, 202, 202, 202]),
    row("PUT", "/api/v1/files/{file}", [401, 202, 202, 202]),
    row("GET", "/api/v1/files", [401, 200, 200, 200]),
    row("GET", "/api/v1/files/{file}", [401, 404, 200, 404]),
    row("GET", "/api/v1/files/{id}/content", [401, 404, 200, 404]),
    fresh("DELETE", "/api/v1/files/{file}", [401, 404, 204, 404]),
    row("POST", "/api/v1/files/{id}/shares", [401, 404, 201, 404]),
    row("GET", "/api/v1/files/{id}/shares", [401, 404, 200, 404]),
    fresh("DELETE", "/api/v1/shares/{id}", [401, 404, 204, 404]),
    row("GET", "/s/{token}", [200, 200, 200, 200]),
    row("GET", "/s/{token}/download", [200, 200, 200, 200]),
    row("POST", "/s/{token}/download", [200, 200, 200, 200]),
    row("GET", "/api/v1/admin/users", [401, 403, 403, 200]),
    row("PATCH", "/api/v1/admin/users/{id}", [401, 403, 403, 200]),
    row("GET", "/api/v1/admin/keys", [401, 403, 403, 200]),
    row("POST", "/api/v1/admin/keys/rotate", [401, 403, 403, 202]),
    row("GET", "/api/v1/admin/keys/rotation", [401, 403, 403, 200]),
    row("GET", "/api/v1/admin/audit", [401, 403, 403, 200]),
    row("GET", "/api/v1/admin/audit/export", [401, 403, 403, 200]),
    row("GET", "/api/v1/admin/audit/verify", [401, 403, 403, 200]),
];

/// Routes outside the OpenAPI document: open to everyone.
const OTHER_ROWS: &[Row] = &[
    row("GET", "/healthz", [200, 200, 200, 200]),
    row("GET", "/readyz", [200, 200, 200, 200]),
    row("GET", "/metrics", [200, 200, 200, 200]),
    row("GET", "/openapi.json", [200, 200, 200, 200]),
    row("GET", "/docs", [200, 200, 200, 200]),
    row("GET", "/assets/coffer.css", [200, 200, 200, 200]),
    // Error answers carry the headers too: an HTML page and a problem document.
    row("GET", "/s/not-a-share-token", [404, 404, 404, 404]),
    row("GET", "/no/such/route", [404, 404, 404, 404]),
];

/// A ready file of the owner's with a link share.
struct Target {
    file_id: String,
    share_id: String,
    share_token: String,
}

struct World {
    app: TestApp,
    owner: User,
    other: User,
    admin: User,
    owner_id: String,
    shared: Target,
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
        let shared = target(&app, &owner).await;
        Self {
            app,
            owner,
            other,
            admin,
            owner_id,
            shared,
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
        let (fresh_target, fresh_session);
        let (target, session) = match row.needs {
            Needs::Shared => (&self.shared, self.user(actor).map(|u| u.token.clone())),
            Needs::Fresh => {
                fresh_target = target(&self.app, &self.owner).await;
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
                (&fresh_target, fresh_session)
            }
        };
        let id = if row.path.starts_with("/api/v1/shares/") {
            &target.share_id
        } else if row.path.starts_with("/api/v1/admin/users/") {
            &self.owner_id
        } else {
            &target.file_id
        };
        let file = if row.method == "PUT" {
            "matrix.txt"
        } else {
            &target.file_id
        };
        let path = row
            .path
            .replace("{id}", id)
            .replace("{file}", file)
            .replace("{token}", &target.share_token);
        let method = Method::from_bytes(row.method.as_bytes()).expect("method");
        let mut request = self.app.http.request(method, self.app.url(&path));
        if let Some(token) = session {
            request = request.bearer_auth(token);
        }
        request = match (row.method, row.path) {
            ("POST", "/api/v1/auth/signup") => request.json(&json!({
                "email": format!("signup-{}@example.org", uuid::Uuid::new_v4().simple()),
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
            ("POST", "/s/{token}/download") => request
                .header("content-type", "application/x-www-form-urlencoded")
                .body("password="),
            ("PATCH", _) => request.json(&json!({ "disabled": false })),
            _ => request,
        };
        let response = request.send().await.expect("request");
        let (status, headers) = (response.status(), response.headers().clone());
        // Drain the body so that streamed answers complete.
        let _ = response.bytes().await;
        (status, headers)
    }
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

    let mut wrong = Vec::new();
    for row in API_ROWS.iter().chain(OTHER_ROWS) {
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

both_topologies!(every_route_answers_each_caller_as_it_should);
