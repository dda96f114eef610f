//! Sign-up, login, the current user, logout, and the errors around them.

use std::time::Duration;

use crate::common::{TestApp, Topology, eventually, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn signup_login_me_logout(topology: Topology) {
    let app = TestApp::spawn(topology).await;

    let created = app
        .signup("Ann@Example.org", "correct horse battery staple")
        .await;
    assert_eq!(created.status(), StatusCode::ACCEPTED);

    let login = app
        .login("ann@example.org", "correct horse battery staple")
        .await;
    assert_eq!(login.status(), StatusCode::OK);
    let session: Value = login.json().await.expect("json");
    let token = session["token"].as_str().expect("token").to_owned();
    assert!(session["expires_at"].as_str().is_some());

    let me = app.get("/api/v1/me", &token).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.expect("json");
    assert_eq!(me["email"], "ann@example.org");
    assert_eq!(me["role"], "user");
    assert!(me.get("password_hash").is_none());

    let logout = app
        .post_json("/api/v1/auth/logout", &json!({}), Some(&token))
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    problem(
        app.get("/api/v1/me", &token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    let actions: Vec<String> = app
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    assert_eq!(actions, ["user.signup", "user.login", "user.logout"]);
    app.stop().await;
}

async fn signup_rejects_bad_input_and_duplicates(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    assert_eq!(
        app.signup("bob@example.org", "long enough password")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    problem(
        app.signup("not-an-email", "long enough password").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        app.signup("eve@example.org\r\nBcc: x@y.z", "long enough password")
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let short = problem(
        app.signup("carol@example.org", "short").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        short["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at least 10"))
    );

    // Malformed JSON, wrong types and unknown fields are 400s, never 500s.
    for body in [
        "{",
        "[]",
        r#"{"email": ["a@b.org"], "password": "x"}"#,
        r#"{"email":"a@b.org","password":"long enough pw","admin":true}"#,
    ] {
        let response = app
            .http
            .post(app.url("/api/v1/auth/signup"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        problem(response, StatusCode::BAD_REQUEST).await;
    }
    app.stop().await;
}

async fn login_failures_look_alike_and_are_rate_limited(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;

    let wrong = problem(
        app.login(&user.email, "wrong password!!").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let unknown = problem(
        app.login("nobody@example.org", "wrong password!!").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        wrong, unknown,
        "unknown accounts and wrong passwords must be indistinguishable"
    );

    // Ten failures per address per window; the eleventh attempt is refused before checking.
    for _ in 0..9 {
        assert_eq!(
            app.login(&user.email, "wrong password!!").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = app.login(&user.email, "correct horse battery staple").await;
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After header");
    assert!((1..=900).contains(&retry_after));
    problem(limited, StatusCode::TOO_MANY_REQUESTS).await;

    let failed = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "user.login_failed")
        .count();
    assert_eq!(failed, 11);
    app.stop().await;
}

/// Forty guesses at once, each on its own connection: exactly the ten the limit allows are
/// checked, the rest are refused before checking — and then so is the right password.
async fn the_login_limit_holds_under_a_burst(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let guesses = (0..40).map(|_| {
        let client = reqwest::Client::new(); // a connection of its own
        let url = app.url("/api/v1/auth/login");
        let body = json!({ "email": user.email, "password": "a wrong guess!!" });
        async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("login")
                .status()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (10, 30), "{statuses:?}");
    let right = app.login(&user.email, "correct horse battery staple").await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

/// A wrong password for a real account and any password for an unknown address take about as
/// long (a dummy hash is verified for unknown addresses): timing does not tell them apart.
async fn unknown_addresses_take_as_long_as_known_ones(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let mut known = Vec::new();
    for _ in 0..6 {
        known.push(app.user().await.email);
    }
    let time = |email: String| {
        let app = &app;
        async move {
            let started = std::time::Instant::now();
            let status = app.login(&email, "a wrong guess!!").await.status();
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            started.elapsed()
        }
    };
    let median = |mut v: Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut known_times = Vec::new();
    let mut unknown_times = Vec::new();
    for (i, email) in known.into_iter().enumerate() {
        known_times.push(time(email).await);
        unknown_times.push(time(format!("nobody-{i}@example.org")).await);
    }
    let (k, u) = (median(known_times), median(unknown_times));
    let ratio = u.as_secs_f64() / k.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "known {k:?} vs unknown {u:?}: the difference gives accounts away"
    );
    app.stop().await;
}

async fn bearer_tokens_are_checked(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let anonymous = app
        .http
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("request");
    let body = problem(anonymous, StatusCode::UNAUTHORIZED).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Bearer"))
    );
    for token in ["garbage", "x".repeat(43).as_str(), "Zm9v"] {
        problem(app.get("/api/v1/me", token).await, StatusCode::UNAUTHORIZED).await;
    }
    app.stop().await;
}

async fn bootstrap_admin_from_environment(topology: Topology) {
    let app = TestApp::spawn_with(
        topology,
        &[
            ("COFFER_ADMIN_EMAIL", "root@example.org"),
            ("COFFER_ADMIN_PASSWORD", "admin password 123"),
        ],
        coffer::Roles::ALL,
    )
    .await;
    let login = app.login("root@example.org", "admin password 123").await;
    assert_eq!(login.status(), StatusCode::OK);
    let token = login.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let me: Value = app
        .get("/api/v1/me", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["role"], "admin");
    app.stop().await;
}

/// Sign-up tells nobody who has an account: a taken address gets the answer a new one gets
/// (the owner is emailed instead, and their password stays); each address has a budget of
/// sign-ups taken before any hashing; sign-ups wait in a bounded line of their own (503 with
/// `Retry-After` past it) that logins overtake.
async fn sign_up_tells_nobody_who_has_an_account(topology: Topology) {
    let smtp = crate::common::smtp::SmtpServer::start();
    let app = TestApp::spawn_with(
        topology,
        &[
            ("COFFER_SMTP_URL", &smtp.url),
            ("COFFER_SIGNUPS_PER_HOUR", "1000"),
        ],
        coffer::Roles::ALL,
    )
    .await;
    let first = app.signup("dana@example.org", "dana's own password").await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.expect("json");
    let again = app
        .signup("DANA@example.org", "an attacker's password")
        .await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let again: Value = again.json().await.expect("json");
    assert_eq!(
        first, again,
        "the same answer for a new and a taken address"
    );
    // Two emails: the verification link of the new account, then the word to its owner.
    let told = smtp
        .wait_for("dana@example.org", 2)
        .await
        .into_iter()
        .find(|m| !m.part("text/plain").contains("/app/verify-email"))
        .expect("the owner is told");
    assert!(told.part("text/plain").contains("already has one"));
    assert!(
        !told.part("text/plain").contains("attacker"),
        "no password in mail"
    );
    assert_eq!(
        app.login("dana@example.org", "dana's own password")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("dana@example.org", "an attacker's password")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // 150 sign-ups at once: the line holds 16 and refuses the rest with 503 at once; a login
    // sent while they wait is answered before the sign-ups still waiting.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood: Vec<_> = (0..150)
        .map(|i| {
            let (http, url, done) = (app.http.clone(), app.url("/api/v1/auth/signup"), done.clone());
            tokio::spawn(async move {
                let answer = http
                    .post(url)
                    .json(&json!({ "email": format!("flood-{i}@example.org"), "password": "a flooding password" }))
                    .send()
                    .await
                    .expect("signup");
                let retry = answer.headers().get("retry-after").is_some();
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (answer.status(), retry)
            })
        })
        .collect();
    // Wait until the line is full (the first refusals are back), then log in.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while done.load(std::sync::atomic::Ordering::SeqCst) < 50 {
        assert!(std::time::Instant::now() < deadline, "no sign-up answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        app.login("dana@example.org", "dana's own password")
            .await
            .status(),
        StatusCode::OK
    );
    let answered_by_then = done.load(std::sync::atomic::Ordering::SeqCst);
    let mut statuses = Vec::new();
    for task in flood {
        statuses.push(task.await.expect("joined"));
    }
    let accepted = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    let busy: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(accepted + busy.len(), 150, "{statuses:?}");
    assert!(
        !busy.is_empty() && busy.iter().all(|(_, retry)| *retry),
        "{statuses:?}"
    );
    assert!(
        answered_by_then < 150 - 4,
        "the login waited behind the sign-ups ({answered_by_then} of 150 were answered first)"
    );
    app.stop().await;

    // The per-address budget is taken before anything is hashed.
    let app = TestApp::spawn_with(
        topology,
        &[("COFFER_SIGNUPS_PER_HOUR", "3")],
        coffer::Roles::ALL,
    )
    .await;
    for i in 0..3 {
        assert_eq!(
            app.signup(&format!("x{i}@example.org"), "long enough password")
                .await
                .status(),
            StatusCode::ACCEPTED
        );
    }
    let limited = app.signup("x3@example.org", "long enough password").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_some());
    app.stop().await;
}

/// A sign-in sent through a proxy at 127.0.0.1 on behalf of `client` (an `X-Forwarded-For`
/// list, as the proxy would pass it on).
async fn login_from(app: &TestApp, client: &str, email: &str, password: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", client)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login")
}

/// The audit rows of `action`: (address, details) of each, in the order they were recorded
/// (sealed or not yet).
async fn audited(app: &TestApp, action: &str) -> Vec<(Option<String>, Value)> {
    use entity::audit_event::Column;
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _};
    entity::audit_event::Entity::find()
        .filter(Column::Action.eq(action))
        .order_by_asc(Column::OccurredAt)
        .order_by_asc(Column::Id)
        .all(app.core().db())
        .await
        .expect("audit rows")
        .into_iter()
        .map(|e| (e.ip, e.details))
        .collect()
}

const PASSWORD: &str = "correct horse battery staple";

/// Behind a trusted proxy each client has its own budget and is audited under its own
/// address: nobody can lock a named user out from elsewhere.
async fn behind_a_trusted_proxy_each_client_is_itself(topology: Topology) {
    let settings = [("COFFER_TRUSTED_PROXIES", "127.0.0.1/32")];
    let app = TestApp::spawn_with(topology, &settings, coffer::Roles::ALL).await;
    let ann = app.user().await;
    let attacker = "198.51.100.1";
    for _ in 0..10 {
        let guess = login_from(&app, attacker, &ann.email, "wrong password!!").await;
        assert_eq!(guess.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = login_from(&app, attacker, &ann.email, "wrong password!!").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    // Prepending an address of one's own choosing changes nothing: the list is read from the
    // right, where the proxy put what it saw.
    let spoofed = login_from(&app, "203.0.113.7, 198.51.100.1", &ann.email, PASSWORD).await;
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
    // Ann, from her own address, is not locked out.
    let own = login_from(&app, "203.0.113.7", &ann.email, PASSWORD).await;
    assert_eq!(own.status(), StatusCode::OK);

    let failed = audited(&app, "user.login_failed").await;
    assert_eq!(failed.len(), 10);
    assert!(
        failed.iter().all(|(ip, _)| ip.as_deref() == Some(attacker)),
        "{failed:?}"
    );
    let refused = audited(&app, "user.login_rate_limited").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|(ip, _)| ip.as_deref() == Some(attacker))
    );
    app.stop().await;
}

/// Without `COFFER_TRUSTED_PROXIES` nobody's forwarding headers are read.
async fn forwarding_headers_are_ignored_unless_the_proxy_is_trusted(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let guess = login_from(&app, "198.51.100.1", &ann.email, "wrong password!!").await;
    assert_eq!(guess.status(), StatusCode::UNAUTHORIZED);
    let failed = audited(&app, "user.login_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0.as_deref(), Some("127.0.0.1"));
    app.stop().await;
}

/// Guesses spread over many addresses are paced per account (one attempt per two seconds once
/// the account has had 20 failures), never a lockout: the owner gets in within seconds. The
/// refusals are audited, counted rather than one row each.
async fn guessing_from_many_addresses_is_paced_and_the_owner_still_gets_in(topology: Topology) {
    let settings = [
        ("COFFER_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("COFFER_AUDIT_REPEAT_WINDOW", "2s"),
    ];
    let app = TestApp::spawn_with(topology, &settings, coffer::Roles::ALL).await;
    let ann = app.user().await;
    let mut paced = 0;
    for i in 0..40 {
        let guess = login_from(&app, &format!("198.51.100.{i}"), &ann.email, "wrong!!").await;
        match guess.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                let wait: u64 = guess.headers()["retry-after"]
                    .to_str()
                    .expect("text")
                    .parse()
                    .expect("seconds");
                assert!(wait <= 2, "a pace, not a lockout: {wait}");
                assert!(i >= 20, "the first 20 failures are not paced ({i})");
                paced += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert!(
        paced >= 15,
        "spread guessing is paced: {paced} of 20 refused"
    );
    eventually("the owner's sign-in", Duration::from_secs(10), || async {
        let own = login_from(&app, "203.0.113.7", &ann.email, PASSWORD).await;
        if own.status() == StatusCode::OK {
            return Ok(());
        }
        assert_eq!(own.status(), StatusCode::TOO_MANY_REQUESTS);
        Err("the owner was locked out".to_owned())
    })
    .await;
    // Each refusal is counted: the first ten one by one, the rest in one row when the window
    // closes.
    eventually("every refusal counted", Duration::from_secs(30), || async {
        let rows = audited(&app, "user.login_rate_limited").await;
        let single = rows
            .iter()
            .filter(|(_, d)| d.get("repeated").is_none())
            .count();
        let repeated: u64 = rows
            .iter()
            .filter_map(|(_, d)| d.get("repeated").and_then(Value::as_u64))
            .sum();
        assert!(single <= 10, "{single} rows of their own");
        if single as u64 + repeated >= paced {
            Ok(())
        } else {
            Err(format!("{single} + {repeated} of {paced}"))
        }
    })
    .await;
    app.stop().await;
}

/// What was typed at sign-in when it is no account's address (perhaps a password in the wrong
/// field) is never stored: the audit row keeps a keyed hash, the same for the same address.
async fn an_unknown_address_is_audited_only_as_a_keyed_hash(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    for typed in [
        "MySecretPassw0rd@oops",
        "nobody@example.org",
        " Nobody@Example.org",
        &ann.email,
    ] {
        let failed = app.login(typed, "wrong password!!").await;
        assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    }
    let rows = audited(&app, "user.login_failed").await;
    assert_eq!(rows.len(), 4);
    let text = serde_json::to_string(&rows).expect("json");
    for secret in ["MySecretPassw0rd", "nobody", "Nobody"] {
        assert!(!text.contains(secret), "{secret} was stored: {text}");
    }
    let hash = |i: usize| rows[i].1["email_hash"].as_str().map(str::to_owned);
    assert!(hash(0).is_some_and(|h| h.len() == 64), "{text}");
    assert_ne!(hash(0), hash(1));
    assert_eq!(hash(1), hash(2), "one address, one hash");
    // A known account's row names the account.
    assert_eq!(rows[3].1["email"], ann.email.as_str());
    app.stop().await;
}

/// An owner changes their password with the current one: every other session ends, this one
/// goes on, the old password stops working. A wrong current password changes nothing.
async fn changing_the_password_ends_every_other_session(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let elsewhere = app
        .login(&ann.email, PASSWORD)
        .await
        .json::<Value>()
        .await
        .expect("json");
    let elsewhere = elsewhere["token"].as_str().expect("token").to_owned();
    let change = |current: &'static str, new: &'static str| {
        let (app, token) = (&app, ann.token.clone());
        async move {
            let body = json!({ "current_password": current, "new_password": new });
            app.post_json("/api/v1/me/password", &body, Some(&token))
                .await
        }
    };
    problem(
        change("not my password at all", "a brand new password").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        change(PASSWORD, "short").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(
        app.get("/api/v1/me", &elsewhere).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login(&ann.email, PASSWORD).await.status(),
        StatusCode::OK
    );

    let changed = change(PASSWORD, "a brand new password").await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/me", &ann.token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/me", &elsewhere).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&ann.email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&ann.email, "a brand new password").await.status(),
        StatusCode::OK
    );
    let actions: Vec<String> = app.audit_actions().await.into_iter().map(|a| a.0).collect();
    let count = |name: &str| actions.iter().filter(|a| *a == name).count();
    assert_eq!(
        (
            count("user.password_change_failed"),
            count("user.password_changed")
        ),
        (1, 1)
    );
    app.stop().await;
}

/// Sessions that can no longer be used are deleted by the sweep, not kept for good.
async fn dead_sessions_are_deleted(topology: Topology) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _};
    let settings = [("COFFER_SWEEP_INTERVAL_SECS", "1")];
    let app = TestApp::spawn_with(topology, &settings, coffer::Roles::ALL).await;
    let (ann, bob, cat) = (app.user().await, app.user().await, app.user().await);
    let db = app.core().db();
    let mut ids = Vec::new();
    for user in [&ann, &bob, &cat] {
        let me: Value = app
            .get("/api/v1/me", &user.token)
            .await
            .json()
            .await
            .expect("me");
        ids.push(uuid::Uuid::parse_str(me["id"].as_str().expect("id")).expect("uuid"));
    }
    let [ann_id, bob_id, cat_id] = ids[..] else {
        unreachable!("three users")
    };
    // Bob signs out; Cat's session runs out.
    let out = app
        .post_json("/api/v1/auth/logout", &json!({}), Some(&bob.token))
        .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    entity::session::Entity::update_many()
        .col_expr(
            entity::session::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(entity::session::Column::UserId.eq(cat_id))
        .exec(db)
        .await
        .expect("expire");
    let sessions_of = |user: uuid::Uuid| {
        entity::session::Entity::find()
            .filter(entity::session::Column::UserId.eq(user))
            .count(db)
    };
    eventually(
        "the dead sessions removed",
        Duration::from_secs(30),
        || async {
            let left = (
                sessions_of(bob_id).await.expect("count"),
                sessions_of(cat_id).await.expect("count"),
            );
            if left == (0, 0) {
                Ok(())
            } else {
                Err(format!("still held: {left:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        sessions_of(ann_id).await.expect("count"),
        1,
        "a live one stays"
    );
    assert_eq!(
        app.get("/api/v1/me", &ann.token).await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

/// The verification link in the last email sent to `to`.
async fn verification_link(smtp: &crate::common::smtp::SmtpServer, to: &str, nth: usize) -> String {
    let mail = smtp.wait_for(to, nth).await.remove(nth - 1);
    let text = mail.part("text/plain");
    text.split_whitespace()
        .find(|w| w.contains("/app/verify-email?token="))
        .unwrap_or_else(|| panic!("no verification link in:\n{text}"))
        .to_owned()
}

async fn me(app: &TestApp, token: &str) -> Value {
    app.get("/api/v1/me", token)
        .await
        .json()
        .await
        .expect("json")
}

/// An address is proved before Coffer emails links in its name: until the emailed link is
/// followed (with a button on its page, which a mail scanner does not press), a share with
/// recipients is 403 while links without recipients work.
async fn an_address_is_verified_before_links_are_emailed_in_its_name(topology: Topology) {
    let smtp = crate::common::smtp::SmtpServer::start();
    let app = TestApp::spawn_with(
        topology,
        &[
            ("COFFER_SMTP_URL", &smtp.url),
            ("COFFER_SIGNUPS_PER_HOUR", "1000"),
        ],
        coffer::Roles::ALL,
    )
    .await;
    let email = "ceo@victim.example";
    assert_eq!(
        app.signup(email, PASSWORD).await.status(),
        StatusCode::ACCEPTED
    );
    let login: Value = app.login(email, PASSWORD).await.json().await.expect("json");
    let token = login["token"].as_str().expect("token").to_owned();
    assert_eq!(me(&app, &token).await["email_verified"], false);
    let user = crate::common::User {
        email: email.to_owned(),
        token: token.clone(),
    };
    let file = app.upload(&user, "memo.txt", b"a memo".to_vec()).await;
    assert_eq!(
        app.wait_until_settled(&user, &file).await["status"],
        "ready"
    );
    let shares_path = format!("/api/v1/files/{file}/shares");
    let share = |recipients: Value| {
        let (app, path, token) = (&app, &shares_path, &token);
        async move {
            app.post_json(path, &json!({ "recipients": recipients }), Some(token))
                .await
        }
    };
    let refused = problem(share(json!(["a@example.org"])).await, StatusCode::FORBIDDEN).await;
    assert!(
        refused["detail"]
            .as_str()
            .expect("detail")
            .contains("confirm your email address"),
        "{refused}"
    );
    assert_eq!(share(json!([])).await.status(), StatusCode::CREATED);

    let link = verification_link(&smtp, email, 1).await;
    // Opening the link (as a mail scanner does) verifies nothing.
    let page = app.http.get(&link).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(me(&app, &token).await["email_verified"], false);
    let raw = link.rsplit_once("token=").expect("token").1;
    let verified = app
        .post_json("/api/v1/auth/verify-email", &json!({ "token": raw }), None)
        .await;
    assert_eq!(verified.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &token).await["email_verified"], true);
    problem(
        app.post_json("/api/v1/auth/verify-email", &json!({ "token": raw }), None)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(
        share(json!(["a@example.org"])).await.status(),
        StatusCode::CREATED
    );
    problem(
        app.post_json("/api/v1/me/verify-email", &json!({}), Some(&token))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(audited(&app, "user.email_verified").await.len(), 1);

    // Through the web app, with a link sent again on request.
    let other = "erin@example.org";
    assert_eq!(
        app.signup(other, PASSWORD).await.status(),
        StatusCode::ACCEPTED
    );
    let login: Value = app.login(other, PASSWORD).await.json().await.expect("json");
    let erin = login["token"].as_str().expect("token").to_owned();
    verification_link(&smtp, other, 1).await;
    let resent = app
        .post_json("/api/v1/me/verify-email", &json!({}), Some(&erin))
        .await;
    assert_eq!(resent.status(), StatusCode::ACCEPTED);
    let link = verification_link(&smtp, other, 2).await;
    let path = link.split_once("://").expect("url").1;
    let path = &path[path.find('/').expect("path")..];
    let mut browser = crate::common::web::Browser::new(&app);
    let form = browser.get(path).await;
    let raw = link.rsplit_once("token=").expect("token").1;
    assert!(
        form.body
            .contains(&format!("name=\"token\" value=\"{raw}\"")),
        "{path}: {}",
        form.body
    );
    let done = browser
        .post(
            "/app/verify-email",
            &[("csrf", &form.csrf()), ("token", raw)],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Your address is confirmed"));
    assert_eq!(me(&app, &erin).await["email_verified"], true);
    app.stop().await;
}

const POLICY_ADMIN: (&str, &str) = ("policy-admin@example.org", "admin password 123");

async fn policy_admin(app: &TestApp) -> String {
    let login: Value = app
        .login(POLICY_ADMIN.0, POLICY_ADMIN.1)
        .await
        .json()
        .await
        .expect("json");
    login["token"].as_str().expect("token").to_owned()
}

async fn set_signup(app: &TestApp, admin: &str, policy: &str) -> reqwest::Response {
    app.http
        .patch(app.url("/api/v1/admin/settings"))
        .bearer_auth(admin)
        .json(&json!({ "signup": policy }))
        .send()
        .await
        .expect("patch")
}

async fn signup_with(app: &TestApp, email: &str, invite: Option<&str>) -> reqwest::Response {
    let mut body = json!({ "email": email, "password": PASSWORD });
    if let Some(invite) = invite {
        body["invite"] = json!(invite);
    }
    app.post_json("/api/v1/auth/signup", &body, None).await
}

/// An admin restricts sign-up to the organisation's domains, then to invitations; an
/// invitation, emailed to its address, signs up that address once, whatever the policy.
async fn sign_up_follows_the_policy_and_invitations(topology: Topology) {
    let smtp = crate::common::smtp::SmtpServer::start();
    let app = TestApp::spawn_with(
        topology,
        &[
            ("COFFER_SMTP_URL", &smtp.url),
            ("COFFER_SIGNUPS_PER_HOUR", "1000"),
            ("COFFER_ADMIN_EMAIL", POLICY_ADMIN.0),
            ("COFFER_ADMIN_PASSWORD", POLICY_ADMIN.1),
        ],
        coffer::Roles::ALL,
    )
    .await;
    let admin = policy_admin(&app).await;
    let settings = app.get("/api/v1/admin/settings", &admin).await;
    let settings: Value = settings.json().await.expect("json");
    assert_eq!(settings, json!({ "signup": "open", "signup_fixed": false }));

    let changed = set_signup(&app, &admin, "domains:Clinic.example").await;
    assert_eq!(changed.status(), StatusCode::OK);
    let changed: Value = changed.json().await.expect("json");
    assert_eq!(changed["signup"], "domains:clinic.example");
    assert_eq!(
        signup_with(&app, "ann@clinic.example", None).await.status(),
        StatusCode::ACCEPTED
    );
    let refused = problem(
        signup_with(&app, "eve@elsewhere.example", None).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .expect("detail")
            .contains("email domains only"),
        "{refused}"
    );
    // An existing account outside the domains gets the same refusal: nothing is told.
    let existing = problem(
        signup_with(&app, POLICY_ADMIN.0, None).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(existing["detail"], refused["detail"]);
    let bad = set_signup(&app, &admin, "domains:not a domain").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        set_signup(&app, &admin, "invite").await.status(),
        StatusCode::OK
    );
    let refused = problem(
        signup_with(&app, "bob@clinic.example", None).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .expect("detail")
            .contains("invitation only"),
        "{refused}"
    );

    let invited = app
        .post_json(
            "/api/v1/admin/invites",
            &json!({ "email": "Carol@Partner.example" }),
            Some(&admin),
        )
        .await;
    assert_eq!(invited.status(), StatusCode::CREATED);
    let invited: Value = invited.json().await.expect("json");
    assert_eq!(
        (&invited["email"], &invited["state"]),
        (&json!("carol@partner.example"), &json!("pending"))
    );
    let mail = smtp.wait_for("carol@partner.example", 1).await.remove(0);
    let text = mail.part("text/plain");
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/app/signup?invite="))
        .unwrap_or_else(|| panic!("no invitation link in:\n{text}"));
    let token = link.rsplit_once("invite=").expect("token").1;
    assert!(
        !invited.to_string().contains(token),
        "the token is only in the email"
    );

    // The web form carries the invitation.
    let page = app
        .http
        .get(link)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains(&format!("name=\"invite\" value=\"{token}\"")),
        "{page}"
    );
    // Another address cannot use it; its own address can, once.
    assert_eq!(
        signup_with(&app, "mallory@partner.example", Some(token))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        signup_with(&app, "carol@partner.example", Some(token))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let carol: Value = app
        .login("carol@partner.example", PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let carol = carol["token"].as_str().expect("signed in").to_owned();
    assert_eq!(
        me(&app, &carol).await["email_verified"],
        true,
        "the invitation proved the address"
    );
    assert_eq!(
        signup_with(&app, "carol@partner.example", Some(token))
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "used up"
    );
    let list: Value = app
        .get("/api/v1/admin/invites", &admin)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["invites"][0]["state"], "used", "{list}");

    for action in [
        "admin.settings_changed",
        "user.invited",
        "user.signup_refused",
    ] {
        assert!(!audited(&app, action).await.is_empty(), "{action}");
    }
    app.stop().await;
}

/// `COFFER_SIGNUP` fixes the policy: admins see it and cannot change it.
async fn a_policy_set_by_the_environment_is_fixed(topology: Topology) {
    let app = TestApp::spawn_with(
        topology,
        &[
            ("COFFER_SIGNUP", "invite"),
            ("COFFER_ADMIN_EMAIL", POLICY_ADMIN.0),
            ("COFFER_ADMIN_PASSWORD", POLICY_ADMIN.1),
        ],
        coffer::Roles::ALL,
    )
    .await;
    let admin = policy_admin(&app).await;
    let settings: Value = app
        .get("/api/v1/admin/settings", &admin)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        settings,
        json!({ "signup": "invite", "signup_fixed": true })
    );
    problem(set_signup(&app, &admin, "open").await, StatusCode::CONFLICT).await;
    problem(
        signup_with(&app, "walk-in@example.org", None).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    app.stop().await;
}

both_topologies!(
    an_address_is_verified_before_links_are_emailed_in_its_name,
    sign_up_follows_the_policy_and_invitations,
    a_policy_set_by_the_environment_is_fixed,
    dead_sessions_are_deleted,
    changing_the_password_ends_every_other_session,
    an_unknown_address_is_audited_only_as_a_keyed_hash,
    behind_a_trusted_proxy_each_client_is_itself,
    forwarding_headers_are_ignored_unless_the_proxy_is_trusted,
    guessing_from_many_addresses_is_paced_and_the_owner_still_gets_in,
    sign_up_tells_nobody_who_has_an_account,
    signup_login_me_logout,
    signup_rejects_bad_input_and_duplicates,
    login_failures_look_alike_and_are_rate_limited,
    the_login_limit_holds_under_a_burst,
    unknown_addresses_take_as_long_as_known_ones,
    bearer_tokens_are_checked,
    bootstrap_admin_from_environment,
);
