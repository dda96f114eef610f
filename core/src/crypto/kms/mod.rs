//! Master keys held by an HSM (PKCS#11) or a key management service (AWS KMS, or a service
//! speaking its API) instead of a keyring file.
//!
//! Two levels (docs/SECURITY.md): the HSM or KMS wraps each of Coffer's master-key versions
//! (and audit keys) under a key that never leaves it; the database keeps them wrapped
//! (`kms_wrapped_keys`). A process unwraps them once, at start-up or when another process adds
//! a version, and holds them in locked memory; data keys are wrapped and opened in the process
//! as with a keyring file, so no download waits for the HSM or KMS.

mod aws;
mod pkcs11;
mod spec;

use std::fmt;

use spec::attributes;
pub use spec::{AwsKmsSpec, KmsSpec, Pkcs11Spec};

use super::SecretKey;

/// Which key a wrap holds, bound into it (AES-GCM's associated data, KMS's encryption
/// context): a wrap moved to another version's row does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyName {
    pub kind: KeyKind,
    pub version: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Master,
    Audit,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Audit => "audit",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "master" => Some(Self::Master),
            "audit" => Some(Self::Audit),
            _ => None,
        }
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key version {}", self.kind.as_str(), self.version)
    }
}

/// A key wrapped by the HSM or KMS: by which of its keys, and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// The wrapping key as stored beside the wrap (`pkcs11:token=…;object=…` or
    /// `aws-kms:<key ARN>`).
    pub by: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KmsError {
    /// The HSM or KMS did not answer (network, module, token absent): worth retrying.
    #[error("{0}")]
    Unreachable(String),
    /// It answered no: wrong PIN or credentials, no such key, a key without the right use.
    #[error("{0}")]
    Refused(String),
    /// The wrap does not open under the key it names: altered, or another key's.
    #[error("{0}")]
    Unwrap(String),
}

impl KmsError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

/// A call to the HSM or KMS, its type erased.
type Call<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, KmsError>> + Send + 'a>>;

/// A connection to the HSM or KMS.
pub struct Kms {
    spec: KmsSpec,
    backend: Backend,
    /// Why the last call found it unreachable, until a call succeeds again: `/readyz` says so.
    down: std::sync::Mutex<Option<String>>,
}

enum Backend {
    Pkcs11(pkcs11::Hsm),
    Aws(aws::Client),
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kms({self})")
    }
}

impl fmt::Display for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.spec, f)
    }
}

impl Kms {
    /// Opens the module and signs in to the token, or builds the KMS client, and checks that
    /// the key new wraps use is there and may wrap. `aws` are the standard `AWS_*` variables.
    pub async fn connect(spec: &KmsSpec, aws: &[(String, String)]) -> Result<Self, KmsError> {
        let backend = match spec {
            KmsSpec::Pkcs11(spec) => Backend::Pkcs11(pkcs11::Hsm::open(spec.clone()).await?),
            KmsSpec::AwsKms(spec) => {
                let connecting: Call<'_, aws::Client> = Box::pin(aws::Client::connect(spec, aws));
                Backend::Aws(connecting.await?)
            }
        };
        Ok(Self {
            spec: spec.clone(),
            backend,
            down: std::sync::Mutex::default(),
        })
    }

    /// Why the HSM or KMS did not answer the last call, if it did not.
    pub fn down(&self) -> Option<String> {
        self.down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Notes whether a call reached the HSM or KMS.
    fn note<T>(&self, result: Result<T, KmsError>) -> Result<T, KmsError> {
        let reached = match &result {
            Err(KmsError::Unreachable(why)) => Some(why.clone()),
            _ => None,
        };
        let mut down = self
            .down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(why) = reached {
            *down = Some(why);
        } else if down.is_some() {
            *down = None;
        }
        result
    }

    /// Asks the HSM or KMS whether the configured key is there (a key lookup on the token, or
    /// KMS's `DescribeKey`): what `/readyz` does while the last call found it unreachable.
    pub async fn probe(&self) -> Result<(), KmsError> {
        let probing: Call<'_, ()> = match &self.backend {
            Backend::Pkcs11(hsm) => Box::pin(hsm.probe()),
            Backend::Aws(client) => Box::pin(client.probe()),
        };
        self.note(probing.await)
    }

    pub fn spec(&self) -> &KmsSpec {
        &self.spec
    }

    /// How the key new wraps use is recorded beside them.
    pub fn wrapping_key(&self) -> String {
        match &self.backend {
            Backend::Pkcs11(hsm) => hsm.wrapping_key(),
            Backend::Aws(client) => client.wrapping_key(),
        }
    }

    /// Wraps `key` under the configured HSM or KMS key.
    pub async fn wrap(&self, name: KeyName, key: &SecretKey) -> Result<Wrapped, KmsError> {
        // Boxed and erased: the AWS SDK's futures are too deep a type to nest in every job
        // that might add a version.
        let wrapping: Call<'_, Wrapped> = match &self.backend {
            Backend::Pkcs11(hsm) => Box::pin(hsm.wrap(name, key)),
            Backend::Aws(client) => Box::pin(client.wrap(name, key)),
        };
        self.note(wrapping.await)
    }

    /// Opens a wrap made by [`Kms::wrap`] under the key it names (which may be an older one
    /// than the configured key: rewrapping under the new one is `coffer keys kms-rewrap`).
    pub async fn unwrap(&self, name: KeyName, wrapped: &Wrapped) -> Result<SecretKey, KmsError> {
        let unwrapping: Call<'_, SecretKey> = match &self.backend {
            Backend::Pkcs11(hsm) => Box::pin(hsm.unwrap(name, wrapped)),
            Backend::Aws(client) => Box::pin(client.unwrap(name, wrapped)),
        };
        self.note(unwrapping.await)
    }
}

/// The associated data of a wrap: what it holds, and the version.
fn associated_data(name: KeyName) -> String {
    format!("coffer {} key version {}", name.kind.as_str(), name.version)
}
