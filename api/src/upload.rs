//! Request bodies for uploads that stream: poem-openapi's own `Upload` would spool the file to
//! a temporary file first (plaintext on disk), so these wrap poem's streaming extractors and
//! describe themselves to the OpenAPI document by hand. Core reads the form itself
//! (`services::files::upload_form`); [`Parts`] hands it the parts.

use coffer_core::services::files::{FormPart, FormParts};
use poem::web::Multipart;
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

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
                "The files, each in a part named `file` (its filename becomes the file's name): \
                 one, or up to 100, which recipients get as one share of all of them.",
            ),
            content: vec![MetaMediaType {
                content_type: "multipart/form-data",
                schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                    required: vec!["file"],
                    properties: vec![
                        (
                            "file",
                            MetaSchemaRef::Inline(Box::new(MetaSchema {
                                items: Some(Box::new(binary_schema())),
                                min_items: Some(1),
                                max_items: Some(coffer_core::services::shares::MOST_FILES),
                                ..MetaSchema::new("array")
                            })),
                        ),
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

/// An upload form's parts as core reads them: poem's streaming multipart reader.
pub struct Parts(pub Multipart);

impl FormParts for Parts {
    async fn next_part(&mut self) -> Result<Option<FormPart>, String> {
        let field = self.0.next_field().await.map_err(|e| e.to_string())?;
        Ok(field.map(|field| FormPart {
            name: field.name().map(str::to_owned),
            file_name: field.file_name().map(str::to_owned),
            body: Box::pin(field.into_async_read()),
        }))
    }
}
