//! AWS KMS, or a service speaking its API: Coffer's keys are wrapped by `Encrypt` under a
//! symmetric KMS key, with the key's kind and version as encryption context (which KMS's own
//! log, CloudTrail, records with every use).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType};
use zeroize::Zeroize as _;

use super::{AwsKmsSpec, KeyName, KmsError, Wrapped};
use crate::crypto::SecretKey;

pub(super) struct Client {
    kms: aws_sdk_kms::Client,
    /// The configured key's ARN, as KMS names it (an alias resolved).
    arn: String,
    /// How this KMS is named in messages.
    name: String,
}

impl Client {
    pub(super) async fn connect(
        spec: &AwsKmsSpec,
        aws: &[(String, String)],
    ) -> Result<Self, KmsError> {
        let var = |name: &str| aws.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(3));
        if let Some(region) = spec
            .region
            .clone()
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
        {
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(profile) = &spec.profile {
            loader = loader.profile_name(profile);
        } else if let (Some(id), Some(secret)) =
            (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        {
            loader = loader.credentials_provider(aws_sdk_kms::config::Credentials::new(
                id,
                secret,
                var("AWS_SESSION_TOKEN"),
                None,
                "AWS_ACCESS_KEY_ID",
            ));
        }
        if let Some(endpoint) = &spec.endpoint {
            loader = loader.endpoint_url(endpoint.as_str());
        }
        let config = loader.load().await;
        let name = match &spec.endpoint {
            Some(endpoint) => format!("the KMS at {endpoint}"),
            None => "AWS KMS".to_owned(),
        };
        if config.region().is_none() {
            return Err(KmsError::Refused(format!(
                "{name}: no region: add ?region=… to COFFER_KMS or set AWS_REGION"
            )));
        }
        let kms = aws_sdk_kms::Client::new(&config);
        let metadata = describe(&kms, &name, &spec.key).await?;
        if metadata.key_state() != Some(&KeyState::Enabled) {
            return Err(KmsError::Refused(format!(
                "{name}: key {} is not enabled ({:?})",
                spec.key,
                metadata.key_state()
            )));
        }
        // AWS always names both; an absent one (moto leaves the usage out) is the default.
        let usage = metadata
            .key_usage()
            .is_none_or(|u| *u == KeyUsageType::EncryptDecrypt);
        let symmetric = metadata
            .key_spec()
            .is_none_or(|s| *s == KeySpec::SymmetricDefault);
        if !(usage && symmetric) {
            return Err(KmsError::Refused(format!(
                "{name}: key {} is not a symmetric encryption key",
                spec.key
            )));
        }
        let arn = metadata
            .arn()
            .map_or_else(|| metadata.key_id().to_owned(), str::to_owned);
        Ok(Self { kms, arn, name })
    }

    pub(super) async fn probe(&self) -> Result<(), KmsError> {
        describe(&self.kms, &self.name, &self.arn).await.map(|_| ())
    }

    pub(super) fn wrapping_key(&self) -> String {
        format!("aws-kms:{}", self.arn)
    }

    pub(super) async fn wrap(&self, name: KeyName, key: &SecretKey) -> Result<Wrapped, KmsError> {
        let sealed = self
            .kms
            .encrypt()
            .key_id(&self.arn)
            .plaintext(Blob::new(key.expose().to_vec()))
            .encryption_context("coffer-key", name.kind.as_str())
            .encryption_context("coffer-version", name.version.to_string())
            .send()
            .await
            .map_err(|e| classify(&self.name, &format!("wrapping {name}"), &e))?;
        let bytes = sealed
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| KmsError::Refused(format!("{}: Encrypt returned nothing", self.name)))?;
        // The key that actually wrapped it (KMS resolves aliases).
        let arn = sealed.key_id().unwrap_or(&self.arn);
        Ok(Wrapped {
            by: format!("aws-kms:{arn}"),
            bytes,
        })
    }

    pub(super) async fn unwrap(
        &self,
        name: KeyName,
        wrapped: &Wrapped,
    ) -> Result<SecretKey, KmsError> {
        let key_id = wrapped.by.strip_prefix("aws-kms:").ok_or_else(|| {
            KmsError::Refused(format!(
                "{name} is wrapped by `{}`, which is not a KMS key: give this process the COFFER_KMS it was wrapped with",
                wrapped.by
            ))
        })?;
        let opened = self
            .kms
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(wrapped.bytes.clone()))
            .encryption_context("coffer-key", name.kind.as_str())
            .encryption_context("coffer-version", name.version.to_string())
            .send()
            .await
            .map_err(
                |e| match classify(&self.name, &format!("unwrapping {name}"), &e) {
                    KmsError::Refused(what)
                        if matches!(
                            e.code(),
                            Some("InvalidCiphertextException" | "IncorrectKeyException")
                        ) =>
                    {
                        KmsError::Unwrap(format!(
                            "{what}: the wrap was altered, or made by another key"
                        ))
                    }
                    other => other,
                },
            )?;
        let mut plain = opened
            .plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| KmsError::Refused(format!("{}: Decrypt returned nothing", self.name)))?;
        let key = SecretKey::from_slice(&plain);
        plain.zeroize();
        key.ok_or_else(|| KmsError::Unwrap(format!("{name} unwrapped to a key of the wrong size")))
    }
}

async fn describe(
    kms: &aws_sdk_kms::Client,
    name: &str,
    key: &str,
) -> Result<aws_sdk_kms::types::KeyMetadata, KmsError> {
    kms.describe_key()
        .key_id(key)
        .send()
        .await
        .map_err(|e| classify(name, &format!("describing key {key}"), &e))?
        .key_metadata
        .ok_or_else(|| KmsError::Refused(format!("{name}: key {key} has no description")))
}

/// No answer (network, timeout, throttling, KMS's own outage) is worth retrying; anything
/// KMS said no to is a refusal, with its code and message.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    name: &str,
    doing: &str,
    error: &SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> KmsError {
    match error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            KmsError::Unreachable(format!(
                "{name} did not answer ({doing}): {}",
                aws_sdk_kms::error::DisplayErrorContext(error)
            ))
        }
        SdkError::ServiceError(service) => {
            let err = service.err();
            let status = format!("HTTP {}", service.raw().status().as_u16());
            let code = err.code().unwrap_or(&status);
            let what = match err.message() {
                Some(message) => format!("{name} refused {doing}: {code}: {message}"),
                None => format!("{name} refused {doing}: {code}"),
            };
            if matches!(
                code,
                "KMSInternalException"
                    | "DependencyTimeoutException"
                    | "ThrottlingException"
                    | "LimitExceededException"
            ) {
                KmsError::Unreachable(what)
            } else {
                KmsError::Refused(what)
            }
        }
        other => KmsError::Refused(format!(
            "{name} ({doing}): {}",
            aws_sdk_kms::error::DisplayErrorContext(other)
        )),
    }
}
