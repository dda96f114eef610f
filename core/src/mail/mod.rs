//! Outgoing email: rendering (minijinja, escaped HTML plus plain text) and delivery (SMTP via
//! lettre, or `.eml` files in the data dir's outbox).

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
};
use minijinja::{Environment, context};

use crate::config::Config;
use crate::types::human_size;

#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Smtp(_) => "Mailer(smtp)",
            Self::Outbox(_) => "Mailer(outbox)",
        })
    }
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct MailError {
    /// The server refused for good (e.g. unknown mailbox); retrying will not help.
    pub permanent: bool,
    pub detail: String,
}

impl Mailer {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        match &config.smtp_url {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.as_str())
                    .context("COFFER_SMTP_URL")?
                    .timeout(Some(std::time::Duration::from_secs(30)))
                    .build();
                Ok(Self::Smtp(transport))
            }
            None => {
                let outbox = config.data_dir.join("outbox");
                std::fs::create_dir_all(&outbox)
                    .with_context(|| format!("creating the outbox {}", outbox.display()))?;
                Ok(Self::Outbox(AsyncFileTransport::<Tokio1Executor>::new(
                    outbox,
                )))
            }
        }
    }

    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        match self {
            Self::Smtp(smtp) => smtp.send(message).await.map(|_| ()).map_err(|e| MailError {
                permanent: e.is_permanent(),
                detail: e.to_string(),
            }),
            Self::Outbox(outbox) => outbox
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError {
                    permanent: false,
                    detail: e.to_string(),
                }),
        }
    }
}

/// What a recipient is told about a file shared with them.
#[derive(Debug)]
pub struct ShareEmail<'a> {
    pub sender: &'a str,
    pub file_name: &'a str,
    pub size: u64,
    pub expires_at: DateTime<Utc>,
    pub max_downloads: Option<i32>,
    pub message: Option<&'a str>,
    pub password: bool,
    pub url: &'a str,
}

fn templates() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // `.html` templates are auto-escaped by minijinja; `.txt` ones are plain text.
        env.add_template("share.html", include_str!("share.html"))
            .expect("share.html parses");
        env.add_template("share.txt", include_str!("share.txt"))
            .expect("share.txt parses");
        env
    })
}

/// Builds the email carrying one recipient's link. Headers are encoded by lettre; the names
/// that reach them (sender, file name) cannot hold line breaks.
pub fn share_message(from: &Mailbox, to: &str, email: &ShareEmail<'_>) -> anyhow::Result<Message> {
    let ctx = context! {
        sender => email.sender,
        file_name => email.file_name,
        size => human_size(email.size),
        expires => email.expires_at.format("%A %-d %B %Y, %H:%M UTC").to_string(),
        max_downloads => email.max_downloads,
        message => email.message,
        password => email.password,
        url => email.url,
    };
    let env = templates();
    let text = env.get_template("share.txt")?.render(&ctx)?;
    let html = env.get_template("share.html")?.render(&ctx)?;
    let to: Mailbox = to.parse().context("recipient address")?;
    let subject: String = format!("{} shared “{}” with you", email.sender, email.file_name)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )
        .context("building the share email")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(name: &'a str, message: Option<&'a str>) -> ShareEmail<'a> {
        ShareEmail {
            sender: "ann@example.org",
            file_name: name,
            size: 1_500_000,
            expires_at: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            max_downloads: Some(3),
            message,
            password: true,
            url: "http://127.0.0.1:8080/s/abc",
        }
    }

    fn rendered(message: &Message) -> String {
        String::from_utf8(message.formatted()).expect("utf-8")
    }

    #[test]
    fn hostile_names_and_messages_are_escaped_in_html() {
        let from: Mailbox = "Coffer <coffer@localhost>".parse().expect("mailbox");
        let email = sample(
            "\"><img src=x onerror=alert(1)>.pdf",
            Some("<script>alert('hi')</script>"),
        );
        let message = share_message(&from, "bob@example.org", &email).expect("renders");
        let html = templates()
            .get_template("share.html")
            .and_then(|t| t.render(context! { file_name => email.file_name, message => email.message, url => email.url, size => "1 MB", sender => email.sender, expires => "x", password => true, max_downloads => 3 }))
            .expect("html");
        assert!(
            !html.contains("<script>") && !html.contains("<img src=x"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;") && html.contains("&lt;img src=x"));
        let raw = rendered(&message);
        assert!(raw.contains("Subject:"));
        assert!(!raw.contains("\r\nBcc:"));
    }

    #[test]
    fn names_the_sender_file_expiry_and_link_but_no_content() {
        let from: Mailbox = "Coffer <coffer@localhost>".parse().expect("mailbox");
        let message = share_message(
            &from,
            "bob@example.org",
            &sample("report.pdf", Some("Hi Bob")),
        )
        .expect("renders");
        let text = templates().get_template("share.txt").expect("tpl").render(context! {
            sender => "ann@example.org", file_name => "report.pdf", size => human_size(1_500_000),
            expires => "Friday 15 January 2027, 08:00 UTC", max_downloads => 3, message => "Hi Bob",
            password => true, url => "http://127.0.0.1:8080/s/abc",
        }).expect("text");
        for needle in [
            "ann@example.org",
            "report.pdf",
            "1.5 MB",
            "15 January 2027",
            "Hi Bob",
            "http://127.0.0.1:8080/s/abc",
            "password",
            "3 download",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        let raw = rendered(&message);
        assert!(raw.contains("multipart/alternative"));
    }
}
