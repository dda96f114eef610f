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

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use url::Url;

use super::SecretKey;

/// What `COFFER_KMS` names.
#[derive(Debug, Clone)]
pub enum KmsSpec {
    Pkcs11(Pkcs11Spec),
    AwsKms(AwsKmsSpec),
}

/// `pkcs11:token=<label>;object=<key label>?module-path=<library>` (RFC 7512), the PIN from
/// `COFFER_KMS_PIN(_FILE)`.
#[derive(Debug, Clone)]
pub struct Pkcs11Spec {
    pub module: PathBuf,
    pub token: String,
    /// The label of the AES key new wraps use.
    pub key: String,
    pub pin: Option<SecretString>,
}

/// `aws-kms:<key ARN, alias/name or key id>?region=<region>&endpoint=<URL>&profile=<name>`.
#[derive(Debug, Clone)]
pub struct AwsKmsSpec {
    pub key: String,
    pub region: Option<String>,
    pub endpoint: Option<Url>,
    pub profile: Option<String>,
}

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

impl fmt::Display for KmsSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pkcs11(spec) => write!(
                f,
                "PKCS#11 token \"{}\", key \"{}\" ({})",
                spec.token,
                spec.key,
                spec.module.display()
            ),
            Self::AwsKms(spec) => {
                write!(f, "AWS KMS key {}", spec.key)?;
                if let Some(endpoint) = &spec.endpoint {
                    write!(f, " at {endpoint}")?;
                }
                Ok(())
            }
        }
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

impl KmsSpec {
    /// Parses `COFFER_KMS`; `pin` is `COFFER_KMS_PIN(_FILE)`. The error says what is wrong, to
    /// follow the variable's name.
    pub fn parse(text: &str, pin: Option<SecretString>) -> Result<Self, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("pkcs11:") {
            return Pkcs11Spec::parse(rest, pin).map(Self::Pkcs11);
        }
        if pin.is_some() {
            return Err("COFFER_KMS_PIN is for a PKCS#11 token only".into());
        }
        if let Some(rest) = text.strip_prefix("aws-kms:") {
            return AwsKmsSpec::parse(rest).map(Self::AwsKms);
        }
        Err("pkcs11:token=…;object=…?module-path=… or aws-kms:<key ARN or alias/name>".into())
    }
}

/// `a=1;b=2` (or `&`-separated) attributes, percent-decoded.
fn attributes(text: &str, separator: char) -> Result<Vec<(String, String)>, String> {
    text.split(separator)
        .filter(|a| !a.is_empty())
        .map(|attribute| {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| format!("`{attribute}` is not name=value"))?;
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| format!("the value of {name} is not UTF-8"))?;
            Ok((name.to_owned(), value.into_owned()))
        })
        .collect()
}

impl Pkcs11Spec {
    fn parse(text: &str, pin: Option<SecretString>) -> Result<Self, String> {
        let (path, query) = text.split_once('?').unwrap_or((text, ""));
        let (mut module, mut token, mut key) = (None, None, None);
        for (name, value) in attributes(path, ';')?
            .into_iter()
            .chain(attributes(query, '&')?)
        {
            match name.as_str() {
                "token" => token = Some(value),
                "object" => key = Some(value),
                "module-path" => module = Some(PathBuf::from(value)),
                "type" if value == "secret-key" => {}
                "pin-value" | "pin-source" => {
                    return Err(
                        "give the PIN in COFFER_KMS_PIN_FILE (or COFFER_KMS_PIN), not in the URI"
                            .into(),
                    );
                }
                other => return Err(format!("`{other}` is not an attribute Coffer reads")),
            }
        }
        let missing = |what: &str| format!("pkcs11: URI without {what}");
        Ok(Self {
            module: module.ok_or_else(|| missing("module-path (the PKCS#11 library)"))?,
            token: token.ok_or_else(|| missing("token (the token's label)"))?,
            key: key.ok_or_else(|| missing("object (the AES key's label)"))?,
            pin,
        })
    }
}

impl AwsKmsSpec {
    fn parse(text: &str) -> Result<Self, String> {
        let (key, query) = text.split_once('?').unwrap_or((text, ""));
        if key.trim().is_empty() {
            return Err("aws-kms: without a key (its ARN, alias/name or id)".into());
        }
        let mut spec = Self {
            key: key.trim().to_owned(),
            region: None,
            endpoint: None,
            profile: None,
        };
        for (name, value) in attributes(query, '&')? {
            match name.as_str() {
                "region" => spec.region = Some(value),
                "profile" => spec.profile = Some(value),
                "endpoint" => {
                    let url = Url::parse(&value)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https"))
                        .ok_or_else(|| format!("endpoint `{value}` is not an http(s) URL"))?;
                    spec.endpoint = Some(url);
                }
                other => return Err(format!("`{other}` is not a parameter Coffer reads")),
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pkcs11_uri_names_module_token_and_key() {
        let spec = KmsSpec::parse(
            "pkcs11:token=Coffer%20HSM;object=coffer-kek-2?module-path=/usr/lib/softhsm/libsofthsm2.so",
            Some(SecretString::from("1234")),
        )
        .expect("parses");
        let KmsSpec::Pkcs11(spec) = spec else {
            panic!("a PKCS#11 spec")
        };
        assert_eq!(spec.token, "Coffer HSM");
        assert_eq!(spec.key, "coffer-kek-2");
        assert_eq!(
            spec.module,
            PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")
        );
    }

    #[test]
    fn an_aws_spec_takes_an_arn_and_its_parameters() {
        let spec = KmsSpec::parse(
            "aws-kms:arn:aws:kms:eu-west-1:111122223333:alias/coffer?region=eu-west-1&endpoint=http://127.0.0.1:4566",
            None,
        )
        .expect("parses");
        let KmsSpec::AwsKms(spec) = spec else {
            panic!("an AWS spec")
        };
        assert_eq!(spec.key, "arn:aws:kms:eu-west-1:111122223333:alias/coffer");
        assert_eq!(spec.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            spec.endpoint.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:4566/")
        );
    }

    #[test]
    fn refusals_say_what_is_missing() {
        for (text, expected) in [
            ("vault:x", "pkcs11:token="),
            ("pkcs11:token=t;object=k", "module-path"),
            ("pkcs11:object=k?module-path=/m.so", "token"),
            ("pkcs11:token=t?module-path=/m.so", "object"),
            (
                "pkcs11:token=t;object=k?module-path=/m.so&pin-value=1234",
                "COFFER_KMS_PIN_FILE",
            ),
            ("aws-kms:", "without a key"),
            ("aws-kms:alias/c?endpoint=ftp://x", "not an http(s) URL"),
            ("aws-kms:alias/c?colour=blue", "colour"),
        ] {
            let err = KmsSpec::parse(text, None).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
        let err = KmsSpec::parse("aws-kms:alias/c", Some(SecretString::from("1")))
            .expect_err("a PIN is for a token");
        assert!(err.contains("PKCS#11"), "{err}");
    }
}
