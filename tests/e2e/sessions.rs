//! Sessions and the password's life: a person sees where they are signed in and ends one
//! session or all of them; a session unused for `COFFER_SESSION_IDLE_MINUTES` ends by itself;
//! a forgotten password is reset through a short-lived, single-use emailed link, with the same
//! answer whether or not the address has an account.

use reqwest::StatusCode;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use serde_json::{Value, json};

use crate::common::{TestApp, Topology, eventually, problem};

const PASSWORD: &str = "correct horse battery staple";

/// Signs in as `email` from a client naming itself `agent`; the session's token.
async fn sign_in_as(app: &TestApp, email: &str, agent: &str) -> String {
    let login = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", agent)
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let body: Value = login.json().await.expect("json");
    body["token"].as_str().expect("token").to_owned()
}

async fn sessions_of(app: &TestApp, token: &str) -> Vec<Value> {
    let list = app.get_json("/api/v1/me/sessions", Some(token)).await;
    list["sessions"].as_array().expect("sessions").clone()
}

async fn delete(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.http
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("delete")
}

async fn ask(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/password-reset",
        &json!({ "email": email }),
        None,
    )
    .await
}

async fn confirm(app: &TestApp, password: &str, token: String) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/password-reset/confirm",
        &json!({ "token": token, "password": password }),
        None,
    )
    .await
}

/// The list shows each live session with where it came from, this one marked; ending one stops
/// its token at once and leaves the others; "sign out everywhere" ends them all, this one too.
async fn sessions_are_listed_and_ended_one_or_all(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let laptop = sign_in_as(&app, &ann.email, "Laptop browser").await;
    let phone = sign_in_as(&app, &ann.email, "Phone browser").await;

    let listed = sessions_of(&app, &laptop).await;
    assert_eq!(
        listed.len(),
        3,
        "the sign-up's session, the laptop's, the phone's"
    );
    let current: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "Laptop browser");
    assert_eq!(current[0]["ip"], "127.0.0.1");
    let phone_id = listed
        .iter()
        .find(|s| s["user_agent"] == "Phone browser")
        .expect("the phone's session")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        !listed.iter().any(|s| s.to_string().contains(&phone)),
        "no token in the list"
    );

    let ended = delete(&app, &format!("/api/v1/me/sessions/{phone_id}"), &laptop).await;
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    problem(
        app.get("/api/v1/me", &phone).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        app.get("/api/v1/me", &laptop).await.status(),
        StatusCode::OK
    );
    assert_eq!(sessions_of(&app, &laptop).await.len(), 2);
    let logout = app.newest_event("user.logout").await;
    assert_eq!(logout.details["session"], json!(phone_id));
    // Gone already, or someone else's: not found, and nothing ends.
    problem(
        delete(&app, &format!("/api/v1/me/sessions/{phone_id}"), &laptop).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let bob = app.user().await;
    let bobs = sessions_of(&app, &bob.token).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    problem(
        delete(&app, &format!("/api/v1/me/sessions/{bobs}"), &laptop).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        app.get("/api/v1/me", &bob.token).await.status(),
        StatusCode::OK
    );

    let everywhere = delete(&app, "/api/v1/me/sessions", &laptop).await;
    assert_eq!(everywhere.status(), StatusCode::NO_CONTENT);
    for token in [&laptop, &ann.token] {
        problem(app.get("/api/v1/me", token).await, StatusCode::UNAUTHORIZED).await;
    }
    let logout = app.newest_event("user.logout").await;
    assert_eq!(logout.details["everywhere"], json!(true));
    assert_eq!(logout.details["sessions_ended"], json!(2));
    assert_eq!(
        app.get("/api/v1/me", &bob.token).await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

/// Sets when `token`'s session was last used.
async fn last_seen(app: &TestApp, token: &str, minutes_ago: i64) {
    let hash = coffer::coffer_core::types::Token::parse(token)
        .expect("a session token")
        .hash();
    entity::session::Entity::update_many()
        .col_expr(
            entity::session::Column::LastSeenAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)),
        )
        .filter(entity::session::Column::TokenHash.eq(hash))
        .exec(app.core().db())
        .await
        .expect("update");
    // As after a second has passed: the process's cache of resolved sessions asks again.
    app.core().session_cache.empty();
}

/// With `COFFER_SESSION_IDLE_MINUTES=5`: a session last used six minutes ago is refused (and
/// the sweep deletes it); one used four minutes ago works, and its use is noted again.
async fn an_idle_session_ends(topology: Topology) {
    let app = TestApp::spawn_with(
        topology,
        &[("COFFER_SESSION_IDLE_MINUTES", "5")],
        coffer::Roles::ALL,
    )
    .await;
    let ann = app.user().await;
    let idle = sign_in_as(&app, &ann.email, "left open").await;
    let busy = sign_in_as(&app, &ann.email, "in use").await;
    last_seen(&app, &idle, 6).await;
    last_seen(&app, &busy, 4).await;
    problem(app.get("/api/v1/me", &idle).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.get("/api/v1/me", &busy).await.status(), StatusCode::OK);
    let listed = sessions_of(&app, &busy).await;
    assert!(
        !listed.iter().any(|s| s["user_agent"] == "left open"),
        "the idle session is not listed: {listed:?}"
    );
    let mine = listed
        .iter()
        .find(|s| s["current"] == true)
        .expect("this session");
    let seen: chrono::DateTime<chrono::Utc> = mine["last_seen_at"]
        .as_str()
        .expect("time")
        .parse()
        .expect("a time");
    assert!(
        chrono::Utc::now() - seen < chrono::Duration::minutes(1),
        "its use was noted: {seen}"
    );
    let ends: chrono::DateTime<chrono::Utc> = mine["ends_at"]
        .as_str()
        .expect("time")
        .parse()
        .expect("a time");
    assert_eq!((ends - seen).num_minutes(), 5);

    let before = entity::session::Entity::find()
        .all(app.core().db())
        .await
        .expect("sessions")
        .len();
    let removed = coffer::coffer_core::services::users::remove_dead_sessions(app.core())
        .await
        .expect("sweep");
    assert_eq!(removed, 1, "the idle one");
    let after = entity::session::Entity::find()
        .all(app.core().db())
        .await
        .expect("sessions")
        .len();
    assert_eq!(after, before - 1);
    app.stop().await;
}

/// A forgotten password: the same answer for an address with an account and one without; only
/// the account's address gets a link; the password is unchanged until the link is followed;
/// following it sets the new one once and ends every session; asking too often from one client
/// address is 429.
async fn a_forgotten_password_is_reset_by_an_emailed_link(topology: Topology) {
    let smtp = crate::common::smtp::SmtpServer::start();
    let app = TestApp::spawn_with(
        topology,
        &[("COFFER_SMTP_URL", smtp.url.as_str())],
        coffer::Roles::ALL,
    )
    .await;
    let ann = app.user().await;
    let known = ask(&app, &ann.email).await;
    assert_eq!(known.status(), StatusCode::ACCEPTED);
    let known: Value = known.json().await.expect("json");
    let nobody = "nobody-here@example.org";
    let unknown = ask(&app, nobody).await;
    assert_eq!(unknown.status(), StatusCode::ACCEPTED);
    let unknown: Value = unknown.json().await.expect("json");
    assert_eq!(known, unknown, "the same answer either way");

    let mail = smtp
        .wait_for(&ann.email, 2)
        .await
        .into_iter()
        .find(|m| !m.is_address_verification())
        .expect("the reset email");
    assert!(
        mail.header("Subject")
            .contains("Reset your Coffer password")
    );
    let text = mail.part("text/plain");
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/app/password-reset?token="))
        .unwrap_or_else(|| panic!("no reset link in:\n{text}"));
    let token = link.rsplit_once("token=").expect("token").1.to_owned();
    // The unknown address was looked up (its refusal is audited, as a keyed hash of what was
    // typed) and sent nothing.
    let refused = eventually(
        "the unknown address's request is audited",
        std::time::Duration::from_secs(10),
        || async {
            entity::audit_event::Entity::find()
                .filter(entity::audit_event::Column::Action.eq("user.password_reset_requested"))
                .filter(entity::audit_event::Column::Outcome.eq("denied"))
                .one(app.core().db())
                .await
                .expect("query")
                .ok_or_else(|| "not yet".to_owned())
        },
    )
    .await;
    assert_eq!(
        refused.details["reason"], "unknown email",
        "{:?}",
        refused.details
    );
    assert!(
        !refused.details.to_string().contains(nobody),
        "only a keyed hash of the address"
    );
    assert!(
        smtp.all_mails()
            .iter()
            .all(|m| !m.to.iter().any(|to| to.contains(nobody))),
        "no mail to an address without an account"
    );

    // Nothing changed yet: the old password and the session still work.
    assert_eq!(
        app.login(&ann.email, PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/me", &ann.token).await.status(),
        StatusCode::OK
    );

    let new_password = "a brand new passphrase";
    assert_eq!(
        confirm(&app, new_password, token.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    problem(
        app.get("/api/v1/me", &ann.token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        app.login(&ann.email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&ann.email, new_password).await.status(),
        StatusCode::OK
    );
    problem(
        confirm(&app, new_password, token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // A malformed address is refused as such (it can have no account).
    problem(
        ask(&app, "not an address").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let mut limited = None;
    for _ in 0..25 {
        let answer = ask(&app, nobody).await;
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
    }
    let limited = limited.expect("a client address is limited");
    assert!(limited.headers().contains_key("retry-after"));
    app.stop().await;
}

/// A resolved session is kept for a second (`core/src/session_cache.rs`): signing out ends it at
/// once in the process that signed out, and in another API instance within that second.
async fn a_session_ended_elsewhere_stops_within_a_second(topology: Topology) {
    let mut app = TestApp::spawn(topology).await;
    let other = crate::common::Client::new(app.start_second_api().await);
    let ann = app.user().await;
    // Both instances have resolved Ann's session just now.
    assert_eq!(
        app.get("/api/v1/me", &ann.token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        other.get("/api/v1/me", &ann.token).await.status(),
        StatusCode::OK
    );

    let out = app
        .post_json("/api/v1/auth/logout", &json!({}), Some(&ann.token))
        .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let ended = std::time::Instant::now();
    // Here: at once.
    problem(
        app.get("/api/v1/me", &ann.token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // There: within the second its cache keeps an entry.
    eventually(
        "the other instance refuses the ended session",
        std::time::Duration::from_secs(5),
        || async {
            match other.get("/api/v1/me", &ann.token).await.status() {
                StatusCode::UNAUTHORIZED => Ok(()),
                status => Err(format!("{status}")),
            }
        },
    )
    .await;
    assert!(
        ended.elapsed() < coffer::coffer_core::session_cache::FRESH_FOR * 3,
        "{:?}",
        ended.elapsed()
    );
    app.stop().await;
}

both_topologies!(
    sessions_are_listed_and_ended_one_or_all,
    an_idle_session_ends,
    a_forgotten_password_is_reset_by_an_emailed_link,
    a_session_ended_elsewhere_stops_within_a_second,
);
