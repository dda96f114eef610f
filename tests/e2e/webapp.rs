//! The web app for owners and admins: pages over the same services as the API, cookie sessions,
//! CSRF tokens on every form, security headers on every page, escaping, and the whole journey in
//! headless Chromium (sign up, upload with a moving progress bar, share, download as the
//! recipient, verify the audit chain as admin).

use std::path::PathBuf;
use std::time::Duration;

use crate::common::smtp::SmtpServer;
use crate::common::web::{Browser, PASSWORD, Page};
use crate::common::{TestApp, Topology, eventually, pattern, pdf};
use reqwest::StatusCode;
use sea_orm::{EntityTrait as _, PaginatorTrait as _};
use serde_json::Value;

const ADMIN: (&str, &str) = ("web-admin@example.org", "admin password 123");

fn email(who: &str) -> String {
    format!("{who}-{}@example.org", uuid::Uuid::new_v4().simple())
}

async fn spawn_with_admin(topology: Topology, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![
        ("COFFER_ADMIN_EMAIL", ADMIN.0),
        ("COFFER_ADMIN_PASSWORD", ADMIN.1),
    ];
    settings.extend_from_slice(extra);
    TestApp::spawn_with(topology, &settings, coffer::Roles::ALL).await
}

/// How many rows each table that a form could add to holds, and the users' roles.
async fn snapshot(app: &TestApp) -> (u64, u64, u64, u64, u64, Vec<(String, bool)>) {
    let db = app.core().db();
    let users = entity::user::Entity::find().all(db).await.expect("users");
    let mut roles: Vec<(String, bool)> = users
        .iter()
        .map(|u| (format!("{}:{}", u.email, u.role), u.disabled))
        .collect();
    roles.sort();
    let revoked = entity::share::Entity::find()
        .all(db)
        .await
        .expect("shares")
        .iter()
        .filter(|s| s.state == entity::ShareState::Revoked)
        .count() as u64;
    (
        users.len() as u64,
        entity::file::Entity::find()
            .all(db)
            .await
            .expect("files")
            .iter()
            .filter(|f| f.status != entity::FileStatus::Deleted)
            .count() as u64,
        entity::share::Entity::find()
            .count(db)
            .await
            .expect("count")
            + 1000 * revoked,
        entity::key_version::Entity::find()
            .count(db)
            .await
            .expect("count"),
        entity::session::Entity::find()
            .all(db)
            .await
            .expect("sessions")
            .iter()
            .filter(|s| s.revoked_at.is_none())
            .count() as u64,
        roles,
    )
}

/// Polls a file's page until its status badge says `ready`, within a deadline.
async fn wait_ready_on_page(browser: &mut Browser, file_id: &str) -> Page {
    // `get` takes `&mut self` (the browser keeps cookies), which a probe cannot hold across
    // its await: the browser is lent to each probe in turn through a lock.
    let browser = tokio::sync::Mutex::new(browser);
    eventually(
        "the file ready on its page",
        Duration::from_secs(60),
        || async {
            let page = browser
                .lock()
                .await
                .get(&format!("/app/files/{file_id}"))
                .await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            if page.body.contains("badge-ready") {
                return Ok(page);
            }
            assert!(
                !page.body.contains("badge-rejected"),
                "rejected: {}",
                page.body
            );
            Err(format!("never ready:\n{}", page.body))
        },
    )
    .await
}

fn file_id_of(location: &str) -> String {
    location
        .strip_prefix("/app/files/")
        .unwrap_or_else(|| panic!("not a file page: {location}"))
        .to_owned()
}

/// A new account, signed in through the pages, with one file uploaded through the form and
/// ready: the browser, its CSRF token and the file's id.
async fn owner_with_ready_file(
    app: &TestApp,
    name: &str,
    bytes: &[u8],
) -> (Browser, String, String) {
    let mut owner = Browser::new(app);
    owner.sign_up_and_in(&email("owner")).await;
    let csrf = owner.csrf().await;
    let uploaded = owner.upload(&csrf, name, bytes.to_vec(), &[]).await;
    assert_eq!(uploaded.status, StatusCode::SEE_OTHER, "{}", uploaded.body);
    let file = file_id_of(uploaded.location());
    wait_ready_on_page(&mut owner, &file).await;
    (owner, csrf, file)
}

async fn an_upload_through_the_form_becomes_ready_with_shares_emailed(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn_with(
        topology,
        &[("COFFER_SMTP_URL", &smtp.url)],
        coffer::Roles::ALL,
    )
    .await;
    let mut ann = Browser::new(&app);
    ann.sign_up_and_in(&email("ann")).await;
    let csrf = ann.csrf().await;
    let bytes = pdf(&pattern(300_000, 3));

    let uploaded = ann
        .upload(
            &csrf,
            "Contract 2026.pdf",
            bytes.clone(),
            &[
                ("recipients", "bob@example.org\ncarol@example.org"),
                ("expires_in_hours", "24"),
                ("max_downloads", "3"),
                ("password", ""),
                ("message", "The signed contract"),
            ],
        )
        .await;

    assert_eq!(uploaded.status, StatusCode::SEE_OTHER, "{}", uploaded.body);
    let id = file_id_of(uploaded.location());
    let list = ann.get("/app/files").await;
    assert!(list.body.contains("Contract 2026.pdf"));
    let page = wait_ready_on_page(&mut ann, &id).await;
    assert!(page.body.contains("bob@example.org") && page.body.contains("carol@example.org"));
    let bob = smtp.wait_for("bob@example.org", 1).await.remove(0);
    smtp.wait_for("carol@example.org", 1).await;
    assert!(bob.part("text/plain").contains("The signed contract"));
    // The link works, and downloads the very bytes.
    let download = app
        .http
        .get(format!("{}/download", bob.link()))
        .send()
        .await
        .expect("get");
    assert_eq!(download.status(), StatusCode::OK);
    assert!(download.bytes().await.expect("body") == bytes);
    // The owner's page shows each recipient's state once the emails are out, and bob's
    // download once it is recorded complete (a moment after its transfer ended).
    let browser = tokio::sync::Mutex::new(&mut ann);
    eventually(
        "both recipients emailed, bob's download complete",
        Duration::from_secs(30),
        || async {
            let page = browser.lock().await.get(&format!("/app/files/{id}")).await;
            if page.body.matches("badge-emailed").count() == 2
                && page.body.contains("Downloads: 1 of 3")
            {
                assert!(!page.body.contains("under way"), "{}", page.body);
                return Ok(());
            }
            Err(page.body)
        },
    )
    .await;
    // And the owner's own download from the page.
    let own = ann.get(&format!("/app/files/{id}/download")).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.headers["content-type"], "application/octet-stream");
    assert!(
        own.headers["content-disposition"]
            .to_str()
            .expect("ascii")
            .starts_with("attachment; filename=\"Contract 2026.pdf\"")
    );
    assert_eq!(own.headers["accept-ranges"], "bytes");
    assert_eq!(
        own.headers["content-length"],
        bytes.len().to_string().as_str()
    );
    // A browser resumes a download that broke off: the rest, under the same tag.
    let etag = own.headers["etag"].to_str().expect("ascii").to_owned();
    let path = format!("/app/files/{id}/download");
    let rest = ann
        .get_with(&path, &[("Range", "bytes=4-"), ("If-Range", &etag)])
        .await;
    assert_eq!(rest.status, StatusCode::PARTIAL_CONTENT);
    let len = bytes.len();
    assert_eq!(
        rest.headers["content-range"],
        format!("bytes 4-{}/{len}", len - 1).as_str()
    );
    assert!(rest.bytes[..] == bytes[4..], "the rest of the file");
    let beyond = ann
        .get_with(&path, &[("Range", &format!("bytes={len}-"))])
        .await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        beyond.headers["content-range"],
        format!("bytes */{len}").as_str()
    );
    app.stop().await;
}

both_topologies!(an_upload_through_the_form_becomes_ready_with_shares_emailed);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_a_valid_csrf_token_are_refused_and_change_nothing() {
    let app = spawn_with_admin(Topology::Embedded, &[]).await;
    let (mut ann, csrf, file) = owner_with_ready_file(&app, "notes.txt", b"some notes").await;
    let shared = ann
        .post(
            &format!("/app/files/{file}/shares"),
            &[("csrf", &csrf), ("recipients", "bob@example.org")],
        )
        .await;
    assert_eq!(shared.status, StatusCode::SEE_OTHER, "{}", shared.body);
    let share: String = {
        let shares = entity::share::Entity::find()
            .all(app.core().db())
            .await
            .expect("shares");
        shares[0].id.to_string()
    };
    let mut admin = Browser::new(&app);
    admin.sign_in(ADMIN.0, ADMIN.1).await;
    let admin_csrf = admin.csrf().await;
    let ann_id = entity::user::Entity::find()
        .all(app.core().db())
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.role == entity::Role::User)
        .expect("ann")
        .id
        .to_string();
    let mut visitor = Browser::new(&app);
    let visitor_csrf = visitor.get("/app/signup").await.csrf();
    let before = snapshot(&app).await;

    let wrong = "A".repeat(csrf.len());
    for token in [None, Some(wrong.as_str()), Some("")] {
        let with = |fields: &[(&'static str, &'static str)]| {
            let mut all: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            if let Some(token) = token {
                all.insert(0, ("csrf".to_owned(), token.to_owned()));
            }
            all
        };
        let mut answers = Vec::new();
        let new_email = email("mallory");
        let signup = with(&[("password", PASSWORD), ("password_again", PASSWORD)]);
        let mut signup: Vec<(&str, &str)> = signup
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        signup.push(("email", &new_email));
        answers.push(("sign-up", visitor.post("/app/signup", &signup).await));
        let signin = [("email", ADMIN.0), ("password", ADMIN.1)];
        let signin_fields = with(&signin);
        let fields: Vec<(&str, &str)> = signin_fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        answers.push(("sign-in", visitor.post("/app/signin", &fields).await));

        // The upload's token must be the first part; a wrong one stops it before the file.
        let mut form = reqwest::multipart::Form::new();
        if let Some(token) = token {
            form = form.text("csrf", token.to_owned());
        }
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(b"forged upload".to_vec()).file_name("forged.txt"),
        );
        answers.push(("upload", ann.post_multipart("/app/files", form).await));
        // A right token after the file does not count either.
        let late = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"late token".to_vec()).file_name("late.txt"),
            )
            .text("csrf", csrf.clone());
        answers.push((
            "upload, token last",
            ann.post_multipart("/app/files", late).await,
        ));

        let share_fields = with(&[("recipients", "eve@example.org")]);
        let fields: Vec<(&str, &str)> = share_fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        answers.push((
            "share",
            ann.post(&format!("/app/files/{file}/shares"), &fields)
                .await,
        ));
        for (what, path, fields) in [
            ("delete", format!("/app/files/{file}/delete"), with(&[])),
            ("revoke", format!("/app/shares/{share}/revoke"), with(&[])),
            ("sign-out", "/app/signout".to_owned(), with(&[])),
        ] {
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            answers.push((what, ann.post(&path, &fields).await));
        }
        for (what, path, fields) in [
            ("rotate", "/app/admin/keys/rotate".to_owned(), with(&[])),
            (
                "user change",
                format!("/app/admin/users/{ann_id}"),
                with(&[("disabled", "true")]),
            ),
            ("verify", "/app/admin/audit/verify".to_owned(), with(&[])),
            ("admin sign-out", "/app/signout".to_owned(), with(&[])),
        ] {
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            answers.push((what, admin.post(&path, &fields).await));
        }
        for (what, answer) in answers {
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{what} with token {token:?}: {}",
                answer.body
            );
            assert!(
                answer.body.contains("nothing was done"),
                "{what}: {}",
                answer.body
            );
        }
        assert_eq!(
            snapshot(&app).await,
            before,
            "token {token:?} changed something"
        );
    }
    // Nothing reached quarantine either.
    assert_eq!(app.objects("quarantine").await, Vec::<String>::new());

    // With the right tokens the same forms work.
    let signed_up = visitor
        .post(
            "/app/signup",
            &[
                ("csrf", &visitor_csrf),
                ("email", &email("mallory")),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ],
        )
        .await;
    assert_eq!(signed_up.status, StatusCode::SEE_OTHER);
    let rotated = admin
        .post("/app/admin/keys/rotate", &[("csrf", &admin_csrf)])
        .await;
    assert_eq!(rotated.status, StatusCode::SEE_OTHER, "{}", rotated.body);
    let out = ann.post("/app/signout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ann.get("/app/files").await.location(),
        "/app/signin",
        "signed out"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookies_carry_their_flags() {
    for (public_url, secure) in [(None, false), (Some("https://files.example.org"), true)] {
        let extra: Vec<(&str, &str)> = public_url
            .iter()
            .map(|u| ("COFFER_PUBLIC_URL", *u))
            .chain([("COFFER_SESSION_TTL_HOURS", "3")])
            .collect();
        let app = spawn_with_admin(Topology::Embedded, &extra).await;
        let mut browser = Browser::new(&app);
        let form = browser.get("/app/signin").await;
        assert_eq!(
            form.headers
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap_or_default().to_owned()),
            secure.then(|| "max-age=31536000".to_owned()),
            "HSTS exactly when the public URL is https"
        );
        let visitor = form.set_cookie("coffer_csrf").expect("a CSRF cookie");
        let signed_in = browser.sign_in(ADMIN.0, ADMIN.1).await;
        let session = signed_in
            .set_cookie("coffer_session")
            .expect("a session cookie");
        for (cookie, max_age) in [(&visitor, 12 * 3600), (&session, 3 * 3600)] {
            let attributes: Vec<&str> = cookie.split(';').skip(1).map(str::trim).collect();
            for wanted in ["HttpOnly", "SameSite=Strict", "Path=/"] {
                assert!(attributes.contains(&wanted), "{wanted} missing: {cookie}");
            }
            assert!(
                attributes.contains(&format!("Max-Age={max_age}").as_str()),
                "{cookie}"
            );
            assert_eq!(
                attributes.contains(&"Secure"),
                secure,
                "Secure exactly when the public URL is https: {cookie}"
            );
        }
        // The session cookie is a session like the API's: it works, and sign-out ends it.
        assert_eq!(browser.get("/app/files").await.status, StatusCode::OK);
        let token = browser.cookies["coffer_session"].clone();
        assert_eq!(
            app.get("/api/v1/me", &token).await.status(),
            StatusCode::OK,
            "the bearer API accepts the same session"
        );
        let csrf = browser.csrf().await;
        let out = browser.post("/app/signout", &[("csrf", &csrf)]).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        let cleared = out.set_cookie("coffer_session").expect("cleared");
        assert!(cleared.starts_with("coffer_session=;") && cleared.contains("Max-Age=0"));
        assert_eq!(
            app.get("/api/v1/me", &token).await.status(),
            StatusCode::UNAUTHORIZED
        );
        let mut stale = Browser::with_session(&app, &token);
        let page = stale.get("/app/files").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.location(), "/app/signin");
        assert!(
            page.set_cookie("coffer_session")
                .is_some_and(|c| c.contains("Max-Age=0")),
            "a dead session's cookie is cleared"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_again_ends_the_session_it_replaces() {
    let app = spawn_with_admin(Topology::Embedded, &[]).await;
    let mut browser = Browser::new(&app);
    // A second tab's form, opened before the first sign-in and sent after it.
    let csrf = browser.get("/app/signin").await.csrf();
    browser.sign_in(ADMIN.0, ADMIN.1).await;
    let first = browser.cookies["coffer_session"].clone();
    let fields = [
        ("csrf", csrf.as_str()),
        ("email", ADMIN.0),
        ("password", ADMIN.1),
    ];
    let again = browser.post("/app/signin", &fields).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let second = browser.cookies["coffer_session"].clone();
    assert_ne!(first, second, "a new session");
    assert_eq!(
        app.get("/api/v1/me", &first).await.status(),
        StatusCode::UNAUTHORIZED,
        "the one it replaced is over"
    );
    assert_eq!(
        app.get("/api/v1/me", &second).await.status(),
        StatusCode::OK
    );
    assert_eq!(browser.get("/app/files").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_changed_from_the_web_app() {
    let app = spawn_with_admin(Topology::Embedded, &[]).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(ADMIN.0, ADMIN.1).await;
    let elsewhere = app
        .login(ADMIN.0, ADMIN.1)
        .await
        .json::<serde_json::Value>()
        .await
        .expect("json");
    let elsewhere = elsewhere["token"].as_str().expect("token").to_owned();
    let form = browser.get("/app/password").await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = form.csrf();
    let post = |current: &'static str, new: &'static str, again: &'static str| {
        [
            ("csrf", csrf.clone()),
            ("current_password", current.to_owned()),
            ("new_password", new.to_owned()),
            ("new_password_again", again.to_owned()),
        ]
    };
    let refused = [
        (
            post(
                "not my password at all",
                "a brand new password",
                "a brand new password",
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            post(ADMIN.1, "a brand new password", "a different new one"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post(ADMIN.1, "short", "short"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (fields, status) in refused {
        let pairs = fields.each_ref().map(|(k, v)| (*k, v.as_str()));
        let page = browser.post("/app/password", &pairs).await;
        assert_eq!(page.status, status, "{}", page.body);
        assert!(
            !page.body.contains("not my password"),
            "no password comes back"
        );
    }
    assert_eq!(
        app.get("/api/v1/me", &elsewhere).await.status(),
        StatusCode::OK
    );
    let fields = post(ADMIN.1, "a brand new password", "a brand new password");
    let pairs = fields.each_ref().map(|(k, v)| (*k, v.as_str()));
    let done = browser.post("/app/password", &pairs).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Your password is changed"));
    assert_eq!(
        app.get("/api/v1/me", &elsewhere).await.status(),
        StatusCode::UNAUTHORIZED,
        "the other session is over"
    );
    assert_eq!(
        browser.get("/app/files").await.status,
        StatusCode::OK,
        "this one goes on"
    );
    assert_eq!(
        app.login(ADMIN.0, "a brand new password").await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_is_sent_to_sign_in() {
    let app = spawn_with_admin(Topology::Embedded, &[]).await;
    let ann_email = email("ann");
    let mut ann = Browser::new(&app);
    ann.sign_up_and_in(&ann_email).await;
    let mut admin = Browser::new(&app);
    admin.sign_in(ADMIN.0, ADMIN.1).await;
    let users = admin.get("/app/admin/users").await;
    assert!(users.body.contains(&ann_email));
    let ann_id = entity::user::Entity::find()
        .all(app.core().db())
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.email == ann_email)
        .expect("ann")
        .id;
    let disabled = admin
        .post(
            &format!("/app/admin/users/{ann_id}"),
            &[("csrf", &users.csrf()), ("disabled", "true")],
        )
        .await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER, "{}", disabled.body);
    assert_eq!(disabled.location(), "/app/admin/users");
    let page = ann.get("/app/files").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/app/signin");
    // Promote needs the account enabled again; an admin cannot demote themselves.
    let admin_id = entity::user::Entity::find()
        .all(app.core().db())
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.email == ADMIN.0)
        .expect("admin")
        .id;
    let csrf = admin.csrf().await;
    let own = admin
        .post(
            &format!("/app/admin/users/{admin_id}"),
            &[("csrf", &csrf), ("role", "user")],
        )
        .await;
    assert_eq!(own.status, StatusCode::CONFLICT);
    assert!(own.body.contains("role=\"alert\""), "{}", own.body);
    app.stop().await;
}

/// Whether markup has an attribute like ` onclick=`.
fn has_inline_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(at, _)| {
        let rest = &html[at + 3..];
        let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    })
}

/// The headers every HTML page must carry, and no inline script anywhere.
fn assert_page_headers(what: &str, page: &Page) {
    let get = |name: &str| {
        page.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        get("content-type").starts_with("text/html"),
        "{what}: {}",
        get("content-type")
    );
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(get(name), value, "{what}: {name}");
    }
    let csp = get("content-security-policy");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for needed in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(directives.contains(&needed), "{what}: {csp}");
    }
    let scripts: Vec<&&str> = directives
        .iter()
        .filter(|d| d.starts_with("script-src"))
        .collect();
    assert!(
        scripts.iter().all(|d| **d == "script-src 'self'"),
        "{what}: no inline or foreign script: {csp}"
    );
    if page.body.contains("<script") {
        assert_eq!(
            scripts.len(),
            1,
            "{what}: a page with a script allows it: {csp}"
        );
        assert!(directives.contains(&"connect-src 'self'"), "{what}: {csp}");
        assert!(
            page.body
                .contains("<script src=\"/assets/upload.js\" defer></script>"),
            "{what}: only our own script file"
        );
    } else {
        assert!(
            scripts.is_empty(),
            "{what}: script allowed on a page without one: {csp}"
        );
    }
    assert!(!page.body.contains("<script>"), "{what}: inline script");
    assert!(
        !has_inline_handler(&page.body),
        "{what}: no inline event handlers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_carries_the_security_headers() {
    let app = spawn_with_admin(Topology::Embedded, &[]).await;
    let mut anonymous = Browser::new(&app);
    let (mut ann, csrf, file) = owner_with_ready_file(&app, "notes.txt", b"notes").await;
    let mut admin = Browser::new(&app);
    admin.sign_in(ADMIN.0, ADMIN.1).await;

    let mut pages = Vec::new();
    for path in ["/app/signin", "/app/signup", "/app/nothing-here"] {
        pages.push((format!("anonymous {path}"), anonymous.get(path).await));
    }
    pages.push((
        "anonymous CSRF refusal".into(),
        anonymous.post("/app/signin", &[("email", "a@b.org")]).await,
    ));
    for path in [
        "/app/files".to_owned(),
        "/app/upload".to_owned(),
        format!("/app/files/{file}"),
        format!("/app/files/{file}/delete"),
        format!("/app/files/{}", uuid::Uuid::new_v4()),
        "/app/admin/audit".to_owned(),
        "/app/no/such/page".to_owned(),
    ] {
        pages.push((format!("user {path}"), ann.get(&path).await));
    }
    pages.push((
        "user, bad form".into(),
        ann.post(
            &format!("/app/files/{file}/shares"),
            &[("csrf", &csrf), ("recipients", "not an address")],
        )
        .await,
    ));
    pages.push((
        "user, bad upload".into(),
        ann.upload(&csrf, "empty.txt", Vec::new(), &[]).await,
    ));
    for path in [
        "/app/admin/audit",
        "/app/admin/audit?action=file.uploaded",
        "/app/admin/audit?since=yesterday",
        "/app/admin/keys",
        "/app/admin/users",
        "/app/files",
    ] {
        pages.push((format!("admin {path}"), admin.get(path).await));
    }
    let admin_csrf = admin.csrf().await;
    pages.push((
        "admin verify".into(),
        admin
            .post("/app/admin/audit/verify", &[("csrf", &admin_csrf)])
            .await,
    ));
    let put = app
        .http
        .put(app.url("/app/files"))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.headers()["allow"], "GET, POST, HEAD");

    let statuses: Vec<(String, u16)> = pages
        .iter()
        .map(|(what, page)| (what.clone(), page.status.as_u16()))
        .collect();
    for (what, page) in &pages {
        assert_page_headers(what, page);
    }
    let expected = [
        200, 200, 404, 403, 200, 200, 200, 200, 404, 403, 404, 422, 422, 200, 200, 422, 200, 200,
        200, 200,
    ];
    let got: Vec<u16> = statuses.iter().map(|(_, s)| *s).collect();
    assert_eq!(got, expected, "{statuses:?}");
    // The assets: a stylesheet and one script, with their own types.
    let script = app
        .http
        .get(app.url("/assets/upload.js"))
        .send()
        .await
        .expect("script");
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(script.headers()["x-content-type-options"], "nosniff");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_cannot_reach_each_others_files_and_only_admins_the_admin_pages() {
    let app = spawn_with_admin(Topology::Embedded, &[]).await;
    let (mut ann, csrf, file) = owner_with_ready_file(&app, "secret.txt", b"ann's secret").await;
    let mut eve = Browser::new(&app);
    eve.sign_up_and_in(&email("eve")).await;
    let shared = ann
        .post(
            &format!("/app/files/{file}/shares"),
            &[("csrf", &csrf), ("recipients", "bob@example.org")],
        )
        .await;
    assert_eq!(shared.status, StatusCode::SEE_OTHER);
    let share = entity::share::Entity::find()
        .all(app.core().db())
        .await
        .expect("shares")[0]
        .id;
    let before = snapshot(&app).await;

    let eve_csrf = eve.csrf().await;
    for path in [
        format!("/app/files/{file}"),
        format!("/app/files/{file}/download"),
        format!("/app/files/{file}/delete"),
    ] {
        let page = eve.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.body.contains("secret.txt"), "{path}");
    }
    for path in [
        format!("/app/files/{file}/delete"),
        format!("/app/files/{file}/shares"),
        format!("/app/shares/{share}/revoke"),
    ] {
        let page = eve
            .post(
                &path,
                &[("csrf", &eve_csrf), ("recipients", "eve@example.org")],
            )
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.body);
    }
    assert!(!eve.get("/app/files").await.body.contains("secret.txt"));
    for path in [
        "/app/admin/audit",
        "/app/admin/audit/export?format=csv",
        "/app/admin/keys",
        "/app/admin/users",
    ] {
        let page = eve.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.body.contains("Admins only"), "{path}");
    }
    for path in ["/app/admin/keys/rotate", "/app/admin/audit/verify"] {
        let page = eve.post(path, &[("csrf", &eve_csrf)]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(snapshot(&app).await, before);
    // Signed out, every page of the app sends the browser to sign in.
    let mut anonymous = Browser::new(&app);
    for path in [
        "/",
        "/app/files",
        "/app/upload",
        &format!("/app/files/{file}"),
        "/app/admin/audit",
    ] {
        let page = anonymous.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/app/signin", "{path}");
    }
    assert_eq!(ann.get("/").await.location(), "/app/files");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_messages_render_escaped() {
    let smtp = SmtpServer::start();
    let app = spawn_with_admin(Topology::Embedded, &[("COFFER_SMTP_URL", &smtp.url)]).await;
    let mut ann = Browser::new(&app);
    ann.sign_up_and_in(&email("ann")).await;
    let csrf = ann.csrf().await;
    let hostile = "<img src=x onerror=alert(1)>.pdf";
    let quoted = "\"quotes\" & 'apostrophes'.txt";
    let script = "<script>alert(document.cookie)</script>";
    let first = file_id_of(
        ann.upload(&csrf, hostile, pdf(b"hostile"), &[])
            .await
            .location(),
    );
    let second = file_id_of(
        ann.upload(&csrf, quoted, b"quoted".to_vec(), &[])
            .await
            .location(),
    );
    wait_ready_on_page(&mut ann, &first).await;
    wait_ready_on_page(&mut ann, &second).await;
    let shared = ann
        .post(
            &format!("/app/files/{first}/shares"),
            &[
                ("csrf", &csrf),
                ("recipients", "bob@example.org"),
                ("message", script),
            ],
        )
        .await;
    assert_eq!(shared.status, StatusCode::SEE_OTHER, "{}", shared.body);
    // A form that comes back keeps what was typed, escaped.
    let refused = ann
        .upload(
            &csrf,
            "x.txt",
            b"x".to_vec(),
            &[("recipients", "<b>not an address</b>"), ("message", script)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let link = smtp.wait_for("bob@example.org", 1).await.remove(0).link();
    let landing = app
        .http
        .get(&link)
        .send()
        .await
        .expect("landing")
        .text()
        .await
        .expect("html");
    let mut admin = Browser::new(&app);
    admin.sign_in(ADMIN.0, ADMIN.1).await;
    // The audit page lists sealed events; the sealer runs every 200 ms, later on a busy machine.
    let session = admin.cookies["coffer_session"].clone();
    let audit = eventually(
        "the upload's event sealed and listed",
        Duration::from_secs(30),
        || async {
            let body = Browser::with_session(&app, &session)
                .get("/app/admin/audit")
                .await
                .body;
            if body.contains("&lt;img") {
                Ok(body)
            } else {
                Err("not listed yet".to_owned())
            }
        },
    )
    .await;

    let pages = [
        ("files", ann.get("/app/files").await.body),
        (
            "details",
            ann.get(&format!("/app/files/{first}")).await.body,
        ),
        (
            "quoted",
            ann.get(&format!("/app/files/{second}")).await.body,
        ),
        (
            "delete",
            ann.get(&format!("/app/files/{first}/delete")).await.body,
        ),
        ("refused", refused.body),
        ("landing", landing),
        ("audit", audit),
    ];
    for (what, body) in &pages {
        assert!(!body.contains("<img"), "{what}: raw markup from a name");
        assert!(
            !body.contains("<script>"),
            "{what}: raw markup from a message"
        );
        assert!(!body.contains("<b>"), "{what}");
    }
    let shown = |what: &str| &pages.iter().find(|(w, _)| *w == what).expect("page").1;
    assert!(shown("files").contains("&lt;img src=x onerror=alert(1)&gt;.pdf"));
    assert!(shown("quoted").contains("&quot;quotes&quot; &amp; &#x27;apostrophes&#x27;.txt"));
    assert!(
        shown("refused").contains("&lt;script&gt;alert(document.cookie)&lt;&#x2f;script&gt;"),
        "{}",
        shown("refused")
    );
    assert!(shown("landing").contains("&lt;script&gt;"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_form_input_comes_back_with_the_input_kept_but_never_the_password() {
    let app = spawn_with_admin(Topology::Embedded, &[]).await;
    let mut visitor = Browser::new(&app);
    let csrf = visitor.get("/app/signup").await.csrf();
    let secret = "short";
    let refused = visitor
        .post(
            "/app/signup",
            &[
                ("csrf", &csrf),
                ("email", "kept@example.org"),
                ("password", secret),
                ("password_again", secret),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("value=\"kept@example.org\""));
    assert!(refused.body.contains("role=\"alert\""));
    assert!(refused.body.contains("at least 10 characters"));
    assert!(!refused.body.contains(&format!("value=\"{secret}\"")));
    let wrong = visitor
        .post(
            "/app/signin",
            &[
                ("csrf", &csrf),
                ("email", ADMIN.0),
                ("password", "not the password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains(&format!("value=\"{}\"", ADMIN.0)));
    assert!(!wrong.body.contains("not the password"));
    assert!(wrong.set_cookie("coffer_session").is_none());

    let mut ann = Browser::new(&app);
    ann.sign_up_and_in(&email("ann")).await;
    let csrf = ann.csrf().await;
    let kept = ann
        .upload(
            &csrf,
            "report.pdf",
            pdf(b"report"),
            &[
                ("recipients", "bob@example.org, not-an-address"),
                ("max_downloads", "4"),
                ("password", "a secret password"),
                ("message", "Please sign"),
            ],
        )
        .await;
    assert_eq!(kept.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(kept.body.contains("not-an-address"), "the error names it");
    assert!(kept.body.contains("value=\"4\""));
    assert!(kept.body.contains("Please sign"));
    assert!(!kept.body.contains("a secret password"));
    // A share field without a recipient is an error, not silently dropped.
    let alone = ann
        .upload(
            &csrf,
            "report.pdf",
            pdf(b"report"),
            &[("message", "For you")],
        )
        .await;
    assert_eq!(alone.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(alone.body.contains("Add at least one recipient"));
    let none = ann
        .post_multipart(
            "/app/files",
            reqwest::multipart::Form::new()
                .text("csrf", csrf.clone())
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(Vec::new()).file_name(""),
                ),
        )
        .await;
    assert_eq!(none.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(none.body.contains("Choose a file"), "{}", none.body);
    // Nothing was kept of any of them.
    assert_eq!(
        entity::file::Entity::find()
            .count(app.core().db())
            .await
            .expect("count"),
        0
    );
    assert!(app.objects("quarantine").await.is_empty());
    // A link share: its link is shown once.
    let ok = ann.upload(&csrf, "ok.txt", b"fine".to_vec(), &[]).await;
    let id = file_id_of(ok.location());
    let link = ann
        .post(
            &format!("/app/files/{id}/shares"),
            &[
                ("csrf", &csrf),
                ("recipients", ""),
                ("expires_in_hours", "24"),
            ],
        )
        .await;
    assert_eq!(link.status, StatusCode::CREATED, "{}", link.body);
    assert!(link.body.contains("&#x2f;s&#x2f;"), "{}", link.body);
    app.stop().await;
}

// ---- the journey in a real browser -------------------------------------------------------

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (apt: chromium) and playwright-core (npm ci in tests/browser); run by .ci/run"]
async fn the_web_app_in_a_browser() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let smtp = SmtpServer::start();
    let app = spawn_with_admin(Topology::Embedded, &[("COFFER_SMTP_URL", &smtp.url)]).await;
    let artifacts = browser_dir().join("artifacts").join("webapp");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let upload = artifacts.join("Annual report 2026.pdf");
    let bytes = pdf(&pattern(1_500_000, 21));
    std::fs::write(&upload, &bytes).expect("the file to upload");
    let downloaded = artifacts.join("downloaded.pdf");

    let mut node = tokio::process::Command::new("node")
        .current_dir(browser_dir())
        .arg("webapp.mjs")
        .arg(&app.base)
        .arg(&artifacts)
        .arg(&upload)
        .arg(&downloaded)
        .arg(ADMIN.0)
        .arg(ADMIN.1)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = node.stdin.take().expect("stdin");
    let mut lines = tokio::io::BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut report = None;
    let mut printed = Vec::new();
    let run = async {
        while let Some(line) = lines.next_line().await.expect("read") {
            printed.push(line.clone());
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(owner) = message["need_verification_link_for"].as_str() {
                let mail = smtp.wait_for(owner, 1).await.remove(0);
                let text = mail.part("text/plain");
                let link = text
                    .split_whitespace()
                    .find(|w| w.contains("/app/verify-email?token="))
                    .unwrap_or_else(|| panic!("no verification link in:\n{text}"))
                    .to_owned();
                stdin
                    .write_all(format!("{link}\n").as_bytes())
                    .await
                    .expect("write the link");
                stdin.flush().await.expect("flush");
            }
            if let Some(recipient) = message["need_link_for"].as_str() {
                // The script waits for the emailed link, as a recipient would.
                let link = smtp.wait_for(recipient, 1).await.remove(0).link();
                stdin
                    .write_all(format!("{link}\n").as_bytes())
                    .await
                    .expect("write the link");
                stdin.flush().await.expect("flush");
            }
            if let Some(secret) = message["need_totp_for"].as_str() {
                // The code an authenticator app would show, from pyotp (PyPI): an
                // implementation of RFC 6238 independent of Coffer's.
                let ahead = message["ahead"].as_i64().unwrap_or(0);
                let code = crate::common::python(
                    "import pyotp, sys, time; print(pyotp.TOTP(sys.argv[1]).at(int(time.time()) + int(sys.argv[2])))",
                    &[secret, &ahead.to_string()],
                );
                stdin
                    .write_all(format!("{code}\n").as_bytes())
                    .await
                    .expect("write the code");
                stdin.flush().await.expect("flush");
            }
            if message.get("report").is_some() {
                report = Some(message["report"].clone());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser run finishes in time");
    let status = node.wait().await.expect("node ends");
    assert!(
        status.success(),
        "the browser run failed:\n{}",
        printed.join("\n")
    );
    let report = report.unwrap_or_else(|| panic!("no report:\n{}", printed.join("\n")));

    // The cancelled first try said so, and left nothing: the report once, then the two files
    // sent together; no quarantined object.
    let cancelled = report["cancelled"]
        .as_str()
        .expect("the message after cancelling");
    assert!(cancelled.starts_with("Upload cancelled"), "{cancelled}");
    let mut names: Vec<String> = entity::file::Entity::find()
        .all(app.core().db())
        .await
        .expect("files")
        .into_iter()
        .map(|f| f.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["Annual report 2026.pdf", "agenda.txt", "minutes.txt"]
    );
    assert_eq!(
        report["chosen"], "Chosen: 2 files (minutes.txt, agenda.txt)",
        "{report}"
    );
    assert!(
        report["several_notice"]
            .as_str()
            .is_some_and(|n| n.starts_with("2 files uploaded.")),
        "{report}"
    );
    // Not even a staging file of the broken-off body (object listings do not show those), once
    // the jobs have taken the two files in.
    app.quarantine_emptied("").await;
    let quarantine = app.env.data.path().join("blobs/quarantine");
    let left: Vec<_> = std::fs::read_dir(&quarantine)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // The progress bar moved: several distinct, increasing values before 100 %.
    let progress: Vec<f64> = report["progress"]
        .as_array()
        .expect("progress samples")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let below: Vec<f64> = progress
        .iter()
        .copied()
        .filter(|p| *p > 0.0 && *p < 100.0)
        .collect();
    assert!(below.len() >= 3, "the bar moved in steps: {progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    // The last sample may fall just before 100 %: the file's page replaces the form at once.
    assert!(progress.last().is_some_and(|p| *p >= 90.0), "{progress:?}");
    assert_eq!(report["csp_violations"], serde_json::json!([]), "{report}");
    assert_eq!(report["verify"], "ok", "{report}");
    assert_eq!(report["recovery_codes"], 10, "{report}");
    let secret = report["token_secret"].as_str().expect("the token's secret");
    assert!(secret.starts_with("coffer_pat_"), "{report}");
    let listed: serde_json::Value = app
        .get("/api/v1/files", secret)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["files"].as_array().map(Vec::len),
        Some(3),
        "the token made in the browser reads the owner's files: {listed}"
    );
    assert!(
        report["forgot_notice"]
            .as_str()
            .is_some_and(|n| n.contains("If an account has this address")),
        "{report}"
    );
    assert!(
        std::fs::read(&downloaded).expect("downloaded") == bytes,
        "byte-identical"
    );
    let file_id = report["file_id"].as_str().expect("file id");
    let file = entity::file::Entity::find_by_id(uuid::Uuid::parse_str(file_id).expect("uuid"))
        .one(app.core().db())
        .await
        .expect("query")
        .expect("the file");
    assert_eq!(file.status, entity::FileStatus::Ready);
    let shots = report["screenshots"].as_array().expect("screenshots");
    assert!(shots.len() >= 10, "{shots:?}");
    for shot in shots {
        let png = std::fs::read(shot.as_str().expect("path")).expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{shot}");
    }
    assert!(
        shots
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.contains("phone")))
    );
    let actions: Vec<String> = app
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    for action in [
        "user.signup",
        "user.login",
        "file.uploaded",
        "share.emailed",
        "share.download_started",
        "share.downloaded",
        "user.mfa_enrolled",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}");
    }
    app.stop().await;
}

/// An audit event's action as the log's table shows it.
fn cell(action: &str) -> String {
    format!("<td data-label=\"Action\">{action}</td>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_filter_export_and_verify_the_log_rotate_keys_and_manage_users() {
    let app = spawn_with_admin(Topology::Embedded, &[]).await;
    let (mut ann, _, file) = owner_with_ready_file(&app, "ledger.csv", b"a,b\n1,2\n").await;
    let mut admin = Browser::new(&app);
    admin.sign_in(ADMIN.0, ADMIN.1).await;

    // The log, filtered to the file: its events and nothing else.
    let browser = tokio::sync::Mutex::new(&mut admin);
    let filtered = eventually(
        "the file's events in the log",
        Duration::from_secs(30),
        || async {
            let page = browser
                .lock()
                .await
                .get(&format!(
                    "/app/admin/audit?target_id={file}&action=&since=&until="
                ))
                .await;
            assert_eq!(page.status, StatusCode::OK);
            // Events appear once sealed (a moment after they happen).
            if page.body.contains(&cell("file.encrypted")) {
                return Ok(page);
            }
            Err(page.body)
        },
    )
    .await;
    assert!(filtered.body.contains("file.uploaded") && filtered.body.contains("file.validated"));
    assert!(
        !filtered.body.contains("user.signup"),
        "other targets filtered out"
    );
    let by_action = admin.get("/app/admin/audit?action=user.signup").await;
    assert!(by_action.body.contains(&cell("user.signup")));
    assert!(!by_action.body.contains(&cell("file.uploaded")));
    let since = (chrono::Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M");
    let future = admin.get(&format!("/app/admin/audit?since={since}")).await;
    assert!(future.body.contains("No events match"), "{}", future.body);

    // Verify: the result is shown above the same filters.
    let verified = admin
        .post(
            "/app/admin/audit/verify",
            &[("csrf", &filtered.csrf()), ("target_id", &file)],
        )
        .await;
    assert_eq!(verified.status, StatusCode::OK);
    assert!(
        verified.body.contains("<dd id=\"verify-result\">ok</dd>"),
        "{}",
        verified.body
    );
    assert!(verified.body.contains(&format!("value=\"{file}\"")));

    // Exports, streamed with cookie authentication, and audited.
    let csv = admin.get("/app/admin/audit/export?format=csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(csv.body.starts_with("seq,id,occurred_at,"));
    assert!(csv.body.contains("file.uploaded"));
    let jsonl = admin.get("/app/admin/audit/export?format=jsonl").await;
    assert_eq!(jsonl.headers["content-type"], "application/x-ndjson");
    assert!(
        jsonl.headers["content-disposition"]
            .to_str()
            .is_ok_and(|d| d.starts_with("attachment; filename=\"coffer-audit-"))
    );
    let first: Value =
        serde_json::from_str(jsonl.body.lines().next().expect("a line")).expect("json");
    assert_eq!(first["seq"], 1);
    assert_eq!(
        admin.get("/app/admin/audit/export?format=xml").await.status,
        StatusCode::BAD_REQUEST
    );
    assert!(
        app.audit_actions()
            .await
            .iter()
            .filter(|(a, _, _)| a == "audit.exported")
            .count()
            >= 2
    );

    // Rotation: started from the page, its progress shown (refreshing while it runs).
    let keys = admin.get("/app/admin/keys").await;
    assert!(keys.body.contains("No rotation yet"));
    let rotated = admin
        .post("/app/admin/keys/rotate", &[("csrf", &keys.csrf())])
        .await;
    assert_eq!(rotated.status, StatusCode::SEE_OTHER, "{}", rotated.body);
    assert_eq!(rotated.location(), "/app/admin/keys");
    let browser = tokio::sync::Mutex::new(&mut admin);
    eventually(
        "the rotation finishing",
        Duration::from_secs(60),
        || async {
            let page = browser.lock().await.get("/app/admin/keys").await;
            assert!(page.body.contains("From version 1 to 2"), "{}", page.body);
            let running = page.body.contains("badge-running");
            assert_eq!(page.body.contains("http-equiv=\"refresh\""), running);
            if page.body.contains("badge-finished") {
                assert!(
                    page.body.contains("badge-retired") || page.body.contains("badge-retiring")
                );
                return Ok(());
            }
            Err(page.body)
        },
    )
    .await;

    // Users: promote an account, and it gets the admin pages.
    let users = admin.get("/app/admin/users").await;
    let ann_id = entity::user::Entity::find()
        .all(app.core().db())
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.role == entity::Role::User)
        .expect("ann")
        .id;
    assert_eq!(
        ann.get("/app/admin/users").await.status,
        StatusCode::FORBIDDEN
    );
    let promoted = admin
        .post(
            &format!("/app/admin/users/{ann_id}"),
            &[("csrf", &users.csrf()), ("role", "admin")],
        )
        .await;
    assert_eq!(promoted.status, StatusCode::SEE_OTHER, "{}", promoted.body);
    assert_eq!(ann.get("/app/admin/users").await.status, StatusCode::OK);
    let bad = admin
        .post(
            &format!("/app/admin/users/{ann_id}"),
            &[("csrf", &users.csrf()), ("role", "owner")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("The role must be user or admin."));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_cookie_is_sent_to_sign_in() {
    use sea_orm::sea_query::Expr;
    let app = TestApp::spawn(Topology::Embedded).await;
    let mut ann = Browser::new(&app);
    ann.sign_up_and_in(&email("ann")).await;
    assert_eq!(ann.get("/app/files").await.status, StatusCode::OK);
    entity::session::Entity::update_many()
        .col_expr(
            entity::session::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::minutes(1)),
        )
        .exec(app.core().db())
        .await
        .expect("expire the session");
    // As after a second has passed: the process's cache of resolved sessions asks again.
    app.core().session_cache.empty();
    let page = ann.get("/app/files").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/app/signin");
    assert!(!ann.cookies.contains_key("coffer_session"), "cleared");
    assert_eq!(ann.get("/app/signin").await.status, StatusCode::OK);
    app.stop().await;
}

/// An admin restricts sign-up and invites an address from the web app: the page shows the
/// policy and the invitation, a sign-up outside the policy is refused on the form, and the
/// invited address signs up through its emailed link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_set_who_may_sign_up_and_invite_from_the_web_app() {
    let smtp = SmtpServer::start();
    let app = spawn_with_admin(Topology::Embedded, &[("COFFER_SMTP_URL", &smtp.url)]).await;
    let mut admin = Browser::new(&app);
    admin.sign_in(ADMIN.0, ADMIN.1).await;
    let page = admin.get("/app/admin/signup").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("<strong id=\"signup-policy\">open</strong>")
    );
    let csrf = page.csrf();
    let saved = admin
        .post(
            "/app/admin/signup",
            &[
                ("csrf", &csrf),
                ("kind", "domains"),
                ("domains", "clinic.example"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let bad = admin
        .post(
            "/app/admin/signup",
            &[
                ("csrf", &csrf),
                ("kind", "domains"),
                ("domains", "not a domain"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let invited = admin
        .post(
            "/app/admin/invites",
            &[("csrf", &csrf), ("email", "guest@partner.example")],
        )
        .await;
    assert_eq!(invited.status, StatusCode::SEE_OTHER, "{}", invited.body);
    let page = admin.get("/app/admin/signup").await;
    assert!(
        page.body.contains("domains:clinic.example"),
        "{}",
        page.body
    );
    assert!(page.body.contains("guest@partner.example"));
    assert!(page.body.contains("badge-pending"));

    // Outside the domains: refused on the form, with the reason.
    let mut visitor = Browser::new(&app);
    let form = visitor.get("/app/signup").await;
    let refused = visitor
        .post(
            "/app/signup",
            &[
                ("csrf", &form.csrf()),
                ("email", "walk-in@elsewhere.example"),
                ("password", "correct horse battery staple"),
                ("password_again", "correct horse battery staple"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("email domains only"),
        "{}",
        refused.body
    );

    // The invited address, through its emailed link.
    let mail = smtp.wait_for("guest@partner.example", 1).await.remove(0);
    let text = mail.part("text/plain");
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/app/signup?invite="))
        .expect("an invitation link");
    let mut guest = Browser::new(&app);
    let form = guest.get(&link[link.find("/app/").expect("path")..]).await;
    let token = link.rsplit_once("invite=").expect("token").1;
    let created = guest
        .post(
            "/app/signup",
            &[
                ("csrf", &form.csrf()),
                ("invite", token),
                ("email", "guest@partner.example"),
                ("password", "correct horse battery staple"),
                ("password_again", "correct horse battery staple"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let page = admin.get("/app/admin/signup").await;
    assert!(page.body.contains("badge-used"), "{}", page.body);
    app.stop().await;
}
