//! Admins manage accounts: list, promote, demote, disable (which signs the account out at once)
//! and re-enable; every change is audited, and an admin cannot lock themselves out.

use crate::common::{Client, TestApp, Topology, User, problem};
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
                crate::common::percent_encode(cursor)
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

/// A disabled sender's links stop working (and work again when the account is re-enabled), and
/// the share emails still waiting to go out are cancelled for good.
async fn a_disabled_sender_s_links_stop_and_waiting_emails_are_cancelled(topology: Topology) {
    // A mail server that never answers: share emails wait, retried.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let smtp = format!("smtp://127.0.0.1:{port}");
    let settings = [
        ("COFFER_ADMIN_EMAIL", ADMIN.0),
        ("COFFER_ADMIN_PASSWORD", ADMIN.1),
        ("COFFER_SMTP_URL", smtp.as_str()),
    ];
    let app = TestApp::spawn_with(topology, &settings, coffer::Roles::ALL).await;
    let admin = app
        .login(ADMIN.0, ADMIN.1)
        .await
        .json::<Value>()
        .await
        .expect("json");
    let admin = admin["token"].as_str().expect("token").to_owned();
    let ann = app.user().await;
    let ann_id = user_id(&app, &ann).await;
    let file = app
        .upload(&ann, "notes.txt", b"for a client".to_vec())
        .await;
    assert_eq!(app.wait_until_settled(&ann, &file).await["status"], "ready");
    let shares_url = format!("/api/v1/files/{file}/shares");
    let link: Value = app
        .post_json(&shares_url, &json!({}), Some(&ann.token))
        .await
        .json()
        .await
        .expect("json");
    let url = link["shares"][0]["url"].as_str().expect("url").to_owned();
    let mailed = app
        .post_json(
            &shares_url,
            &json!({ "recipients": ["hal@example.org"] }),
            Some(&ann.token),
        )
        .await;
    assert_eq!(mailed.status(), StatusCode::CREATED);
    let status = |url: String| {
        let http = app.http.clone();
        async move { http.get(url).send().await.expect("get").status() }
    };
    assert_eq!(status(url.clone()).await, StatusCode::OK);

    let disabled = patch(&app, &admin, &ann_id, json!({ "disabled": true })).await;
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_eq!(status(url.clone()).await, StatusCode::GONE);
    assert_eq!(status(format!("{url}/download")).await, StatusCode::GONE);
    let states: Vec<(String, String)> = {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
        entity::share::Entity::find()
            .filter(entity::share::Column::FileId.eq(uuid::Uuid::parse_str(&file).expect("uuid")))
            .all(app.core().db())
            .await
            .expect("shares")
            .into_iter()
            .map(|s| (s.recipient.unwrap_or_default(), s.state.as_str().to_owned()))
            .collect()
    };
    assert!(
        states.contains(&("hal@example.org".to_owned(), "cancelled".to_owned())),
        "{states:?}"
    );

    let enabled = patch(&app, &admin, &ann_id, json!({ "disabled": false })).await;
    assert_eq!(enabled.status(), StatusCode::OK);
    assert_eq!(status(url).await, StatusCode::OK, "the link works again");
    app.stop().await;
}

async fn login_status(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> StatusCode {
    http.post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login")
        .status()
}

/// `coffer admin create`, with the password on stdin; its exit status and stderr.
fn admin_create(
    vars: &[(String, String)],
    email: &str,
    password: &str,
    promote: bool,
) -> (bool, String) {
    use std::io::Write as _;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"));
    command.args(["admin", "create", "--email", email]);
    if promote {
        command.arg("--promote");
    }
    let mut child = command
        .env("COFFER_LOG", "warn")
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("password");
    let output = child.wait_with_output().expect("exits");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Start-up's `COFFER_ADMIN_EMAIL` only ever creates the account: it never takes over an
/// account somebody signed up with, never re-enables an admin another admin disabled, and says
/// when its password is not the account's; `coffer admin create` takes over an existing account
/// only with `--promote`, which sets the password given and signs the account out everywhere.
async fn start_up_never_takes_over_an_account(topology: Topology) {
    let env = crate::common::Environment::new(topology, &[]).await;
    let logs = tempfile::tempdir().expect("dir");
    let boss = ("boss@org.example", "the operator's password 1");
    let with_admin = |email: &str, password: &str| {
        let mut vars = env.vars.clone();
        vars.push(("COFFER_ADMIN_EMAIL".into(), email.into()));
        vars.push(("COFFER_ADMIN_PASSWORD".into(), password.into()));
        vars
    };
    let http = reqwest::Client::new();

    let first = crate::common::Process::start("serve", &with_admin(boss.0, boss.1));
    let base = first.base.clone().expect("listens");
    let client = Client::new(&base);
    let attacker = client
        .sign_in("it@org.example", "the attacker's password", true)
        .await;
    let (ok, stderr) = admin_create(
        &env.vars,
        "second@org.example",
        "second admin password",
        false,
    );
    assert!(ok, "{stderr}");
    let second = client
        .sign_in("second@org.example", "second admin password", false)
        .await;
    let boss_token = client.sign_in(boss.0, boss.1, false).await;
    let me = client.get_json("/api/v1/me", Some(&boss_token)).await;
    let boss_id = me["id"].as_str().expect("id").to_owned();
    let disabled = http
        .patch(format!("{base}/api/v1/admin/users/{boss_id}"))
        .bearer_auth(&second)
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .expect("patch");
    assert_eq!(disabled.status(), StatusCode::OK);
    drop(first);

    // A restart with the same address and a changed password: the admin stays disabled, and
    // the log says why the password given does nothing.
    let log = logs.path().join("restart.log");
    let restarted = crate::common::Process::start_logging_to(
        "serve",
        &with_admin(boss.0, "a changed password 2"),
        &log,
    );
    let base = restarted.base.clone().expect("listens");
    for password in [boss.1, "a changed password 2"] {
        assert_eq!(
            login_status(&http, &base, boss.0, password).await,
            StatusCode::UNAUTHORIZED
        );
    }
    drop(restarted);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("is disabled: start-up leaves it so"),
        "{text}"
    );
    assert!(
        text.contains("COFFER_ADMIN_PASSWORD is not the password"),
        "{text}"
    );
    assert!(
        !text.contains("a changed password 2"),
        "the password is never logged: {text}"
    );

    // A start naming the self-registered address: it stays an ordinary account with its own
    // password.
    let log = logs.path().join("takeover.log");
    let operator = "the operator's password 3";
    let third = crate::common::Process::start_logging_to(
        "serve",
        &with_admin("it@org.example", operator),
        &log,
    );
    let base = third.base.clone().expect("listens");
    let client = Client::new(&base);
    assert_eq!(
        login_status(&http, &base, "it@org.example", operator).await,
        StatusCode::UNAUTHORIZED
    );
    let me = client.get_json("/api/v1/me", Some(&attacker)).await;
    assert_eq!(me["role"], "user", "{me}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("names an existing account that is not an admin"),
        "{text}"
    );

    // The command refuses an existing account without --promote; with it, the account is the
    // operator's: their password, the attacker's session ended.
    let (ok, stderr) = admin_create(&env.vars, "it@org.example", operator, false);
    assert!(!ok && stderr.contains("--promote"), "{stderr}");
    let (ok, stderr) = admin_create(&env.vars, "it@org.example", operator, true);
    assert!(ok, "{stderr}");
    assert_eq!(
        login_status(&http, &base, "it@org.example", "the attacker's password").await,
        StatusCode::UNAUTHORIZED
    );
    // The command is another process: the service learns of the ended session within the
    // second it keeps a resolved one (docs/SECURITY.md).
    crate::common::eventually(
        "the attacker's session refused",
        std::time::Duration::from_secs(5),
        || async {
            let gone = http
                .get(format!("{base}/api/v1/me"))
                .bearer_auth(&attacker)
                .send()
                .await
                .expect("me");
            match gone.status() {
                StatusCode::UNAUTHORIZED => Ok(()),
                status => Err(format!("{status}")),
            }
        },
    )
    .await;
    let token = client.sign_in("it@org.example", operator, false).await;
    let me = client.get_json("/api/v1/me", Some(&token)).await;
    assert_eq!(me["role"], "admin", "{me}");
    drop(third);
    env.cleanup().await;
}

/// An admin forces a password reset: the old password and every session stop at once, and the
/// link emailed to the account sets a new password once (through the web form here), which
/// then signs in.
async fn an_admin_forces_a_password_reset(topology: Topology) {
    let smtp = crate::common::smtp::SmtpServer::start();
    let settings = [
        ("COFFER_ADMIN_EMAIL", ADMIN.0),
        ("COFFER_ADMIN_PASSWORD", ADMIN.1),
        ("COFFER_SMTP_URL", smtp.url.as_str()),
    ];
    let app = TestApp::spawn_with(topology, &settings, coffer::Roles::ALL).await;
    let ann = app.user().await;
    let ann_id = user_id(&app, &ann).await;
    let admin: Value = app
        .login(ADMIN.0, ADMIN.1)
        .await
        .json()
        .await
        .expect("json");
    let admin = admin["token"].as_str().expect("token").to_owned();
    let reset = |id: String, token: String| {
        let app = &app;
        async move {
            app.post_json(
                &format!("/api/v1/admin/users/{id}/password-reset"),
                &json!({}),
                Some(&token),
            )
            .await
        }
    };
    problem(
        reset(ann_id.clone(), ann.token.clone()).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let admin_id = user_id(
        &app,
        &User {
            email: ADMIN.0.to_owned(),
            token: admin.clone(),
        },
    )
    .await;
    problem(reset(admin_id, admin.clone()).await, StatusCode::CONFLICT).await;

    assert_eq!(
        reset(ann_id.clone(), admin.clone()).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.get("/api/v1/me", &ann.token).await.status(),
        StatusCode::UNAUTHORIZED,
        "signed out everywhere"
    );
    assert_eq!(
        app.login(&ann.email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED,
        "the old password is gone"
    );
    // Ann's first message is the link that verified her address at sign-up.
    let mail = smtp
        .wait_for(&ann.email, 2)
        .await
        .into_iter()
        .find(|m| !m.is_address_verification())
        .expect("the reset email");
    let text = mail.part("text/plain");
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/app/password-reset?token="))
        .unwrap_or_else(|| panic!("no reset link in:\n{text}"));
    let token = link.rsplit_once("token=").expect("token").1;

    // A weak password is refused and leaves the link usable; then the web form sets one.
    problem(
        app.post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({ "token": token, "password": "short" }),
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let path = &link[link.find("/app/").expect("path")..];
    let mut browser = crate::common::web::Browser::new(&app);
    let form = browser.get(path).await;
    assert_eq!(form.status, StatusCode::OK);
    let new_password = "a brand new passphrase";
    let done = browser
        .post(
            "/app/password-reset",
            &[
                ("csrf", &form.csrf()),
                ("token", token),
                ("password", new_password),
                ("password_again", new_password),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/app/signin?reset=1");
    assert_eq!(
        app.login(&ann.email, new_password).await.status(),
        StatusCode::OK
    );
    problem(
        app.post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({ "token": token, "password": "yet another passphrase" }),
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let actions: Vec<String> = app
        .audit_actions()
        .await
        .into_iter()
        .map(|(action, _, _)| action)
        .collect();
    for action in ["user.password_reset_requested", "user.password_changed"] {
        assert!(actions.iter().any(|a| a == action), "{action}");
    }
    app.stop().await;
}

both_topologies!(
    an_admin_forces_a_password_reset,
    admins_list_change_and_disable_accounts,
    a_disabled_sender_s_links_stop_and_waiting_emails_are_cancelled,
    start_up_never_takes_over_an_account
);
