//! Request bodies for uploads that stream: poem-openapi's own `Upload` would spool the file to
//! a temporary file first (plaintext on disk), so these wrap poem's streaming extractors and
//! describe themselves to the OpenAPI document by hand.

use chrono::{DateTime, Utc};
use coffer_core::services::files::{self, Sealed};
use coffer_core::services::shares::ShareRequest;
use coffer_core::types::FileName;
use coffer_core::{Core, ServiceError};
use poem::web::Multipart;
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use secrecy::SecretString;
use tokio_util::io::ReaderStream;

fn binary_schema() -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "binary")))
}

fn string_schema() -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
}

/// A whole number of at least 1.
fn count_schema() -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        minimum: Some(1.0),
        ..MetaSchema::new_with_format("integer", "int64")
    }))
}

/// `multipart/form-data` with the file in part `file`.
pub struct UploadForm(pub Multipart);

impl<'a> ApiExtractor<'a> for UploadForm {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some(
                "The file, in the part named `file` (its filename becomes the file's name).",
            ),
            content: vec![MetaMediaType {
                content_type: "multipart/form-data",
                schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                    required: vec!["file"],
                    properties: vec![
                        ("file", binary_schema()),
                        ("recipients", string_schema()),
                        ("expires_in_hours", count_schema()),
                        (
                            "expires_at",
                            MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format(
                                "string",
                                "date-time",
                            ))),
                        ),
                        ("max_downloads", count_schema()),
                        (
                            "password",
                            MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format(
                                "string", "password",
                            ))),
                        ),
                        ("message", string_schema()),
                    ],
                    ..MetaSchema::new("object")
                })),
            }],
            required: true,
        })
    }

    async fn from_request(
        req: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self(
            <Multipart as FromRequest>::from_request(req, body).await?,
        ))
    }
}

/// The raw file bytes as the request body (`curl -T`); any or no `Content-Type`.
pub struct RawBody(pub poem::Body);

impl<'a> ApiExtractor<'a> for RawBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some("The file's bytes."),
            content: vec![MetaMediaType {
                content_type: "application/octet-stream",
                schema: binary_schema(),
            }],
            required: true,
        })
    }

    async fn from_request(
        _req: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self(body.take()?))
    }
}

/// How blank parts are read: the API takes what the client sent; a browser's form sends every
/// field, so there a blank field (and a file input left empty) means "not given".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    Api,
    Page,
}

/// An upload form, read: the file (sealed into quarantine as it streamed in) and the share
/// fields sent with it.
pub struct Upload {
    pub file: Option<(FileName, Sealed)>,
    pub share: ShareRequest,
}

impl Upload {
    /// Destroys the sealed file of a request that failed after its file part.
    pub async fn discard(self, core: &Core) {
        if let Some((_, sealed)) = self.file
            && let Err(err) = files::discard(core, sealed).await
        {
            tracing::warn!(error = %err, "could not discard an abandoned upload");
        }
    }
}

/// Reads a small text part of a form, refusing one longer than `limit` bytes.
pub async fn text_field(field: poem::web::Field, limit: u64) -> Result<String, ServiceError> {
    use tokio::io::AsyncReadExt as _;
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    field
        .into_async_read()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| ServiceError::BadRequest(format!("malformed multipart body: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(ServiceError::Invalid(format!(
            "the `{name}` field is too long"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| ServiceError::Invalid(format!("the `{name}` field is not UTF-8 text")))
}

fn number(name: &str, text: &str) -> Result<i64, ServiceError> {
    text.trim()
        .parse()
        .map_err(|_| ServiceError::Invalid(format!("`{name}` must be a whole number")))
}

/// Recipients may come as repeated fields, or comma-, semicolon- or newline-separated in one.
pub fn split_recipients(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split([',', '\n', ';']))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An upload form that could not be accepted: why, and the share fields read until then (so a
/// page can show the form again as the user filled it in).
pub struct Refused {
    pub error: ServiceError,
    pub share: ShareRequest,
}

/// Reads the rest of an upload form. The `file` part streams into quarantine (never buffered,
/// never on disk in plaintext); on an error nothing is left behind.
pub async fn read_upload(
    core: &Core,
    multipart: &mut Multipart,
    fields: Fields,
) -> Result<Upload, Refused> {
    let mut upload = Upload {
        file: None,
        share: ShareRequest::default(),
    };
    let outcome = read_fields(core, multipart, fields, &mut upload).await;
    upload.share.recipients = split_recipients(&upload.share.recipients);
    match outcome {
        Ok(()) => Ok(upload),
        Err(error) => {
            let share = std::mem::take(&mut upload.share);
            upload.discard(core).await;
            Err(Refused { error, share })
        }
    }
}

/// How many parts an upload form may have, and how many bytes all its parts but the file may
/// hold together: what is not the file is kept in memory while the form is read.
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
            return Err(ServiceError::FieldsTooLarge(format!(
                "an upload form may have at most {MAX_PARTS} parts"
            )));
        }
        Ok(())
    }

    fn text(&mut self, text: String) -> Result<String, ServiceError> {
        self.bytes += text.len();
        if self.bytes > MAX_FIELD_BYTES {
            return Err(ServiceError::FieldsTooLarge(format!(
                "the fields beside the file may hold at most {} KiB together",
                MAX_FIELD_BYTES / 1024
            )));
        }
        Ok(text)
    }
}

async fn read_fields(
    core: &Core,
    multipart: &mut Multipart,
    fields: Fields,
    upload: &mut Upload,
) -> Result<(), ServiceError> {
    let share = &mut upload.share;
    // In a page's form a blank field is no value.
    let given = |text: String| (fields == Fields::Api || !text.trim().is_empty()).then_some(text);
    let mut budget = Budget::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ServiceError::BadRequest(format!("malformed multipart body: {e}")))?
    {
        budget.part()?;
        let mut text_field = async |field: poem::web::Field, limit: u64| {
            budget.text(text_field(field, limit).await?)
        };
        match field.name() {
            Some("file") if upload.file.is_some() => {
                return Err(ServiceError::Invalid(
                    "send one `file` part per upload".into(),
                ));
            }
            Some("file")
                if fields == Fields::Page && field.file_name().is_none_or(str::is_empty) =>
            {
                // A file input left empty: the browser sends a part without a name.
                text_field(field, 0).await.map_err(|_| {
                    ServiceError::Invalid("the file input holds no file name".into())
                })?;
            }
            Some("file") => {
                let name = field
                    .file_name()
                    .ok_or_else(|| ServiceError::Invalid("the `file` part needs a filename".into()))
                    .and_then(|n| FileName::parse(n).map_err(ServiceError::from))?;
                let stream = ReaderStream::with_capacity(field.into_async_read(), 64 * 1024);
                upload.file = Some((name, files::ingest(core, stream).await?));
            }
            Some("recipients") => share.recipients.push(text_field(field, 64 * 1024).await?),
            Some("expires_in_hours") => {
                if let Some(text) = given(text_field(field, 64).await?) {
                    share.expires_in_hours = Some(number("expires_in_hours", &text)?);
                }
            }
            Some("expires_at") => {
                if let Some(text) = given(text_field(field, 64).await?) {
                    let at = DateTime::parse_from_rfc3339(text.trim()).map_err(|_| {
                        ServiceError::Invalid("`expires_at` must be an RFC 3339 time".into())
                    })?;
                    share.expires_at = Some(at.with_timezone(&Utc));
                }
            }
            Some("max_downloads") => {
                if let Some(text) = given(text_field(field, 64).await?) {
                    share.max_downloads = Some(number("max_downloads", &text)?);
                }
            }
            Some("password") => {
                if let Some(text) = given(text_field(field, 4096).await?) {
                    share.password = Some(SecretString::from(text));
                }
            }
            Some("message") => {
                if let Some(text) = given(text_field(field, 16 * 1024).await?) {
                    share.message = Some(text);
                }
            }
            other => {
                let other = other
                    .unwrap_or("(unnamed)")
                    .chars()
                    .take(64)
                    .collect::<String>();
                return Err(ServiceError::Invalid(format!(
                    "unknown form field `{other}`"
                )));
            }
        }
    }
    Ok(())
}
