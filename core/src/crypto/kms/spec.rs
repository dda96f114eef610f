//! What `COFFER_KMS` says: which HSM or KMS, and which of its keys.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use url::Url;

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
pub(super) fn attributes(text: &str, separator: char) -> Result<Vec<(String, String)>, String> {
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
