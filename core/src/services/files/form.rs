//! Upload forms (`multipart/form-data`, from the API or the web app's page): each `file` part is
//! sealed into quarantine as it streams (never buffered, never on disk in plaintext), the share
//! fields beside them are read under limits, and the files and their share are recorded, all in
//! one call. Whatever fails, nothing is left behind. The transport only hands the parts over
//! ([`FormParts`]).

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio_util::io::ReaderStream;

use super::upload::{Sealed, Uploaded, create, discard, ingest};
use crate::audit::RequestMeta;
use crate::principal::User;
use crate::services::shares::{self, ShareRequest, split_recipients};
use crate::text::{Arg, t, t_with};
use crate::types::FileName;
use crate::{Core, ServiceError};

/// One part of a form, as the transport hands it over.
pub struct FormPart {
    /// The part's field name.
    pub name: Option<String>,
    /// The file name a file input sent (empty when the input was left empty).
    pub file_name: Option<String>,
    /// The part's bytes, read as they arrive.
    pub body: Pin<Box<dyn AsyncRead + Send>>,
}

/// A form's parts, one at a time: each part is read whole before the next is asked for.
pub trait FormParts: Send {
    /// The next part; `None` after the last. `Err` says why the body is not a form.
    fn next_part(&mut self) -> impl Future<Output = Result<Option<FormPart>, String>> + Send;
}

/// What a blank field means: the API takes what the client sent; a browser's form sends every
/// field, so there a blank field (and a file input left empty) means "not given", and the
/// expiry (a select that always holds a value) is a default until there are recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blanks {
    Sent,
    NotGiven,
}

/// An upload form that was not accepted: why, and the share fields read until then without
/// the password (so a page can show the form again as the user filled it in).
#[derive(Debug)]
pub struct Refused {
    pub error: ServiceError,
    pub share: ShareRequest,
    /// The form held no file at all.
    pub no_file: bool,
}

/// Uploads the files of a form (one `file` part each, up to [`shares::MOST_FILES`]) with the
/// shares its fields ask for: with several files, one share per recipient of all of them.
pub async fn upload_form(
    core: &Core,
    owner: &User,
    parts: &mut impl FormParts,
    blanks: Blanks,
    meta: &RequestMeta,
) -> Result<Uploaded, Refused> {
    // Before a byte is read.
    if let Err(error) = owner.require(crate::principal::Scope::FilesWrite) {
        return Err(Refused {
            error,
            share: ShareRequest::default(),
            no_file: false,
        });
    }
    let mut form = Form::default();
    let read = read_fields(core, parts, blanks, &mut form).await;
    let mut share = form.share;
    share.recipients = split_recipients(&share.recipients);
    if blanks == Blanks::NotGiven && share.recipients.is_empty() {
        // A web form's select and boxes always hold a value: defaults, until there are
        // recipients.
        share.expires_in_hours = None;
        share.receipts = None;
    }
    let kept = ShareRequest {
        recipients: share.recipients.clone(),
        expires_at: share.expires_at,
        expires_in_hours: share.expires_in_hours,
        max_downloads: share.max_downloads,
        message: share.message.clone(),
        password: None,
        verify_recipient: share.verify_recipient,
        receipts: share.receipts,
    };
    let refused = |error, no_file| Refused {
        error,
        share: kept.clone(),
        no_file,
    };
    if let Err(error) = read {
        for (_, sealed) in form.files {
            discard_quietly(core, sealed).await;
        }
        return Err(refused(error, false));
    }
    if form.files.is_empty() {
        return Err(refused(
            ServiceError::Invalid(t("form-error-no-file")),
            true,
        ));
    }
    create(core, owner, form.files, share, meta)
        .await
        .map_err(|error| refused(error, false))
}

/// What a form held, read so far.
#[derive(Default)]
struct Form {
    files: Vec<(FileName, Sealed)>,
    share: ShareRequest,
}

async fn discard_quietly(core: &Core, sealed: Sealed) {
    if let Err(err) = discard(core, sealed).await {
        tracing::warn!(error = %err, "could not discard an abandoned upload");
    }
}

/// Reads a small text part, refusing one longer than `limit` bytes or not UTF-8.
pub async fn text_field(part: FormPart, limit: u64) -> Result<String, ServiceError> {
    let name = part.name.unwrap_or_default();
    let mut bytes = Vec::new();
    part.body
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| {
            ServiceError::BadRequest(t_with(
                "form-error-malformed",
                [("error", Arg::from(e.to_string()))],
            ))
        })?;
    if bytes.len() as u64 > limit {
        return Err(ServiceError::Invalid(t_with(
            "form-error-field-too-long",
            [("name", Arg::from(name))],
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        ServiceError::Invalid(t_with(
            "form-error-field-not-text",
            [("name", Arg::from(name))],
        ))
    })
}

fn number(name: &str, text: &str) -> Result<i64, ServiceError> {
    text.trim().parse().map_err(|_| {
        ServiceError::Invalid(t_with(
            "form-error-not-a-number",
            [("name", Arg::from(name))],
        ))
    })
}

/// A checkbox as a browser sends it (`on`), or a flag as a script writes it.
fn checkbox(name: &str, text: &str) -> Result<bool, ServiceError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(ServiceError::Invalid(t_with(
            "form-error-not-a-flag",
            [("name", Arg::from(name))],
        ))),
    }
}

/// How many parts besides its files an upload form may have, and how many bytes they may hold
/// together: what is not a file is kept in memory while the form is read. (Its files are
/// sealed as they arrive; a form holds as many as one share may.)
const MAX_PARTS: usize = 64;
const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Counts a form's parts and the bytes of its text fields against the limits above.
#[derive(Default)]
struct Budget {
    parts: usize,
    bytes: usize,
}

impl Budget {
    fn part(&mut self) -> Result<(), ServiceError> {
        self.parts += 1;
        if self.parts > MAX_PARTS {
            return Err(ServiceError::FieldsTooLarge(t_with(
                "form-error-too-many-parts",
                [("max", Arg::from(MAX_PARTS))],
            )));
        }
        Ok(())
    }

    fn text(&mut self, text: String) -> Result<String, ServiceError> {
        self.bytes += text.len();
        if self.bytes > MAX_FIELD_BYTES {
            return Err(ServiceError::FieldsTooLarge(t_with(
                "form-error-fields-too-large",
                [("kib", Arg::from(MAX_FIELD_BYTES / 1024))],
            )));
        }
        Ok(text)
    }
}

async fn read_fields(
    core: &Core,
    parts: &mut impl FormParts,
    blanks: Blanks,
    form: &mut Form,
) -> Result<(), ServiceError> {
    let share = &mut form.share;
    let given = |text: String| (blanks == Blanks::Sent || !text.trim().is_empty()).then_some(text);
    let mut budget = Budget::default();
    while let Some(part) = parts.next_part().await.map_err(|e| {
        ServiceError::BadRequest(t_with("form-error-malformed", [("error", Arg::from(e))]))
    })? {
        // A file is counted as a file (below); an empty file input as a part.
        if part.name.as_deref() != Some("file")
            || part.file_name.as_deref().is_none_or(str::is_empty)
        {
            budget.part()?;
        }
        let mut text_field =
            async |part: FormPart, limit: u64| budget.text(text_field(part, limit).await?);
        match part.name.as_deref() {
            Some("file") if form.files.len() == shares::MOST_FILES => {
                return Err(ServiceError::Invalid(t_with(
                    "form-error-too-many-files",
                    [("max", Arg::from(shares::MOST_FILES))],
                )));
            }
            Some("file")
                if blanks == Blanks::NotGiven
                    && part.file_name.as_deref().is_none_or(str::is_empty) =>
            {
                // A file input left empty: the browser sends a part without a name.
                text_field(part, 0)
                    .await
                    .map_err(|_| ServiceError::Invalid(t("form-error-empty-file-input")))?;
            }
            Some("file") => {
                let name = part
                    .file_name
                    .as_deref()
                    .ok_or_else(|| ServiceError::Invalid(t("form-error-no-filename")))
                    .and_then(|n| FileName::parse(n).map_err(ServiceError::from))?;
                let stream = ReaderStream::with_capacity(part.body, 64 * 1024);
                let sealed = ingest(core, stream).await.map_err(|err| match err {
                    // Which file, when a form holds several.
                    ServiceError::Invalid(why) => ServiceError::Invalid(t_with(
                        "form-error-in-file",
                        [
                            ("name", Arg::from(name.as_str())),
                            ("error", Arg::from(why)),
                        ],
                    )),
                    other => other,
                })?;
                form.files.push((name, sealed));
            }
            Some("recipients") => share.recipients.push(text_field(part, 64 * 1024).await?),
            Some("expires_in_hours") => {
                if let Some(text) = given(text_field(part, 64).await?) {
                    share.expires_in_hours = Some(number("expires_in_hours", &text)?);
                }
            }
            Some("expires_at") => {
                if let Some(text) = given(text_field(part, 64).await?) {
                    let at = DateTime::parse_from_rfc3339(text.trim())
                        .map_err(|_| ServiceError::Invalid(t("form-error-expires-at")))?;
                    share.expires_at = Some(at.with_timezone(&Utc));
                }
            }
            Some("max_downloads") => {
                if let Some(text) = given(text_field(part, 64).await?) {
                    share.max_downloads = Some(number("max_downloads", &text)?);
                }
            }
            Some("password") => {
                if let Some(text) = given(text_field(part, 4096).await?) {
                    share.password = Some(SecretString::from(text));
                }
            }
            Some("message") => {
                if let Some(text) = given(text_field(part, 16 * 1024).await?) {
                    share.message = Some(text);
                }
            }
            Some("verify_recipient") => {
                if let Some(text) = given(text_field(part, 64).await?) {
                    share.verify_recipient = Some(checkbox("verify_recipient", &text)?);
                }
            }
            Some("receipts") => {
                if let Some(text) = given(text_field(part, 64).await?) {
                    share.receipts = Some(checkbox("receipts", &text)?);
                }
            }
            // The web form says it showed the receipts box: unticked, it sends nothing.
            Some("receipts_shown") => {
                if given(text_field(part, 64).await?).is_some() {
                    share.receipts.get_or_insert(false);
                }
            }
            other => {
                let other = other
                    .unwrap_or("(unnamed)")
                    .chars()
                    .take(64)
                    .collect::<String>();
                return Err(ServiceError::Invalid(t_with(
                    "form-error-unknown-field",
                    [("field", Arg::from(other))],
                )));
            }
        }
    }
    Ok(())
}
