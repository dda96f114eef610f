//! Recipient verification: a link that asks its recipient to prove their address emails a
//! six-digit code on a POST from its page (never on a GET), and opens the download only to the
//! browser that typed the code back in time. Codes are single-use, short-lived, bound to their
//! link and rate-limited; every step is audited; an admin's policy asks it of every share.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use serde_json::{Value, json};

use crate::common::smtp::{Mail, SmtpServer};
use crate::common::web::Browser;
use crate::common::{TestApp, Topology, User, eventually, pdf, problem};
use coffer::Roles;

const RITA: &str = "rita@example.org";

/// A service with a mail server, a user, and a ready file of theirs shared with `RITA` as
/// `share` asks: the service, the mail server, the user, the file's bytes, the share id and
/// the emailed link.
async fn shared_with_rita(
    topology: Topology,
    extra: &[(&str, &str)],
    share: Value,
) -> (TestApp, SmtpServer, User, Vec<u8>, String, String) {
    let smtp = SmtpServer::start();
    let mut vars = vec![("COFFER_SMTP_URL", smtp.url.as_str())];
    vars.extend_from_slice(extra);
    let app = TestApp::spawn_with(topology, &vars, Roles::ALL).await;
    let ann = app.user().await;
    let bytes = pdf(b"the medical report");
    let asked = share["verify_recipient"] == true;
    let report = ("report.pdf", bytes.clone());
    let (_, created, mail) = app.emailed_share(&smtp, &ann, report, RITA, share).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let asks = asked || extra.contains(&("COFFER_REQUIRE_RECIPIENT_VERIFICATION", "true"));
    // The email tells the recipient a code will be asked for, when it will.
    assert_eq!(
        mail.part("text/plain").contains("asks you for a code"),
        asks
    );
    (app, smtp, ann, bytes, id, mail.link())
}

/// A browser of the recipient's: it does not follow redirects, and keeps the link's cookie.
struct Recipient {
    http: reqwest::Client,
    link: String,
    cookie: Option<String>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Recipient {
    fn new(link: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            link: link.to_owned(),
            cookie: None,
        }
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
    }

    async fn answer(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        }
    }

    async fn page(&self) -> Answer {
        Self::answer(self.with_cookie(self.http.get(&self.link))).await
    }

    async fn download(&self, range: Option<&str>) -> (StatusCode, Vec<u8>) {
        let mut request = self.with_cookie(self.http.get(format!("{}/download", self.link)));
        if let Some(range) = range {
            request = request.header("range", range);
        }
        let response = request.send().await.expect("download");
        let status = response.status();
        (status, response.bytes().await.expect("body").to_vec())
    }

    /// Posts the verification form: without a code it asks for one.
    async fn verify(&mut self, code: Option<&str>) -> Answer {
        let form: Vec<(&str, &str)> = code.map(|c| ("code", c)).into_iter().collect();
        let request = self.http.post(format!("{}/verify", self.link)).form(&form);
        let answer = Self::answer(self.with_cookie(request)).await;
        if let Some(set) = answer.headers.get("set-cookie") {
            let pair = set
                .to_str()
                .expect("ascii")
                .split(';')
                .next()
                .expect("pair");
            self.cookie = Some(pair.to_owned());
        }
        answer
    }
}

/// The six-digit code in a code email's text.
fn code_of(mail: &Mail) -> String {
    let text = mail.part("text/plain");
    text.split_whitespace()
        .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in:\n{text}"))
        .to_owned()
}

/// A code that is not `code`.
fn other_than(code: &str) -> String {
    let last = code.as_bytes()[5] - b'0';
    format!("{}{}", &code[..5], (last + 1) % 10)
}

/// The audit events about a share so far (sealed or not): each action, with the reason of a
/// refusal or failure.
async fn events_of(app: &TestApp, share: &str) -> Vec<(String, String)> {
    use sea_orm::QueryOrder as _;
    entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::TargetId.eq(share))
        .order_by_asc(entity::audit_event::Column::Id)
        .all(app.core().db())
        .await
        .expect("audit rows")
        .into_iter()
        .map(|e| {
            let reason = e.details["reason"].as_str().unwrap_or_default().to_owned();
            (e.action, reason)
        })
        .collect()
}

fn has(events: &[(String, String)], action: &str, reason: &str) -> bool {
    events.iter().any(|(a, r)| a == action && r == reason)
}

async fn a_recipient_proves_their_address_with_an_emailed_code(topology: Topology) {
    let (app, smtp, ann, bytes, share, link) =
        shared_with_rita(topology, &[], json!({ "verify_recipient": true })).await;
    let mut rita = Recipient::new(&link);

    // The page asks for a code; opening it (as a mail scanner does) sends none.
    let landing = rita.page().await;
    assert_eq!(landing.status, StatusCode::OK);
    assert!(landing.body.contains("Email me a code"));
    assert!(landing.body.contains("r•••@example.org"));
    assert!(!landing.body.contains("/download\""));
    assert_eq!(rita.download(None).await.0, StatusCode::FORBIDDEN);
    let before_asking = events_of(&app, &share).await;
    assert!(
        !before_asking
            .iter()
            .any(|(a, _)| a == "share.verification_sent")
    );
    assert!(has(&before_asking, "share.denied", "not verified"));

    // Asking emails a code to the address the link went to, in the body only.
    let asked = rita.verify(None).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.body.contains("name=\"code\""));
    let mail = smtp.wait_for(RITA, 2).await.remove(1);
    let code = code_of(&mail);
    assert!(!mail.header("Subject").contains(&code));
    assert!(mail.part("text/plain").contains("report.pdf"));

    // A wrong code is refused and audited; the right one verifies this browser.
    let wrong = rita.verify(Some(&other_than(&code))).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.body.contains("not right"));
    assert!(rita.cookie.is_none());
    let right = rita
        .verify(Some(&format!("{} {}", &code[..3], &code[3..])))
        .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let token = link.rsplit('/').next().expect("token");
    assert_eq!(right.headers["location"], format!("/s/{token}"));
    let cookie = right.headers["set-cookie"].to_str().expect("ascii");
    for part in [
        "coffer_recipient=",
        &format!("Path=/s/{token}"),
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    let verified = rita.page().await;
    assert!(verified.body.contains(&format!("/s/{token}/download")));
    assert_eq!(rita.download(None).await, (StatusCode::OK, bytes.clone()));
    // A resumed download is verified the same way.
    let (status, tail) = rita.download(Some("bytes=10-")).await;
    assert_eq!(
        (status, tail),
        (StatusCode::PARTIAL_CONTENT, bytes[10..].to_vec())
    );

    // The code worked once; another browser is not verified by it, nor by a made-up cookie.
    let mut eve = Recipient::new(&link);
    assert_eq!(eve.verify(Some(&code)).await.status, StatusCode::FORBIDDEN);
    eve.cookie = Some(format!("coffer_recipient={}", "A".repeat(43)));
    assert_eq!(eve.download(None).await.0, StatusCode::FORBIDDEN);

    // The download's end is recorded a moment after its transfer.
    let events = eventually("the download recorded", Duration::from_secs(30), || async {
        let events = events_of(&app, &share).await;
        if has(&events, "share.downloaded", "") {
            return Ok(events);
        }
        Err(format!("{events:?}"))
    })
    .await;
    assert!(has(&events, "share.verification_sent", ""));
    assert!(has(&events, "share.verification_failed", "wrong code"));
    assert!(has(&events, "share.verified", ""));
    assert!(has(&events, "share.verification_failed", "no live code"));
    assert!(has(&events, "share.downloaded", ""));
    // The owner's access report lists each step, once the log has sealed them.
    eventually(
        "the report listing verification",
        Duration::from_secs(30),
        || async {
            let report = app
                .get_json(
                    &format!("/api/v1/shares/{share}/activity"),
                    Some(&ann.token),
                )
                .await;
            let actions: Vec<&str> = report["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter_map(|e| e["action"].as_str())
                .collect();
            let wanted = [
                "share.verification_sent",
                "share.verification_failed",
                "share.verified",
            ];
            if wanted.iter().all(|w| actions.contains(w)) {
                return Ok(());
            }
            Err(format!("{actions:?}"))
        },
    )
    .await;
    app.stop().await;
}

/// Moves every code or session of `share` of `kind` into the past.
async fn expire(app: &TestApp, share: &str, kind: &str) {
    use entity::recipient_verification as verification;
    let share = uuid::Uuid::parse_str(share).expect("uuid");
    verification::Entity::update_many()
        .col_expr(
            verification::Column::ExpiresAt,
            Expr::value(Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(verification::Column::ShareId.eq(share))
        .filter(verification::Column::Kind.eq(kind))
        .exec(app.core().db())
        .await
        .expect("expire");
}

async fn codes_are_short_lived_single_use_and_rate_limited(topology: Topology) {
    let (app, smtp, _, _, share, link) =
        shared_with_rita(topology, &[], json!({ "verify_recipient": true })).await;
    let mut rita = Recipient::new(&link);

    // Five wrong guesses use a code up: the right one no longer works after them.
    assert_eq!(rita.verify(None).await.status, StatusCode::OK);
    let code = code_of(&smtp.wait_for(RITA, 2).await[1]);
    for _ in 0..5 {
        assert_eq!(
            rita.verify(Some(&other_than(&code))).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let used_up = rita.verify(Some(&code)).await;
    assert_eq!(used_up.status, StatusCode::FORBIDDEN);
    assert!(used_up.body.contains("no longer works"));

    // A new code replaces the old, and works until it expires.
    assert_eq!(rita.verify(None).await.status, StatusCode::OK);
    let first = code_of(&smtp.wait_for(RITA, 3).await[2]);
    assert_eq!(rita.verify(None).await.status, StatusCode::OK);
    let second = code_of(&smtp.wait_for(RITA, 4).await[3]);
    if first != second {
        assert_eq!(
            rita.verify(Some(&first)).await.status,
            StatusCode::FORBIDDEN
        );
    }
    expire(&app, &share, "code").await;
    assert_eq!(
        rita.verify(Some(&second)).await.status,
        StatusCode::FORBIDDEN
    );

    // Five codes an hour per link: the sixth is refused with the time to wait.
    assert_eq!(rita.verify(None).await.status, StatusCode::OK);
    assert_eq!(rita.verify(None).await.status, StatusCode::OK);
    let last = code_of(&smtp.wait_for(RITA, 6).await[5]);
    let refused = rita.verify(None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers.contains_key("retry-after"));
    // The link's email and five codes.
    assert_eq!(smtp.mails().len(), 6);

    // A verified session ends at its time, and the download is refused again.
    assert_eq!(rita.verify(Some(&last)).await.status, StatusCode::SEE_OTHER);
    assert_eq!(rita.download(None).await.0, StatusCode::OK);
    expire(&app, &share, "session").await;
    assert_eq!(rita.download(None).await.0, StatusCode::FORBIDDEN);
    assert!(has(
        &events_of(&app, &share).await,
        "share.denied",
        "verification codes rate-limited"
    ));
    app.stop().await;
}

async fn owners_switch_verification_on_a_live_share(topology: Topology) {
    let (app, _smtp, ann, _, share, link) = shared_with_rita(topology, &[], json!({})).await;
    let rita = Recipient::new(&link);
    assert_eq!(rita.download(None).await.0, StatusCode::OK);

    let patch = |body: Value, id: String| {
        app.http
            .patch(app.url(&format!("/api/v1/shares/{id}")))
            .bearer_auth(&ann.token)
            .json(&body)
            .send()
    };
    let changed: Value = patch(json!({ "verify_recipient": true }), share.clone())
        .await
        .expect("patch")
        .json()
        .await
        .expect("json");
    assert_eq!(changed["verify_recipient"], true);
    assert_eq!(rita.download(None).await.0, StatusCode::FORBIDDEN);
    assert!(rita.page().await.body.contains("Email me a code"));
    let event = app.newest_event("share.changed").await;
    assert_eq!(
        event.details["verify_recipient"],
        json!({ "old": false, "new": true })
    );

    // A link without recipient has no address to send a code to.
    let (_, _, unaddressed) = app
        .shared_link(&ann, "memo.pdf", pdf(b"memo"), &json!({}))
        .await;
    let refused = patch(json!({ "verify_recipient": true }), unaddressed)
        .await
        .expect("patch");
    let body = problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("recipient")
    );
    let asked = app
        .post_json(
            &format!(
                "/api/v1/files/{}/shares",
                changed["file_id"].as_str().expect("file")
            ),
            &json!({ "verify_recipient": true }),
            Some(&ann.token),
        )
        .await;
    problem(asked, StatusCode::UNPROCESSABLE_ENTITY).await;

    patch(json!({ "verify_recipient": false }), share)
        .await
        .expect("patch");
    assert_eq!(rita.download(None).await.0, StatusCode::OK);
    app.stop().await;
}

async fn the_admin_policy_asks_every_recipient_to_verify(topology: Topology) {
    let policy = [("COFFER_REQUIRE_RECIPIENT_VERIFICATION", "true")];
    let (app, _smtp, ann, _, share, link) =
        shared_with_rita(topology, &policy, json!({ "verify_recipient": false })).await;
    let rita = Recipient::new(&link);
    assert!(rita.page().await.body.contains("Email me a code"));
    assert_eq!(rita.download(None).await.0, StatusCode::FORBIDDEN);

    let view = app
        .get_json(
            &format!("/api/v1/shares/{share}/activity?limit=1"),
            Some(&ann.token),
        )
        .await;
    assert_eq!(view["share"]["verify_recipient"], true);
    let file = view["share"]["file_id"].as_str().expect("file").to_owned();

    // Nothing can be shared without someone to verify, and no share can opt out.
    let unaddressed = app
        .post_json(
            &format!("/api/v1/files/{file}/shares"),
            &json!({}),
            Some(&ann.token),
        )
        .await;
    let body = problem(unaddressed, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("COFFER_REQUIRE_RECIPIENT_VERIFICATION")
    );
    let opt_out = app
        .http
        .patch(app.url(&format!("/api/v1/shares/{share}")))
        .bearer_auth(&ann.token)
        .json(&json!({ "verify_recipient": false }))
        .send()
        .await
        .expect("patch");
    problem(opt_out, StatusCode::UNPROCESSABLE_ENTITY).await;
    app.stop().await;
}

async fn the_web_app_asks_for_verification_and_turns_it_off(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn_with(topology, &[("COFFER_SMTP_URL", &smtp.url)], Roles::ALL).await;
    let ann = app.user().await;
    let file = app.upload(&ann, "scan.pdf", pdf(b"the scan")).await;
    assert_eq!(app.wait_until_settled(&ann, &file).await["status"], "ready");

    let mut browser = Browser::with_session(&app, &ann.token);
    let details = browser.get(&format!("/app/files/{file}")).await;
    assert!(details.body.contains("name=\"verify_recipient\""));
    let csrf = details.csrf();
    let shared = browser
        .post(
            &format!("/app/files/{file}/shares"),
            &[
                ("csrf", &csrf),
                ("recipients", RITA),
                ("expires_in_hours", "24"),
                ("verify_recipient", "on"),
            ],
        )
        .await;
    assert_eq!(shared.status, StatusCode::SEE_OTHER);
    let listed = app
        .get_json(&format!("/api/v1/files/{file}/shares"), Some(&ann.token))
        .await;
    let share = listed["shares"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(listed["shares"][0]["verify_recipient"], true);
    assert!(
        browser
            .get(&format!("/app/files/{file}"))
            .await
            .body
            .contains("code by email")
    );
    let link = smtp.wait_for(RITA, 1).await.remove(0).link();
    assert_eq!(
        Recipient::new(&link).download(None).await.0,
        StatusCode::FORBIDDEN
    );

    // The edit page shows the box ticked; sent unticked, verification is off.
    let form = browser.get(&format!("/app/shares/{share}/edit")).await;
    assert!(form.body.contains("name=\"verify_recipient\" type=\"checkbox\" value=\"on\" aria-describedby=\"verify-hint\" checked"));
    let saved = browser
        .post(
            &format!("/app/shares/{share}/edit"),
            &[("csrf", &form.csrf()), ("verify_shown", "yes")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    assert_eq!(Recipient::new(&link).download(None).await.0, StatusCode::OK);
    app.stop().await;
}

both_topologies!(
    a_recipient_proves_their_address_with_an_emailed_code,
    codes_are_short_lived_single_use_and_rate_limited,
    owners_switch_verification_on_a_live_share,
    the_admin_policy_asks_every_recipient_to_verify,
    the_web_app_asks_for_verification_and_turns_it_off,
);
