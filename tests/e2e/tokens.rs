//! Personal API tokens: made by a signed-in person, shown once, listed without their secret,
//! used like a session's token within their scopes, audited naming the token, revoked at once,
//! dead when they expire or their account is disabled or its password is reset by an admin.
//! What each scope opens, route by route, is in the authorization matrix.

use reqwest::StatusCode;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use serde_json::{Value, json};

use crate::common::{TestApp, Topology, User, problem};

const ADMIN: (&str, &str) = ("tokens-admin@example.org", "admin password 123");

async fn create(app: &TestApp, user: &User, body: Value) -> reqwest::Response {
    app.post_json("/api/v1/me/tokens", &body, Some(&user.token))
        .await
}

/// A token with `scopes`: its id and its secret.
async fn token(app: &TestApp, user: &User, scopes: &[&str]) -> (String, String) {
    let created = create(app, user, json!({ "name": "script", "scopes": scopes })).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.expect("json");
    (
        body["token"]["id"].as_str().expect("id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

async fn listed(app: &TestApp, user: &User) -> Vec<Value> {
    let list = app.get_json("/api/v1/me/tokens", Some(&user.token)).await;
    list["tokens"].as_array().expect("tokens").clone()
}

async fn revoke(app: &TestApp, user: &User, id: &str) -> reqwest::Response {
    app.http
        .delete(app.url(&format!("/api/v1/me/tokens/{id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("revoke")
}

async fn stored(app: &TestApp, id: &str) -> entity::api_token::Model {
    entity::api_token::Entity::find_by_id(uuid::Uuid::parse_str(id).expect("uuid"))
        .one(app.core().db())
        .await
        .expect("query")
        .expect("the token's row")
}

/// The whole life of a token: made (the secret once, only its hash stored), listed without its
/// secret, used for an upload and a download (audited as the account, naming the token, and no
/// `user.login` per request), its use noted in `last_used_at`, revoked (the next request is 401).
async fn a_token_is_made_used_listed_and_revoked(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let me = app.get_json("/api/v1/me", Some(&ann.token)).await;
    let ann_id = me["id"].as_str().expect("id").to_owned();

    let created = create(
        &app,
        &ann,
        json!({ "name": "nightly backup", "scopes": ["files:read", "files:write"], "expires_in_days": 7 }),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.expect("json");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    let id = body["token"]["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with("coffer_pat_"), "{secret}");
    assert_eq!(
        body["token"]["scopes"],
        json!(["files:read", "files:write"])
    );
    assert_eq!(body["token"]["state"], "active");
    assert_eq!(body["token"]["last_used_at"], Value::Null);
    let expires: chrono::DateTime<chrono::Utc> = body["token"]["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("a time");
    let days = (expires - chrono::Utc::now()).num_hours();
    assert!((7 * 24 - 1..=7 * 24).contains(&days), "{days} hours");

    let row = stored(&app, &id).await;
    assert_ne!(row.token_hash, secret.as_bytes(), "only a hash is stored");
    assert_eq!(row.token_hash.len(), 32);

    let list = listed(&app, &ann).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "nightly backup");
    assert!(
        !list[0].to_string().contains(&secret[11..]),
        "the list never shows the secret"
    );
    let created_event = app.newest_event("token.created").await;
    assert_eq!(created_event.target_id.as_deref(), Some(id.as_str()));
    assert_eq!(created_event.actor_id.as_deref(), Some(ann_id.as_str()));
    assert!(!created_event.details.to_string().contains(&secret[11..]));

    let logins_before = app
        .audit_actions()
        .await
        .iter()
        .filter(|(action, ..)| action == "user.login")
        .count();
    let with_token = User {
        email: ann.email.clone(),
        token: secret.clone(),
    };
    let file = app
        .upload(&with_token, "report.txt", b"made by a script".to_vec())
        .await;
    assert_eq!(
        app.wait_until_settled(&with_token, &file).await["status"],
        "ready"
    );
    let download = app.download(&with_token, &file).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.bytes().await.expect("body").as_ref(),
        b"made by a script"
    );
    let downloaded = app.newest_event("file.downloaded").await;
    assert_eq!(downloaded.actor_kind, "user");
    assert_eq!(downloaded.actor_id.as_deref(), Some(ann_id.as_str()));
    assert_eq!(downloaded.details["token"], json!(id), "the token is named");
    let uploaded = app.newest_event("file.uploaded").await;
    assert_eq!(uploaded.details["token"], json!(id));
    let logins_after = app
        .audit_actions()
        .await
        .iter()
        .filter(|(action, ..)| action == "user.login")
        .count();
    assert_eq!(logins_before, logins_after, "no user.login per request");
    let used = stored(&app, &id).await.last_used_at;
    assert!(used.is_some(), "its use is noted");
    let list = listed(&app, &ann).await;
    assert!(list[0]["last_used_at"].is_string(), "{}", list[0]);

    assert_eq!(
        revoke(&app, &ann, &id).await.status(),
        StatusCode::NO_CONTENT
    );
    let refused = app.get("/api/v1/files", &secret).await;
    problem(refused, StatusCode::UNAUTHORIZED).await;
    let revoked = app.newest_event("token.revoked").await;
    assert_eq!(revoked.target_id.as_deref(), Some(id.as_str()));
    let list = listed(&app, &ann).await;
    assert_eq!(list[0]["state"], "revoked");
    assert!(list[0]["revoked_at"].is_string());
    // Revoking again changes nothing; another's token is no one's to revoke.
    assert_eq!(
        revoke(&app, &ann, &id).await.status(),
        StatusCode::NO_CONTENT
    );
    let bob = app.user().await;
    let (bobs, _) = token(&app, &bob, &["files:read"]).await;
    problem(revoke(&app, &ann, &bobs).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

/// `last_used_at` is written at most once a minute: a burst of requests writes it once.
async fn last_use_is_noted_at_most_once_a_minute(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let (id, secret) = token(&app, &ann, &["files:read"]).await;
    assert_eq!(
        app.get("/api/v1/files", &secret).await.status(),
        StatusCode::OK
    );
    let first = stored(&app, &id).await.last_used_at.expect("noted");
    for _ in 0..5 {
        assert_eq!(
            app.get("/api/v1/files", &secret).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        stored(&app, &id).await.last_used_at,
        Some(first),
        "not written again within the minute"
    );
    // A use noted more than a minute ago is noted again.
    let long_ago = chrono::Utc::now() - chrono::Duration::minutes(5);
    entity::api_token::Entity::update_many()
        .col_expr(entity::api_token::Column::LastUsedAt, Expr::value(long_ago))
        .filter(entity::api_token::Column::Id.eq(uuid::Uuid::parse_str(&id).expect("uuid")))
        .exec(app.core().db())
        .await
        .expect("update");
    assert_eq!(
        app.get("/api/v1/files", &secret).await.status(),
        StatusCode::OK
    );
    let again = stored(&app, &id).await.last_used_at.expect("noted");
    assert!(again > first, "{again} after {first}");
    app.stop().await;
}

/// A token never manages its account: not other tokens, not the password, not a sign-out, not
/// the address's verification; and a browser cannot use one as its session cookie.
async fn a_token_cannot_manage_the_account(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let (id, secret) = token(&app, &ann, &["files:read", "files:write", "shares:write"]).await;
    let with_token = User {
        email: ann.email.clone(),
        token: secret.clone(),
    };
    let me = app.get("/api/v1/me", &secret).await;
    assert_eq!(me.status(), StatusCode::OK, "who it acts for is no secret");
    let made = create(
        &app,
        &with_token,
        json!({ "name": "child", "scopes": ["files:read"] }),
    )
    .await;
    let body = problem(made, StatusCode::FORBIDDEN).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("signed-in session")),
        "{body}"
    );
    problem(
        app.get("/api/v1/me/tokens", &secret).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(revoke(&app, &with_token, &id).await, StatusCode::FORBIDDEN).await;
    let change = app
        .post_json(
            "/api/v1/me/password",
            &json!({ "current_password": "correct horse battery staple", "new_password": "a new long password" }),
            Some(&secret),
        )
        .await;
    problem(change, StatusCode::FORBIDDEN).await;
    let logout = app
        .post_json("/api/v1/auth/logout", &json!({}), Some(&secret))
        .await;
    problem(logout, StatusCode::FORBIDDEN).await;
    assert_eq!(listed(&app, &ann).await[0]["state"], "active");

    let pages = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = pages
        .get(app.url("/app/files"))
        .header("cookie", format!("coffer_session={secret}"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/app/signin")
    );
    app.stop().await;
}

/// What a token request may not be: each refused with a problem that says why, and nothing
/// made.
async fn bad_token_requests_are_refused_and_make_nothing(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    for (body, status) in [
        (
            json!({ "name": "", "scopes": ["files:read"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "name": "   ", "scopes": ["files:read"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "name": "x".repeat(101), "scopes": ["files:read"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "name": "bell\u{7}", "scopes": ["files:read"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "name": "none", "scopes": [] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "name": "audit", "scopes": ["audit:read"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "name": "made up", "scopes": ["files:delete"] }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "zero", "scopes": ["files:read"], "expires_in_days": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "name": "long", "scopes": ["files:read"], "expires_in_days": 367 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({ "scopes": ["files:read"] }), StatusCode::BAD_REQUEST),
        (
            json!({ "name": "extra", "scopes": ["files:read"], "owner": "someone" }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = create(&app, &ann, body.clone()).await;
        assert_eq!(response.status(), status, "{body}");
        let problem = problem(response, status).await;
        assert!(problem["detail"].is_string(), "{body}: {problem}");
    }
    assert!(listed(&app, &ann).await.is_empty(), "nothing was made");
    // Made-up, malformed and session-shaped secrets are all just 401.
    for secret in [
        "coffer_pat_",
        "coffer_pat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "coffer_pat_../../etc/passwd",
    ] {
        problem(
            app.get("/api/v1/files", secret).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    app.stop().await;
}

/// A token stops working when it expires, while its account is disabled, and for good when an
/// admin forces a password reset (whoever took the account over may have made it).
async fn a_token_dies_with_its_expiry_its_account_or_a_forced_reset(topology: Topology) {
    let smtp = crate::common::smtp::SmtpServer::start();
    let settings = [
        ("COFFER_ADMIN_EMAIL", ADMIN.0),
        ("COFFER_ADMIN_PASSWORD", ADMIN.1),
        ("COFFER_SMTP_URL", smtp.url.as_str()),
    ];
    let app = TestApp::spawn_with(topology, &settings, coffer::Roles::ALL).await;
    let admin = app.sign_in(ADMIN.0, ADMIN.1, false).await;
    let ann = app.user().await;
    let ann_id = app.get_json("/api/v1/me", Some(&ann.token)).await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let (expiring, expiring_secret) = token(&app, &ann, &["files:read"]).await;
    entity::api_token::Entity::update_many()
        .col_expr(
            entity::api_token::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(entity::api_token::Column::Id.eq(uuid::Uuid::parse_str(&expiring).expect("uuid")))
        .exec(app.core().db())
        .await
        .expect("update");
    problem(
        app.get("/api/v1/files", &expiring_secret).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let list = listed(&app, &ann).await;
    assert_eq!(list[0]["state"], "expired");

    let (_, secret) = token(&app, &ann, &["files:read"]).await;
    let set_disabled = |disabled: bool| {
        app.http
            .patch(app.url(&format!("/api/v1/admin/users/{ann_id}")))
            .bearer_auth(&admin)
            .json(&json!({ "disabled": disabled }))
            .send()
    };
    assert_eq!(
        set_disabled(true).await.expect("patch").status(),
        StatusCode::OK
    );
    problem(
        app.get("/api/v1/files", &secret).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        set_disabled(false).await.expect("patch").status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/files", &secret).await.status(),
        StatusCode::OK,
        "a token lives on while its account is enabled again"
    );

    let reset = app
        .post_json(
            &format!("/api/v1/admin/users/{ann_id}/password-reset"),
            &json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(reset.status(), StatusCode::ACCEPTED);
    problem(
        app.get("/api/v1/files", &secret).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let requested = app.newest_event("user.password_reset_requested").await;
    assert_eq!(
        requested.details["tokens_revoked"],
        json!(1),
        "{:?}",
        requested.details
    );
    app.stop().await;
}

both_topologies!(
    a_token_is_made_used_listed_and_revoked,
    last_use_is_noted_at_most_once_a_minute,
    a_token_cannot_manage_the_account,
    bad_token_requests_are_refused_and_make_nothing,
    a_token_dies_with_its_expiry_its_account_or_a_forced_reset,
);
