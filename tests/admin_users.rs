//! Admins manage accounts: list, promote, demote, disable (which signs the account out at once)
//! and re-enable; every change is audited, and an admin cannot lock themselves out.

mod common;

use common::{TestApp, Topology, User, problem};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("accounts-admin@example.org", "admin password 123");
const PASSWORD: &str = "correct horse battery staple";

async fn patch(app: &TestApp, token: &str, id: &str, body: Value) -> Response {
    app.http
        .patch(app.url(&format!("/api/v1/admin/users/{id}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("patch")
}

async fn user_id(app: &TestApp, user: &User) -> String {
    let me: Value = app
        .get("/api/v1/me", &user.token)
        .await
        .json()
        .await
        .expect("json");
    me["id"].as_str().expect("id").to_owned()
}

async fn admins_list_change_and_disable_accounts(topology: Topology) {
    let settings = [
        ("COFFER_ADMIN_EMAIL", ADMIN.0),
        ("COFFER_ADMIN_PASSWORD", ADMIN.1),
    ];
    let app = TestApp::spawn_with(topology, &settings, coffer::Roles::ALL).await;
    let alice = app.user().await;
    let admin: Value = app
        .login(ADMIN.0, ADMIN.1)
        .await
        .json()
        .await
        .expect("json");
    let admin = admin["token"].as_str().expect("token").to_owned();
    let alice_id = user_id(&app, &alice).await;

    // The list, in email order, one page at a time; never a password hash.
    let page: Value = app
        .get("/api/v1/admin/users?limit=1", &admin)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["users"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["users"][0]["email"], ADMIN.0);
    assert!(page["users"][0].get("password_hash").is_none());
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let rest: Value = app
        .get(
            &format!(
                "/api/v1/admin/users?cursor={}",
                common::percent_encode(cursor)
            ),
            &admin,
        )
        .await
        .json()
        .await
        .expect("json");
    let emails: Vec<&str> = rest["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(emails, vec![alice.email.as_str()]);
    assert!(rest["next_cursor"].is_null());

    // Promote: alice can reach admin routes.
    let promoted = patch(&app, &admin, &alice_id, json!({ "role": "admin" })).await;
    assert_eq!(promoted.status(), StatusCode::OK);
    assert_eq!(
        promoted.json::<Value>().await.expect("json")["role"],
        "admin"
    );
    let keys = app.get("/api/v1/admin/keys", &alice.token).await;
    assert_eq!(keys.status(), StatusCode::OK);
    let demoted = patch(&app, &admin, &alice_id, json!({ "role": "user" })).await;
    assert_eq!(demoted.status(), StatusCode::OK);
    let keys = app.get("/api/v1/admin/keys", &alice.token).await;
    assert_eq!(keys.status(), StatusCode::FORBIDDEN);

    // Disable: her session ends at once and she cannot sign in; re-enable: she can again.
    let disabled = patch(&app, &admin, &alice_id, json!({ "disabled": true })).await;
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_eq!(
        disabled.json::<Value>().await.expect("json")["disabled"],
        true
    );
    let me = app.get("/api/v1/me", &alice.token).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    let login = app.login(&alice.email, PASSWORD).await;
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
    let enabled = patch(&app, &admin, &alice_id, json!({ "disabled": false })).await;
    assert_eq!(enabled.status(), StatusCode::OK);
    assert_eq!(
        app.login(&alice.email, PASSWORD).await.status(),
        StatusCode::OK
    );

    // No self-lockout; clear errors for bad input; nothing changes on a refusal.
    let admin_id = page["users"][0]["id"].as_str().expect("id").to_owned();
    for body in [json!({ "role": "user" }), json!({ "disabled": true })] {
        problem(
            patch(&app, &admin, &admin_id, body).await,
            StatusCode::CONFLICT,
        )
        .await;
    }
    problem(
        patch(&app, &admin, &alice_id, json!({ "role": "root" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        patch(&app, &admin, &alice_id, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        patch(
            &app,
            &admin,
            &alice_id,
            json!({ "disabled": true, "is_god": 1 }),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let unknown = uuid::Uuid::new_v4().to_string();
    problem(
        patch(&app, &admin, &unknown, json!({ "disabled": true })).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        app.get("/api/v1/me", &admin).await.status(),
        StatusCode::OK,
        "the admin is still signed in and still an admin"
    );
    let me = app.login(&alice.email, PASSWORD).await;
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "the refused changes left alice alone"
    );

    // Each change is audited with who made it and what it was before.
    let changes: Vec<_> = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|(action, target, _)| {
            action == "admin.user_changed" && target.as_deref() == Some(alice_id.as_str())
        })
        .collect();
    assert_eq!(changes.len(), 4, "{changes:?}");
    app.stop().await;
}

both_topologies!(admins_list_change_and_disable_accounts);
