//! Domain values parsed once at the edge and trusted inside.

use std::fmt;

pub use entity::{FileStatus, KeyState, Role, RotationState, ShareState};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::text::{Arg, t, t_with};

/// Why a value was refused, worded for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(message.into())
}

/// A syntactically plausible, normalised (trimmed, lower-case) email address without any
/// character that could inject a header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = raw.trim().to_lowercase();
        if email.len() > 254 {
            return Err(invalid(t("email-error-too-long")));
        }
        if email
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>,;\"()[]\\".contains(c))
        {
            return Err(invalid(t("email-error-characters")));
        }
        let (local, domain) = email
            .rsplit_once('@')
            .ok_or_else(|| invalid(t("email-error-no-at")))?;
        if local.is_empty() || local.len() > 64 || domain.is_empty() || local.contains('@') {
            return Err(invalid(t("email-error-parts")));
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err(invalid(t("email-error-domain")));
        }
        if email.parse::<lettre::Address>().is_err() {
            return Err(invalid(t("email-error-invalid")));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file's display name: no path, no control, invisible or bidi-override characters, at most
/// 255 bytes, in NFC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    pub const MAX_BYTES: usize = 255;

    /// Names are stored in Unicode NFC, so that the same name typed on different systems (macOS
    /// decomposes accents) is one name.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        use unicode_normalization::UnicodeNormalization as _;
        let normalized: String = raw.nfc().collect();
        let name = normalized.as_str();
        if name.trim().is_empty() {
            return Err(invalid(t("name-error-empty")));
        }
        // Windows drops a trailing dot or space when it saves the file: `invoice.bat.` would
        // arrive as `invoice.bat`, past every check of the name as given.
        if name.ends_with(['.', ' ']) || name.ends_with(char::is_whitespace) {
            return Err(invalid(t("name-error-trailing-dot-or-space")));
        }
        if name.starts_with(char::is_whitespace) {
            return Err(invalid(t("name-error-leading-space")));
        }
        if name.len() > Self::MAX_BYTES {
            return Err(invalid(t_with(
                "name-error-too-long",
                [("max", Arg::from(Self::MAX_BYTES))],
            )));
        }
        if name.contains(['/', '\\']) {
            return Err(invalid(t("name-error-path")));
        }
        if name == "." || name == ".." {
            return Err(invalid(t("name-error-dots")));
        }
        if name.chars().any(|c| c.is_control() || is_hidden(c)) {
            return Err(invalid(t("name-error-hidden-characters")));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Lower-case extension after the last dot, if any. A name with nothing before its dot
    /// (`.hta`) has that suffix as its extension too: Windows opens it by it.
    pub fn extension(&self) -> Option<String> {
        let (_, ext) = self.0.rsplit_once('.')?;
        (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
    }
}

/// Characters that show as nothing or reorder what is shown, and so could hide part of a
/// name: Unicode format characters (category Cf: text-direction controls, zero-width
/// characters, tag characters) and every other default-ignorable code point.
fn is_hidden(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};
    c.general_category() == GeneralCategory::Format || is_default_ignorable(c)
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 15).
fn is_default_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `1.5 MB`-style sizes (decimal units, as file managers show them).
/// Who may create an account (`COFFER_SIGNUP`, or the admin's setting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignupPolicy {
    /// Anyone.
    Open,
    /// Addresses at these domains (lowercase), and holders of an invitation.
    Domains(Vec<String>),
    /// Holders of an invitation only.
    Invite,
}

impl SignupPolicy {
    /// `open`, `invite`, or `domains:a.org,b.org`.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        match raw {
            "open" => return Ok(Self::Open),
            "invite" => return Ok(Self::Invite),
            _ => {}
        }
        let expected = || invalid(t("signup-error-policy-syntax"));
        let list = raw.strip_prefix("domains:").ok_or_else(expected)?;
        let mut domains = Vec::new();
        for domain in list.split(',').map(|d| d.trim().to_lowercase()) {
            let plausible = !domain.is_empty()
                && domain.len() <= 253
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !plausible {
                return Err(invalid(t_with(
                    "signup-error-policy-domain",
                    [("domain", Arg::from(domain))],
                )));
            }
            if !domains.contains(&domain) {
                domains.push(domain);
            }
        }
        Ok(Self::Domains(domains))
    }

    /// Whether `email` may sign up without an invitation.
    pub fn admits(&self, email: &EmailAddress) -> bool {
        match self {
            Self::Open => true,
            Self::Invite => false,
            Self::Domains(domains) => email
                .as_str()
                .rsplit_once('@')
                .is_some_and(|(_, domain)| domains.iter().any(|d| d == domain)),
        }
    }
}

impl fmt::Display for SignupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("open"),
            Self::Invite => f.write_str("invite"),
            Self::Domains(domains) => write!(f, "domains:{}", domains.join(",")),
        }
    }
}

/// A bearer secret (session or share token): 32 random bytes, base64url. Only its SHA-256
/// is ever stored; `Debug` does not print it.
pub struct Token(String);

impl Token {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = Self(URL_SAFE_NO_PAD.encode(bytes));
        zeroize::Zeroize::zeroize(&mut bytes);
        token
    }

    /// Accepts only the shape Coffer issues, so junk never reaches the database.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signup_policies_parse_and_admit() {
        let email = |e: &str| EmailAddress::parse(e).expect("email");
        assert_eq!(SignupPolicy::parse("open"), Ok(SignupPolicy::Open));
        assert_eq!(SignupPolicy::parse(" invite "), Ok(SignupPolicy::Invite));
        let domains = SignupPolicy::parse("domains:Clinic.example, law.example").expect("domains");
        assert_eq!(domains.to_string(), "domains:clinic.example,law.example");
        assert!(domains.admits(&email("ann@clinic.example")));
        assert!(!domains.admits(&email("ann@clinic.example.evil.org")));
        assert!(!domains.admits(&email("ann@sub.clinic.example")));
        assert!(!SignupPolicy::Invite.admits(&email("ann@clinic.example")));
        for bad in [
            "",
            "closed",
            "domains:",
            "domains:a..",
            "domains:nodot",
            "domains:a.org,@b.org",
        ] {
            assert!(SignupPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_are_normalised_and_header_safe() {
        assert_eq!(
            EmailAddress::parse(" Ann@Example.ORG ")
                .expect("ok")
                .as_str(),
            "ann@example.org"
        );
        for bad in [
            "",
            "ann",
            "@x.org",
            "ann@",
            "a b@x.org",
            "ann@x.org\r\nBcc: eve@x.org",
            "ann@x..org",
            "<ann@x.org>",
            "a@b@c.org",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_names_refuse_paths_and_controls() {
        assert_eq!(
            FileName::parse("report 2026.PDF")
                .expect("ok")
                .extension()
                .as_deref(),
            Some("pdf")
        );
        assert_eq!(
            FileName::parse(".hta").expect("ok").extension().as_deref(),
            Some("hta"),
            "a leading dot's suffix is an extension like any other"
        );
        for bad in [
            "invoice.bat.",
            "invoice.bat ",
            "invoice.bat\u{3000}",
            " invoice.pdf",
            "a.",
            "report\u{2064}.pdf",  // invisible plus (Cf)
            "report\u{E0041}.pdf", // a tag character
            "report\u{180E}.pdf",  // Mongolian vowel separator (Cf)
            "report\u{034F}.pdf",  // combining grapheme joiner (default-ignorable)
            "report\u{FE0F}.pdf",  // variation selector (default-ignorable)
            "report\u{3164}.pdf",  // Hangul filler (default-ignorable)
            "",
            "  ",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "..",
            "a\nb",
            "a\u{202E}fdp.exe",
            "report\u{200B}.pdf",
            "\u{FEFF}notes.txt",
            &"x".repeat(256),
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
        let composed = FileName::parse("caf\u{E9}.txt").expect("ok");
        let decomposed = FileName::parse("cafe\u{301}.txt").expect("ok");
        assert_eq!(composed, decomposed, "NFC and NFD spellings are one name");
        assert!(
            FileName::parse("<img src=x onerror=alert(1)>.txt").is_ok(),
            "escaped on output, not refused"
        );
    }

    #[test]
    fn tokens_have_one_shape_and_hide_in_debug() {
        let token = Token::generate();
        assert_eq!(token.expose().len(), 43);
        assert!(Token::parse(token.expose()).is_some());
        assert!(Token::parse("short").is_none());
        assert!(!format!("{token:?}").contains(token.expose()));
        assert_eq!(token.hash().len(), 32);
    }
}
