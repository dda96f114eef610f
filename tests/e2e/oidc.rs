//! Single sign-on with a real OpenID provider (`oidc-provider` from npm, started per test by
//! `common::oidc`), driven through its real redirects, sign-in and consent pages: a good
//! sign-in, accounts made just in time and linked by `sub`, wrong or spent `state`, another
//! browser's answer, a replayed code, ID tokens forged by the harness (another key, altered
//! claims), an unknown `sub` without just-in-time accounts, roles from the groups claim, the
//! provider's key rotation, local passwords turned off, and sign-out at the provider.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::oidc::{Browser, Provider, location, query_param, with_param};
use crate::common::{TestApp, Topology, problem};

/// Both topologies; every test needs Node.js and `npm ci` in tests/oidc.
macro_rules! oidc_tests {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs Node.js and the OpenID provider (npm ci in tests/oidc); run by .ci/run"]
                async fn $name() {
                    super::$name($crate::common::Topology::Embedded).await;
                }
            )*
        }
        mod production {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs Node.js and the OpenID provider (npm ci in tests/oidc), PostgreSQL, Redis and an S3 server; run by .ci/run"]
                async fn $name() {
                    super::$name($crate::common::Topology::Production).await;
                }
            )*
        }
    };
}

const ADMIN: (&str, &str) = ("sso-admin@example.org", "admin password 123");
/// Accounts made on first sign-in, admins those in the provider's `coffer-admins` group.
const ROLES_FROM_GROUPS: &[(&str, &str)] = &[
    ("COFFER_OIDC_JIT", "true"),
    ("COFFER_OIDC_ROLE_CLAIM", "groups"),
    ("COFFER_OIDC_ADMIN_GROUP", "coffer-admins"),
];

/// A provider, and Coffer pointed at it with `extra` settings too.
async fn setup(topology: Topology, extra: &[(&str, &str)]) -> (Provider, TestApp) {
    let provider = Provider::start();
    let mut vars: Vec<(&str, String)> = provider.vars();
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn_with(topology, &vars, coffer::Roles::ALL).await;
    provider.register(&app.base).await;
    (provider, app)
}

async fn token_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    body["token"].as_str().expect("token").to_owned()
}

async fn me(app: &TestApp, token: &str) -> Value {
    app.get_json("/api/v1/me", Some(token)).await
}

async fn users_with(app: &TestApp, email: &str) -> usize {
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    entity::user::Entity::find()
        .filter(entity::user::Column::Email.eq(email))
        .all(app.core().db())
        .await
        .expect("users")
        .len()
}

async fn a_person_signs_in_and_is_known_by_sub_not_address(topology: Topology) {
    let (provider, app) = setup(topology, &[("COFFER_OIDC_JIT", "true")]).await;
    provider.account("ann-sub", "ann@example.org", &[]).await;
    let browser = Browser::new();
    let token = token_of(browser.sign_in(&app.base, "ann-sub").await).await;
    let first = me(&app, &token).await;
    assert_eq!(first["email"], "ann@example.org");
    assert_eq!(first["role"], "user");
    let login = app.newest_event("user.login").await;
    assert_eq!(login.details["method"], "oidc", "{:?}", login.details);
    let signup = app.newest_event("user.signup").await;
    assert_eq!(signup.details["via"], "oidc");
    let linked = app.newest_event("user.oidc_linked").await;
    assert_eq!(linked.details["subject"], "ann-sub");
    assert_eq!(linked.details["issuer"], provider.issuer.as_str());

    // The provider's address changes: the same account, found by `sub`.
    provider
        .account("ann-sub", "ann.renamed@example.org", &[])
        .await;
    let again = token_of(Browser::new().sign_in(&app.base, "ann-sub").await).await;
    assert_eq!(me(&app, &again).await["id"], first["id"]);
    assert_eq!(users_with(&app, "ann.renamed@example.org").await, 0);

    // Another provider account with Ann's address is not Ann.
    provider
        .account("mallory-sub", "ann@example.org", &[])
        .await;
    let taken = Browser::new().sign_in(&app.base, "mallory-sub").await;
    let body = problem(taken, StatusCode::CONFLICT).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("never joined by address"),
        "{body}"
    );
    let failed = app.newest_event("user.login_failed").await;
    assert_eq!(failed.details["method"], "oidc");
    assert_eq!(failed.details["reason"], "address-taken");
    app.stop().await;
}

async fn state_must_be_this_browsers_live_sign_in(topology: Topology) {
    let (provider, app) = setup(topology, &[("COFFER_OIDC_JIT", "true")]).await;
    provider.account("bo-sub", "bo@example.org", &[]).await;
    let browser = Browser::new();
    let callback = browser
        .to_callback(&app.base, "answer=json", "bo-sub")
        .await;
    let state = query_param(&callback, "state").expect("state");

    // A wrong state (403), and no state (a malformed answer: 400): refused, and the sign-in
    // still waits.
    let wrong = with_param(&callback, "state", &"A".repeat(43));
    problem(browser.get(&wrong).await, StatusCode::FORBIDDEN).await;
    let stripped = callback.replace(&format!("state={state}"), "");
    problem(browser.get(&stripped).await, StatusCode::BAD_REQUEST).await;

    // Another browser with the whole answer (a link someone was sent): refused, unspent.
    let other = Browser::new();
    problem(other.get(&callback).await, StatusCode::FORBIDDEN).await;

    // This browser: signed in, once.
    token_of(browser.get(&callback).await).await;
    let replay = problem(browser.get(&callback).await, StatusCode::FORBIDDEN).await;
    assert!(
        replay["detail"].as_str().unwrap().contains("expired"),
        "{replay}"
    );
    app.stop().await;
}

async fn a_replayed_code_is_refused(topology: Topology) {
    let (provider, app) = setup(topology, &[("COFFER_OIDC_JIT", "true")]).await;
    provider.account("cy-sub", "cy@example.org", &[]).await;
    let browser = Browser::new();
    let first = browser
        .to_callback(&app.base, "answer=json", "cy-sub")
        .await;
    let used_code = query_param(&first, "code").expect("code");
    token_of(browser.get(&first).await).await;

    // A new sign-in of this browser, answered with the code already used.
    let second = browser
        .to_callback(&app.base, "answer=json", "cy-sub")
        .await;
    let replayed = with_param(&second, "code", &used_code);
    let body = problem(browser.get(&replayed).await, StatusCode::FORBIDDEN).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("could not be verified"),
        "{body}"
    );
    let failed = app.newest_event("user.login_failed").await;
    assert!(
        failed.details["reason"]
            .as_str()
            .unwrap()
            .contains("refused the code"),
        "{:?}",
        failed.details
    );
    app.stop().await;
}

async fn forged_id_tokens_are_refused(topology: Topology) {
    let (provider, app) = setup(topology, &[("COFFER_OIDC_JIT", "true")]).await;
    provider.account("di-sub", "di@example.org", &[]).await;
    for (forgery, reason) in [
        ("other-key", "Signature"),
        ("other-key-same-kid", "Signature"),
        ("expired", "Expired"),
        ("nonce", "nonce"),
        ("audience", "audience"),
        ("issuer", "issuer"),
    ] {
        provider.forge(forgery).await;
        let answer = Browser::new().sign_in(&app.base, "di-sub").await;
        problem(answer, StatusCode::FORBIDDEN).await;
        let failed = app.newest_event("user.login_failed").await;
        let why = failed.details["reason"].as_str().unwrap().to_owned();
        assert!(
            why.to_lowercase().contains(&reason.to_lowercase()),
            "{forgery}: {why}"
        );
    }
    assert_eq!(
        users_with(&app, "di@example.org").await,
        0,
        "no forgery made an account"
    );
    // The genuine token still works.
    token_of(Browser::new().sign_in(&app.base, "di-sub").await).await;
    app.stop().await;
}

async fn an_unknown_sub_is_refused_without_just_in_time_accounts(topology: Topology) {
    let (provider, app) = setup(topology, &[]).await;
    provider
        .account("stranger-sub", "stranger@example.org", &[])
        .await;
    let answer = Browser::new().sign_in(&app.base, "stranger-sub").await;
    let body = problem(answer, StatusCode::FORBIDDEN).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("does not make accounts"),
        "{body}"
    );
    assert_eq!(users_with(&app, "stranger@example.org").await, 0);
    let failed = app.newest_event("user.login_failed").await;
    assert_eq!(failed.details["reason"], "unknown-account");

    // A browser is sent back to the sign-in page, which says why.
    let browser = Browser::new();
    let callback = browser.to_callback(&app.base, "", "stranger-sub").await;
    let back = browser.get(&callback).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let to = location(&back, &callback);
    assert!(to.ends_with("/app/signin?sso=unknown-account"), "{to}");
    let page = browser.get(&to).await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("ask an admin for access")
    );
    app.stop().await;
}

async fn roles_follow_the_groups_claim(topology: Topology) {
    let (provider, app) = setup(topology, ROLES_FROM_GROUPS).await;
    provider
        .account("eve-sub", "eve@example.org", &["staff", "coffer-admins"])
        .await;
    let token = token_of(Browser::new().sign_in(&app.base, "eve-sub").await).await;
    assert_eq!(me(&app, &token).await["role"], "admin");
    assert_eq!(
        app.get("/api/v1/admin/users", &token).await.status(),
        StatusCode::OK
    );

    // Out of the group at the provider: a user from the next sign-in on.
    provider
        .account("eve-sub", "eve@example.org", &["staff"])
        .await;
    let token = token_of(Browser::new().sign_in(&app.base, "eve-sub").await).await;
    assert_eq!(me(&app, &token).await["role"], "user");
    problem(
        app.get("/api/v1/admin/users", &token).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let changed = app.newest_event("admin.user_changed").await;
    assert_eq!(changed.details["role"], "user");
    assert_eq!(changed.details["was"]["role"], "admin");
    app.stop().await;
}

/// A provider that keeps the address and the groups out of the ID token (they come from its
/// userinfo endpoint, for the same `sub`): the account and its role are made from those.
async fn claims_missing_from_the_id_token_come_from_userinfo(topology: Topology) {
    let (provider, app) = setup(topology, ROLES_FROM_GROUPS).await;
    provider.claims_from_userinfo_only().await;
    provider
        .account("lu-sub", "lu@example.org", &["coffer-admins"])
        .await;
    let token = token_of(Browser::new().sign_in(&app.base, "lu-sub").await).await;
    let account = me(&app, &token).await;
    assert_eq!(account["email"], "lu@example.org");
    assert_eq!(account["role"], "admin");
    app.stop().await;
}

async fn the_providers_new_signing_key_is_fetched_without_a_restart(topology: Topology) {
    let (provider, app) = setup(topology, &[("COFFER_OIDC_JIT", "true")]).await;
    provider.account("fay-sub", "fay@example.org", &[]).await;
    // Coffer has the provider's keys now.
    token_of(Browser::new().sign_in(&app.base, "fay-sub").await).await;
    provider.rotate_key().await;
    // An ID token signed by a key Coffer has not seen: its keys are fetched again.
    token_of(Browser::new().sign_in(&app.base, "fay-sub").await).await;
    app.stop().await;
}

async fn local_passwords_can_be_off_but_for_the_break_glass_admin(topology: Topology) {
    let (provider, app) = setup(
        topology,
        &[
            ("COFFER_OIDC_JIT", "true"),
            ("COFFER_LOCAL_LOGIN", "false"),
            ("COFFER_ADMIN_EMAIL", ADMIN.0),
            ("COFFER_ADMIN_PASSWORD", ADMIN.1),
        ],
    )
    .await;
    // The break-glass admin (COFFER_ADMIN_EMAIL unless COFFER_BREAK_GLASS_ADMIN says) keeps
    // a password.
    token_of(app.login(ADMIN.0, ADMIN.1).await).await;
    // Nobody else: not a sign-up, not a sign-in, not a forgotten password.
    problem(
        app.signup("new@example.org", "correct horse battery staple")
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    provider.account("gus-sub", "gus@example.org", &[]).await;
    token_of(Browser::new().sign_in(&app.base, "gus-sub").await).await;
    let refused = problem(
        app.login("gus@example.org", "any password at all").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        refused["detail"].as_str().unwrap().contains("turned off"),
        "{refused}"
    );
    let reset = app
        .post_json(
            "/api/v1/auth/password-reset",
            &serde_json::json!({ "email": "gus@example.org" }),
            None,
        )
        .await;
    assert_eq!(reset.status(), StatusCode::ACCEPTED);
    crate::common::eventually(
        "the refused reset is audited",
        std::time::Duration::from_secs(10),
        || async {
            let actions = app.audit_actions().await;
            if !actions
                .iter()
                .any(|(a, _, _)| a == "user.password_reset_requested")
            {
                return Err("not yet".to_owned());
            }
            let event = app.newest_event("user.password_reset_requested").await;
            match event.details["reason"].as_str() {
                Some("local passwords are off") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // The sign-in page offers the provider, and keeps the form for the admin only.
    let page = reqwest::get(app.url("/app/signin"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in with Test IdP"), "{page}");
    assert!(page.contains("Administrator sign-in with a password"));
    app.stop().await;
}

/// The web app: the callback sets the session's cookie and leads on through a page of
/// Coffer's; signing out leads on to the provider's sign-out.
async fn the_web_app_signs_in_and_out_through_the_provider(topology: Topology) {
    let (provider, app) = setup(topology, &[("COFFER_OIDC_JIT", "true")]).await;
    provider.account("hal-sub", "hal@example.org", &[]).await;
    let browser = Browser::new();
    let callback = browser
        .to_callback(&app.base, "return_to=%2Fapp%2Fsessions", "hal-sub")
        .await;
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let on = location(&answer, &callback);
    assert!(on.contains("/app/signed-in?to=%2Fapp%2Fsessions"), "{on}");
    let cookie = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("coffer_session="))
        .expect("the session's cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let leading = unescape(&browser.get(&on).await.text().await.unwrap());
    assert!(
        leading.contains(r#"<meta http-equiv="refresh" content="0; url=/app/sessions">"#),
        "{leading}"
    );
    let sessions = browser.get(&format!("{}/app/sessions", app.base)).await;
    assert_eq!(sessions.status(), StatusCode::OK);
    let page = sessions.text().await.unwrap();
    let csrf = crate::common::web::csrf_in(&page).expect("a form's CSRF token");

    let out = browser
        .http
        .post(format!("{}/app/signout", app.base))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    let leading = unescape(&out.text().await.unwrap());
    let end = leading
        .split(r#"content="0; url="#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page leads on")
        .to_owned();
    assert!(
        end.starts_with(&format!("{}/session/end", provider.issuer)),
        "{end}"
    );
    assert_eq!(query_param(&end, "client_id").as_deref(), Some("coffer"));
    assert_eq!(
        query_param(&end, "post_logout_redirect_uri"),
        Some(format!("{}/app/signin", app.base))
    );
    // The provider asks whether to sign out there too.
    let at_provider = browser.get(&end).await;
    assert_eq!(at_provider.status(), StatusCode::OK);
    // Coffer's session is over.
    assert_eq!(
        browser
            .get(&format!("{}/app/sessions", app.base))
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}

/// A person with a password account connects their provider account on the Single sign-on page,
/// and signs in with the provider from then on.
async fn a_signed_in_person_connects_their_provider_account(topology: Topology) {
    let (provider, app) = setup(topology, &[]).await;
    let local = app.user().await;
    provider
        .account("ivy-sub", "ivy.elsewhere@example.org", &[])
        .await;
    // Without the link (and without just-in-time accounts) the provider account is no one.
    problem(
        Browser::new().sign_in(&app.base, "ivy-sub").await,
        StatusCode::FORBIDDEN,
    )
    .await;

    let browser = Browser::new();
    let signin = browser
        .get(&app.url("/app/signin"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = crate::common::web::csrf_in(&signin).expect("CSRF");
    let signed_in = browser
        .http
        .post(app.url("/app/signin"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", local.email.as_str()),
            ("password", "correct horse battery staple"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let page = browser.get(&app.url("/app/sso")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("Connect Test IdP"), "{page}");
    let csrf = crate::common::web::csrf_in(&page).expect("CSRF");
    let leading = browser
        .http
        .post(app.url("/app/sso/connect"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(leading.status(), StatusCode::OK);
    let leading = unescape(&leading.text().await.unwrap());
    let authorize = leading
        .split(r#"content="0; url="#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page leads on to the provider")
        .to_owned();
    assert!(authorize.starts_with(&provider.issuer), "{authorize}");
    let callback = browser
        .through_provider(&app.base, authorize, "ivy-sub")
        .await;
    let back = browser.get(&callback).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let page = browser
        .get(&app.url("/app/sso"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("is connected"), "{page}");
    let linked = app.newest_event("user.oidc_linked").await;
    assert_eq!(linked.details["subject"], "ivy-sub");
    assert_eq!(linked.actor_kind, "user");

    // From now on the provider signs Ivy in to her account.
    let token = token_of(Browser::new().sign_in(&app.base, "ivy-sub").await).await;
    assert_eq!(me(&app, &token).await["email"], local.email.as_str());
    app.stop().await;
}

/// The sign-in is kept in the database: started at one API instance, its answer may reach
/// another (behind the same public address, as a load balancer spreads them).
async fn the_answer_may_reach_another_api_instance(topology: Topology) {
    let (provider, mut app) = setup(topology, &[("COFFER_OIDC_JIT", "true")]).await;
    provider.account("jo-sub", "jo@example.org", &[]).await;
    let second_base = app.start_second_api().await;

    let browser = Browser::new();
    let callback = browser
        .to_callback(&app.base, "answer=json", "jo-sub")
        .await;
    // The same answer, delivered to the other instance (cookies are per host, not per port).
    let elsewhere = callback.replacen(&app.base, &second_base, 1);
    assert_ne!(elsewhere, callback);
    let token = token_of(browser.get(&elsewhere).await).await;
    assert_eq!(me(&app, &token).await["email"], "jo@example.org");
    app.stop().await;
}

/// `COFFER_REQUIRE_MFA` is for local accounts: a session the provider opened is not sent to set
/// up Coffer's second factor (the provider does its own); a password session still is.
async fn a_second_factor_is_required_of_password_sessions_only(topology: Topology) {
    let (provider, app) = setup(
        topology,
        &[("COFFER_OIDC_JIT", "true"), ("COFFER_REQUIRE_MFA", "true")],
    )
    .await;
    provider.account("kim-sub", "kim@example.org", &[]).await;
    let token = token_of(Browser::new().sign_in(&app.base, "kim-sub").await).await;
    assert_eq!(me(&app, &token).await["mfa_enrolment_due"], false);
    assert_eq!(
        app.get("/api/v1/files", &token).await.status(),
        StatusCode::OK
    );
    let local = app.user().await;
    assert_eq!(me(&app, &local.token).await["mfa_enrolment_due"], true);
    problem(
        app.get("/api/v1/files", &local.token).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    app.stop().await;
}

/// The entities Coffer's templates escape in attributes.
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/").replace("&amp;", "&")
}

oidc_tests!(
    a_person_signs_in_and_is_known_by_sub_not_address,
    state_must_be_this_browsers_live_sign_in,
    a_replayed_code_is_refused,
    forged_id_tokens_are_refused,
    an_unknown_sub_is_refused_without_just_in_time_accounts,
    roles_follow_the_groups_claim,
    the_providers_new_signing_key_is_fetched_without_a_restart,
    local_passwords_can_be_off_but_for_the_break_glass_admin,
    the_web_app_signs_in_and_out_through_the_provider,
    a_signed_in_person_connects_their_provider_account,
    the_answer_may_reach_another_api_instance,
    a_second_factor_is_required_of_password_sessions_only,
    claims_missing_from_the_id_token_come_from_userinfo,
);

/// The journey in headless Chromium (`tests/browser/sso.mjs`), at desktop and phone width, with
/// the provider on another site (`localhost`; Coffer at 127.0.0.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (apt: chromium), playwright-core (npm ci in tests/browser) and the OpenID provider (npm ci in tests/oidc); run by .ci/run"]
async fn single_sign_on_in_a_browser() {
    let (provider, app) = setup(Topology::Embedded, &[("COFFER_OIDC_JIT", "true")]).await;
    provider.account("pat-sub", "pat@example.org", &[]).await;
    let taken = app.user().await;
    for label in ["desktop", "phone"] {
        provider
            .account(&format!("conflict-{label}"), &taken.email, &[])
            .await;
    }
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let artifacts = dir.join("artifacts").join("sso");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let output = tokio::process::Command::new("node")
        .current_dir(&dir)
        .arg("sso.mjs")
        .arg(&app.base)
        .arg(&artifacts)
        .arg("pat-sub")
        .arg("conflict")
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the journey failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|m| m.get("report").cloned())
        .expect("a report");
    assert_eq!(report["cspViolations"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["screenshots"].as_array().map(Vec::len),
        Some(18),
        "{report}"
    );
    // Two sign-ins with the provider, one account (made just in time, by `sub`).
    assert_eq!(users_with(&app, "pat@example.org").await, 1);
    let refused = app.newest_event("user.login_failed").await;
    assert_eq!(refused.details["reason"], "address-taken");
    app.stop().await;
}
