//! A share request as a client sends it, and the rules it must meet to become a [`ShareSpec`]:
//! written once here, so that the API, the web app and uploads obey the same ones.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};

use crate::text::{Arg, t, t_with};
use crate::types::{EmailAddress, Invalid};
use crate::{Core, ServiceError, ServiceResult, password};

const MAX_RECIPIENTS: usize = 50;
const MAX_DOWNLOADS: i64 = 10_000;
const MAX_MESSAGE_CHARS: usize = 2_000;
const MIN_PASSWORD_CHARS: usize = 8;
/// A share request as a client sent it.
#[derive(Debug, Default, Clone)]
pub struct ShareRequest {
    pub recipients: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub expires_in_hours: Option<i64>,
    pub max_downloads: Option<i64>,
    pub password: Option<SecretString>,
    pub message: Option<String>,
    /// Whether the recipients must prove their address (a code emailed to it) before the
    /// download; `COFFER_REQUIRE_RECIPIENT_VERIFICATION` asks it whatever this says.
    pub verify_recipient: Option<bool>,
    /// Whether the owner is emailed when a recipient completes a download; left out, the
    /// owner's preference decides.
    pub receipts: Option<bool>,
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

/// A checked share request.
#[derive(Debug)]
pub struct ShareSpec {
    pub(super) recipients: Vec<EmailAddress>,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) max_downloads: Option<i32>,
    pub(super) password: Option<SecretString>,
    pub(super) message: Option<String>,
    pub(super) verify_recipient: bool,
    /// `None`: as the owner's preference says.
    pub(super) receipts: Option<bool>,
}

impl ShareSpec {
    pub fn has_recipients(&self) -> bool {
        !self.recipients.is_empty()
    }
}

impl ShareRequest {
    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty()
            && self.expires_at.is_none()
            && self.expires_in_hours.is_none()
            && self.max_downloads.is_none()
            && self.password.is_none()
            && self.message.is_none()
            && self.verify_recipient.is_none()
            && self.receipts.is_none()
    }

    /// The shares this request asks for, under `COFFER_SHARE_MAX_TTL`.
    pub fn resolve(self, core: &Core) -> ServiceResult<ShareSpec> {
        let rules = Rules {
            max_ttl: core.config.share_max_ttl,
            require_verification: core.config.require_recipient_verification,
        };
        Ok(self.parse(rules, Utc::now())?)
    }

    /// The shares asked for along with an upload: none when no share field was given. Every
    /// share field needs someone to share with: a field given without recipients is refused
    /// rather than dropped (a link without recipient is made once the file is uploaded).
    pub fn resolve_for_upload(self, core: &Core) -> ServiceResult<Option<ShareSpec>> {
        if self.recipients.is_empty() {
            if self.is_empty() {
                return Ok(None);
            }
            return Err(ServiceError::Invalid(t("share-error-no-recipient")));
        }
        self.resolve(core).map(Some)
    }

    fn parse(self, rules: Rules, now: DateTime<Utc>) -> Result<ShareSpec, Invalid> {
        let max_ttl = rules.max_ttl;
        let bad = |m: String| Invalid(m);
        let mut recipients: Vec<EmailAddress> = Vec::new();
        for raw in &self.recipients {
            let email = EmailAddress::parse(raw).map_err(|e| {
                let shown = format!("{:?}", raw.chars().take(80).collect::<String>());
                bad(t_with(
                    "share-error-recipient",
                    [("recipient", Arg::from(shown)), ("reason", Arg::from(e.0))],
                ))
            })?;
            if !recipients.contains(&email) {
                recipients.push(email);
            }
        }
        if recipients.len() > MAX_RECIPIENTS {
            return Err(bad(t_with(
                "share-error-too-many-recipients",
                [("max", Arg::from(MAX_RECIPIENTS))],
            )));
        }
        let expires_at = expiry(self.expires_at, self.expires_in_hours, max_ttl, now)?
            .unwrap_or_else(|| now + ttl_cap(max_ttl).min(chrono::Duration::days(7)));
        let max_downloads = self.max_downloads.map(download_limit).transpose()?;
        let password = self.password.map(link_password).transpose()?.flatten();
        let message = match self
            .message
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
        {
            Some(m) if m.chars().count() > MAX_MESSAGE_CHARS => {
                return Err(bad(t_with(
                    "share-error-message-too-long",
                    [("max", Arg::from(MAX_MESSAGE_CHARS))],
                )));
            }
            Some(m)
                if m.chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
            {
                return Err(bad(t("share-error-message-control")));
            }
            other => other,
        };
        let verify_recipient = verification(
            self.verify_recipient.unwrap_or(false),
            !recipients.is_empty(),
            rules.require_verification,
        )?;
        Ok(ShareSpec {
            recipients,
            expires_at,
            max_downloads,
            password,
            message,
            verify_recipient,
            receipts: self.receipts,
        })
    }
}

/// What the server's configuration asks of every share.
#[derive(Debug, Clone, Copy)]
struct Rules {
    /// `COFFER_SHARE_MAX_TTL`.
    max_ttl: std::time::Duration,
    /// `COFFER_REQUIRE_RECIPIENT_VERIFICATION`.
    require_verification: bool,
}

/// Whether a share's recipient must verify: when asked, or always under the admin's policy. A
/// link without recipient cannot be verified (there is no address to send a code to), so it is
/// refused where verification is asked for or required.
pub(super) fn verification(
    asked: bool,
    has_recipient: bool,
    required: bool,
) -> Result<bool, Invalid> {
    match (asked || required, has_recipient) {
        (true, false) if required => Err(Invalid(t("share-error-verify-policy"))),
        (true, false) => Err(Invalid(t("share-error-verify-no-recipient"))),
        (verify, _) => Ok(verify),
    }
}

/// `COFFER_SHARE_MAX_TTL` as a duration.
fn ttl_cap(max_ttl: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(max_ttl).unwrap_or(chrono::Duration::days(7))
}

/// The expiry asked for, as an absolute time or hours from `now` (not both), within
/// `COFFER_SHARE_MAX_TTL` from `now`; `None` when neither was given.
pub(super) fn expiry(
    at: Option<DateTime<Utc>>,
    hours: Option<i64>,
    max_ttl: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Invalid> {
    let bad = |m: String| Invalid(m);
    let cap = ttl_cap(max_ttl);
    let expires_at = match (at, hours) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(bad(t("share-error-expiry-both")));
        }
        (Some(at), None) => at,
        (None, Some(hours)) if hours > 0 && hours <= cap.num_hours().max(1) => {
            now + chrono::Duration::hours(hours)
        }
        (None, Some(hours)) if hours <= 0 => {
            return Err(bad(t("share-error-expiry-hours")));
        }
        (None, Some(_)) => {
            return Err(bad(t_with(
                "share-error-expiry-too-long",
                [("hours", Arg::from(cap.num_hours()))],
            )));
        }
    };
    if expires_at <= now {
        return Err(bad(t("share-error-expiry-past")));
    }
    if expires_at > now + cap + chrono::Duration::minutes(1) {
        return Err(bad(t_with(
            "share-error-expiry-max-ttl",
            [("hours", Arg::from(cap.num_hours()))],
        )));
    }
    Ok(Some(expires_at))
}

/// A download limit: 1 to [`MAX_DOWNLOADS`].
pub(super) fn download_limit(n: i64) -> Result<i32, Invalid> {
    match i32::try_from(n) {
        Ok(n) if (1..=MAX_DOWNLOADS).contains(&i64::from(n)) => Ok(n),
        _ => Err(Invalid(t_with(
            "share-error-max-downloads",
            [("max", Arg::from(MAX_DOWNLOADS))],
        ))),
    }
}

/// A link's password as given: an empty one is none; otherwise 8 characters at least.
pub(super) fn link_password(p: SecretString) -> Result<Option<SecretString>, Invalid> {
    if p.expose_secret().is_empty() {
        return Ok(None);
    }
    if p.expose_secret().chars().count() < MIN_PASSWORD_CHARS {
        return Err(Invalid(t_with(
            "share-error-password-too-short",
            [("min", Arg::from(MIN_PASSWORD_CHARS))],
        )));
    }
    if p.expose_secret().len() > password::MAX_LEN {
        return Err(Invalid(t("share-error-password-too-long")));
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rules(max_ttl: Duration, require_verification: bool) -> Rules {
        Rules {
            max_ttl,
            require_verification,
        }
    }

    fn request() -> ShareRequest {
        ShareRequest {
            recipients: vec![
                "bob@example.org".into(),
                "BOB@example.org".into(),
                "carol@example.org".into(),
            ],
            ..ShareRequest::default()
        }
    }

    #[test]
    fn parses_and_dedupes_recipients_with_a_default_expiry() {
        let now = Utc::now();
        let spec = request()
            .parse(rules(Duration::from_secs(7 * 86_400), false), now)
            .expect("valid");
        assert_eq!(spec.recipients.len(), 2);
        assert_eq!(spec.expires_at, now + chrono::Duration::days(7));
    }

    #[test]
    fn refuses_expiry_in_the_past_or_past_the_cap_and_bad_limits() {
        let now = Utc::now();
        let ttl = Duration::from_secs(48 * 3600);
        let cases = [
            ShareRequest {
                expires_at: Some(now - chrono::Duration::minutes(1)),
                ..request()
            },
            ShareRequest {
                expires_at: Some(now + chrono::Duration::hours(49)),
                ..request()
            },
            ShareRequest {
                expires_in_hours: Some(49),
                ..request()
            },
            ShareRequest {
                expires_in_hours: Some(0),
                ..request()
            },
            ShareRequest {
                expires_in_hours: Some(-5),
                ..request()
            },
            ShareRequest {
                expires_in_hours: Some(1),
                expires_at: Some(now + chrono::Duration::hours(1)),
                ..request()
            },
            ShareRequest {
                max_downloads: Some(0),
                ..request()
            },
            ShareRequest {
                max_downloads: Some(i64::MAX),
                ..request()
            },
            ShareRequest {
                password: Some(SecretString::from("short")),
                ..request()
            },
            ShareRequest {
                message: Some("x".repeat(3000)),
                ..request()
            },
            ShareRequest {
                message: Some("bell\u{7}".into()),
                ..request()
            },
            ShareRequest {
                recipients: vec!["bob@example.org\r\nBcc: eve@example.org".into()],
                ..request()
            },
        ];
        for case in cases {
            let shown = format!("{case:?}");
            assert!(case.parse(rules(ttl, false), now).is_err(), "{shown}");
        }
        assert!(
            ShareRequest {
                expires_in_hours: Some(48),
                ..request()
            }
            .parse(rules(ttl, false), now)
            .is_ok()
        );
    }

    #[test]
    fn verification_is_asked_or_required_and_needs_a_recipient() {
        let ttl = Duration::from_secs(48 * 3600);
        let verifies = |verify: Option<bool>, recipients: bool, policy: bool| {
            let base = if recipients {
                request()
            } else {
                ShareRequest::default()
            };
            let asked = ShareRequest {
                verify_recipient: verify,
                ..base
            };
            asked
                .parse(rules(ttl, policy), Utc::now())
                .map(|s| s.verify_recipient)
                .ok()
        };
        assert_eq!(verifies(Some(true), true, false), Some(true));
        assert_eq!(verifies(None, true, false), Some(false));
        // The policy wins over a share that says no.
        assert_eq!(verifies(Some(false), true, true), Some(true));
        // No recipient, no address to send a code to.
        assert_eq!(verifies(Some(true), false, false), None);
        assert_eq!(verifies(None, false, true), None);
    }
}
