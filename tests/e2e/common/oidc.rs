//! A real OpenID provider for the sign-in tests: `oidc-provider` from npm (OpenID Certified),
//! run by `tests/oidc/provider.mjs` (`npm ci` there first), and a browser-like client that goes
//! through its real redirects, sign-in and consent pages.
//!
//! The provider's issuer is `http://localhost:PORT` while Coffer is at `127.0.0.1`: two sites,
//! as a provider and Coffer are in use, so that cross-site cookie rules apply in Chromium.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "coffer";
pub const CLIENT_SECRET: &str = "coffer-oidc-test-secret";

pub struct Provider {
    child: Child,
    pub issuer: String,
    http: reqwest::Client,
}

impl Provider {
    /// Starts the provider; it serves once [`Provider::register`] has told it Coffer's address.
    pub fn start() -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the OpenID provider is not installed: run `npm ci` in tests/oidc (.ci/run does)"
        );
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs tests/oidc/provider.mjs");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        stdout
            .read_line(&mut line)
            .expect("the provider says where it listens");
        // Whatever it prints later goes on to the test's output (a closed pipe would end it).
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut std::io::stderr());
        });
        let said: Value = serde_json::from_str(&line).expect("one line of JSON");
        Self {
            child,
            issuer: said["issuer"].as_str().expect("issuer").to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The settings that point Coffer at this provider.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("COFFER_OIDC_ISSUER", self.issuer.clone()),
            ("COFFER_OIDC_CLIENT_ID", CLIENT_ID.to_owned()),
            ("COFFER_OIDC_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            (
                "COFFER_OIDC_SCOPES",
                "openid email profile groups".to_owned(),
            ),
            ("COFFER_OIDC_PROVIDER_NAME", "Test IdP".to_owned()),
        ]
    }

    async fn control(&self, path: &str, body: Value) {
        let answer = self
            .http
            .post(format!("{}/__test/{path}", self.issuer))
            .json(&body)
            .send()
            .await
            .expect("the provider answers");
        assert_eq!(answer.status(), StatusCode::NO_CONTENT, "{path}");
    }

    /// Registers Coffer (at `base`) as the provider's client.
    pub async fn register(&self, base: &str) {
        self.control(
            "client",
            json!({
                "redirect_uris": [format!("{base}/api/v1/auth/oidc/callback")],
                "post_logout_redirect_uris": [format!("{base}/app/signin")],
            }),
        )
        .await;
    }

    /// An account at the provider.
    pub async fn account(&self, sub: &str, email: &str, groups: &[&str]) {
        self.control(
            "accounts",
            json!({ "sub": sub, "email": email, "groups": groups }),
        )
        .await;
    }

    /// The next ID token the provider issues is replaced by a forgery (`other-key`,
    /// `other-key-same-kid`, `expired`, `nonce`, `audience`, `issuer`).
    pub async fn forge(&self, mode: &str) {
        self.control("forge", json!({ "mode": mode })).await;
    }

    /// The scopes' claims (address, groups) from the userinfo endpoint only, not in the ID token.
    pub async fn claims_from_userinfo_only(&self) {
        self.control("userinfo-only", json!({ "on": true })).await;
    }

    /// The provider signs with a new key (a new `kid`) from now on.
    pub async fn rotate_key(&self) {
        self.control("rotate", json!({})).await;
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser as far as sign-in needs one: cookies, and redirects followed one at a time.
pub struct Browser {
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    pub async fn get(&self, url: &str) -> Response {
        self.http.get(url).send().await.expect("GET")
    }

    /// Starts a sign-in at Coffer (`base`) and signs in at the provider as `sub`, through its
    /// sign-in and consent pages: the callback URL the provider sends the browser back to (not
    /// visited yet). `query` is added to Coffer's start (`answer=json`, …).
    pub async fn to_callback(&self, base: &str, query: &str, sub: &str) -> String {
        let start = format!("{base}/api/v1/auth/oidc/login?{query}");
        self.through_provider(base, start, sub).await
    }

    /// From `url` (Coffer's start, or the provider's authorization URL) through the provider's
    /// pages as `sub`, to the callback URL at Coffer (`base`), not visited.
    pub async fn through_provider(&self, base: &str, mut url: String, sub: &str) -> String {
        for _ in 0..20 {
            let response = self.get(&url).await;
            let status = response.status();
            if status.is_redirection() {
                let next = location(&response, &url);
                if next.starts_with(&format!("{base}/api/v1/auth/oidc/callback")) {
                    return next;
                }
                url = next;
                continue;
            }
            assert_eq!(status, StatusCode::OK, "{url}");
            let page = response.text().await.expect("page");
            let action = form_action(&page).unwrap_or_else(|| panic!("a form on {url}: {page}"));
            let action = absolute(&url, &action);
            let form: Vec<(&str, &str)> = if page.contains(r#"name="prompt" value="login""#) {
                vec![("prompt", "login"), ("login", sub), ("password", "any")]
            } else if page.contains(r#"name="prompt" value="consent""#) {
                vec![("prompt", "consent")]
            } else {
                panic!("an unexpected page at the provider: {page}");
            };
            let posted = self
                .http
                .post(&action)
                .form(&form)
                .send()
                .await
                .expect("POST");
            assert!(posted.status().is_redirection(), "{}", posted.status());
            url = location(&posted, &action);
        }
        panic!("the provider never sent the browser back");
    }

    /// A sign-in with `answer=json` all the way: the callback's answer.
    pub async fn sign_in(&self, base: &str, sub: &str) -> Response {
        let callback = self.to_callback(base, "answer=json", sub).await;
        self.get(&callback).await
    }
}

/// The `Location` of a redirect, made absolute against `from`.
pub fn location(response: &Response, from: &str) -> String {
    let to = response
        .headers()
        .get(LOCATION)
        .expect("Location")
        .to_str()
        .expect("ASCII");
    absolute(from, to)
}

fn absolute(from: &str, to: &str) -> String {
    reqwest::Url::parse(from)
        .and_then(|base| base.join(to))
        .expect("URL")
        .to_string()
}

fn form_action(page: &str) -> Option<String> {
    let start = page.find("<form")?;
    let rest = &page[start..];
    let at = rest.find("action=\"")? + "action=\"".len();
    let end = rest[at..].find('"')?;
    Some(rest[at..at + end].replace("&amp;", "&"))
}

/// The value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `url` with query parameter `name` set to `value`.
pub fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).expect("URL");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
    parsed.to_string()
}
