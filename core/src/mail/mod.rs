//! Outgoing email: rendering (minijinja, escaped HTML plus plain text) and delivery (SMTP via
//! lettre, or `.eml` files in the data dir's outbox).

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use minijinja::{Environment, context};

use crate::config::Config;
use crate::text::{self, Arg, t, t_with};

mod receipts;

pub use receipts::{Receipt, receipts_message};

#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// No mail server: each message is kept as `{name}.eml` (mode 0600) in this directory,
    /// for the operator to hand on, until the caller removes it.
    Outbox(std::path::PathBuf),
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
                let outbox = std::path::absolute(config.data_dir.join("outbox"))
                    .context("the outbox directory")?;
                std::fs::create_dir_all(&outbox)
                    .with_context(|| format!("creating the outbox {}", outbox.display()))?;
                Ok(Self::Outbox(outbox))
            }
        }
    }

    /// Whether messages really leave (else they wait in the outbox).
    pub fn sends(&self) -> bool {
        matches!(self, Self::Smtp(_))
    }

    /// Delivers `message`; in the outbox it is `{name}.eml`, replacing an earlier one.
    pub async fn send(&self, message: Message, name: &str) -> Result<(), MailError> {
        match self {
            Self::Smtp(smtp) => smtp.send(message).await.map(|_| ()).map_err(|e| MailError {
                permanent: e.is_permanent(),
                detail: e.to_string(),
            }),
            Self::Outbox(dir) => {
                let (dir, name) = (dir.clone(), name.to_owned());
                tokio::task::spawn_blocking(move || {
                    crate::private_file::replace(
                        &dir.join(format!("{name}.eml")),
                        &message.formatted(),
                    )
                })
                .await
                .map_err(std::io::Error::other)
                .flatten()
                .map_err(|e| MailError {
                    permanent: false,
                    detail: format!("writing to the outbox: {e}"),
                })
            }
        }
    }

    /// Removes the outbox copy `name` (its link no longer works); nothing to do when mail is
    /// sent.
    pub async fn forget(&self, name: &str) {
        if let Self::Outbox(dir) = self {
            let path = dir.join(format!("{name}.eml"));
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "could not remove an outbox copy")
                }
            }
        }
    }

    /// The names of the messages waiting in the outbox.
    pub async fn outbox_names(&self) -> std::io::Result<Vec<String>> {
        let Self::Outbox(dir) = self else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".eml"))
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
}

/// What a recipient is told about the files shared with them.
#[derive(Debug)]
pub struct ShareEmail<'a> {
    pub sender: &'a str,
    /// Each file's name and size, in the order the page lists them (one, unless the share is a
    /// bundle).
    pub files: &'a [(&'a str, u64)],
    pub expires_at: DateTime<Utc>,
    pub max_downloads: Option<i32>,
    pub message: Option<&'a str>,
    pub password: bool,
    /// Whether the page asks the recipient for a code emailed to them before the download.
    pub verify: bool,
    pub url: &'a str,
}

#[allow(
    clippy::expect_used,
    reason = "templates compiled in, parsed by every mail test"
)]
fn templates() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_function("t", crate::text::template_function);
        // `.html` templates are auto-escaped by minijinja; `.txt` ones are plain text.
        env.add_template("share.html", include_str!("share.html"))
            .expect("share.html parses");
        env.add_template("share.txt", include_str!("share.txt"))
            .expect("share.txt parses");
        env
    })
}

/// One line-break convention for text a user typed: a lone CR or LF never reaches the mail
/// server as anything but the line break the message's encoding writes.
fn normalized_lines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// A `Message-ID` on the sending domain: large providers refuse mail without one.
fn message_id(from: &Mailbox) -> String {
    format!(
        "<{}@{}>",
        uuid::Uuid::new_v4().simple(),
        from.email.domain()
    )
}

/// The text and HTML bodies of a share email.
fn share_bodies(email: &ShareEmail<'_>) -> anyhow::Result<(String, String)> {
    let message = email.message.map(normalized_lines);
    let files: Vec<_> = email
        .files
        .iter()
        .map(|(name, size)| context! { name => *name, size => text::size(*size) })
        .collect();
    let ctx = context! {
        sender => email.sender,
        files => files,
        expires => text::english().long_date(email.expires_at),
        max_downloads => email.max_downloads,
        message => message,
        password => email.password,
        verify => email.verify,
        url => email.url,
    };
    let env = templates();
    let text = env.get_template("share.txt")?.render(&ctx)?;
    let html = env.get_template("share.html")?.render(&ctx)?;
    Ok((text, html))
}

/// Builds the email carrying one recipient's link. Headers are encoded by lettre; the names
/// that reach them (sender, file name) cannot hold line breaks. Replies go to the sharer.
pub fn share_message(from: &Mailbox, to: &str, email: &ShareEmail<'_>) -> anyhow::Result<Message> {
    let (text, html) = share_bodies(email)?;
    let to: Mailbox = to.parse().context("recipient address")?;
    let subject: String = match email.files {
        [(name, _)] => t_with(
            "mail-share-subject",
            [
                ("sender", Arg::from(email.sender)),
                ("name", Arg::from(*name)),
            ],
        ),
        files => t_with(
            "mail-share-subject-files",
            [
                ("sender", Arg::from(email.sender)),
                ("count", Arg::from(files.len())),
            ],
        ),
    }
    .chars()
    .filter(|c| !c.is_control())
    .collect();
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .message_id(Some(message_id(from)))
        .subject(subject);
    if let Ok(sharer) = email.sender.parse::<Mailbox>() {
        builder = builder.reply_to(sharer);
    }
    builder
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

/// Tells the owner of an account that someone tried to sign up with their address: sign-up
/// answers the same for a new and an existing address, so this is where the owner learns it.
pub fn account_exists_message(from: &Mailbox, to: &str, sign_in: &str) -> anyhow::Result<Message> {
    let text = t_with("mail-account-exists", [("link", Arg::from(sign_in))]);
    account_message(from, to, &t("mail-account-exists-subject"), text)
}

/// The link that proves an account's address is its owner's.
pub fn verify_email_message(
    from: &Mailbox,
    to: &str,
    link: &str,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<Message> {
    let text = t_with("mail-verify", link_until(link, expires_at));
    account_message(from, to, &t("mail-verify-subject"), text)
}

/// The link that sets a new password after an admin reset the old one.
pub fn password_reset_message(
    from: &Mailbox,
    to: &str,
    link: &str,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<Message> {
    let text = t_with("mail-reset", link_until(link, expires_at));
    account_message(from, to, &t("mail-reset-subject"), text)
}

/// A link someone asked for because they forgot their password (nothing has changed yet).
pub fn password_reset_requested_message(
    from: &Mailbox,
    to: &str,
    link: &str,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<Message> {
    let text = t_with("mail-reset-requested", link_until(link, expires_at));
    account_message(from, to, &t("mail-reset-requested-subject"), text)
}

/// An invitation to sign up: the link is the invitation (it admits this address only).
pub fn invite_message(
    from: &Mailbox,
    to: &str,
    link: &str,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<Message> {
    let text = t_with("mail-invite", link_until(link, expires_at));
    account_message(from, to, &t("mail-invite-subject"), text)
}

/// A code that proves a share's recipient holds the address the link was sent to.
#[derive(Debug)]
pub struct CodeEmail<'a> {
    pub code: &'a str,
    pub sender: &'a str,
    pub file_name: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// The code a recipient asked for on a link's page. The code is in the body only (not the
/// subject, which lock screens show).
pub fn recipient_code_message(
    from: &Mailbox,
    to: &str,
    email: &CodeEmail<'_>,
) -> anyhow::Result<Message> {
    let text = t_with(
        "mail-recipient-code",
        [
            ("code", Arg::from(email.code)),
            ("sender", Arg::from(email.sender)),
            ("name", Arg::from(email.file_name)),
            ("until", Arg::from(text::date(email.expires_at))),
        ],
    );
    account_message(from, to, &t("mail-recipient-code-subject"), text)
}

/// The arguments of an account email: its link and when the link stops working.
fn link_until(link: &str, expires_at: DateTime<Utc>) -> [(&'static str, Arg<'static>); 2] {
    [
        ("link", Arg::from(link.to_owned())),
        ("until", Arg::from(text::date(expires_at))),
    ]
}

/// A plain-text message about the recipient's own account.
fn account_message(
    from: &Mailbox,
    to: &str,
    subject: &str,
    text: String,
) -> anyhow::Result<Message> {
    let to: Mailbox = to.parse().context("recipient address")?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .message_id(Some(message_id(from)))
        .subject(subject)
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(format!("{text}\n")),
        )
        .with_context(|| format!("building the email \"{subject}\""))
}

#[cfg(test)]
mod tests;
