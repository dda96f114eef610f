//! Codes of the second factor: checking one (and using it up), and the recovery codes.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, Condition, EntityTrait as _, QueryFilter as _};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use entity::{mfa_recovery_code, mfa_totp};

use super::{secret_of, totp};
use crate::{Core, ServiceResult};

/// Which second factor a code proved, when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Totp,
    RecoveryCode,
}

impl Proof {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::RecoveryCode => "recovery_code",
        }
    }
}

/// Checks a code of `user_id`'s second factor, and uses it up: a TOTP code's step (and every
/// earlier one) is never accepted again, a recovery code works once. `None` for a wrong, used
/// or replayed code.
pub(crate) async fn accept(
    core: &Core,
    user_id: Uuid,
    email: &str,
    code: &str,
) -> ServiceResult<Option<Proof>> {
    let Some(row) = mfa_totp::Entity::find_by_id(user_id)
        .filter(mfa_totp::Column::ConfirmedAt.is_not_null())
        .one(&core.db)
        .await?
    else {
        return Ok(None);
    };
    let typed = digits(code);
    if typed.len() == 6 && typed.bytes().all(|b| b.is_ascii_digit()) {
        let secret = secret_of(core, &row).await?;
        let Some(step) = totp(&secret, email)?.check(&typed, now_secs()) else {
            return Ok(None);
        };
        let step = step_number(step);
        let _gate = core.write_gate.enter().await;
        let taken = mfa_totp::Entity::update_many()
            .col_expr(mfa_totp::Column::LastStep, Expr::value(step))
            .filter(mfa_totp::Column::UserId.eq(user_id))
            .filter(
                Condition::any()
                    .add(mfa_totp::Column::LastStep.is_null())
                    .add(mfa_totp::Column::LastStep.lt(step)),
            )
            .exec(&core.db)
            .await?
            .rows_affected;
        return Ok((taken == 1).then_some(Proof::Totp));
    }
    let _gate = core.write_gate.enter().await;
    let used = mfa_recovery_code::Entity::update_many()
        .col_expr(mfa_recovery_code::Column::UsedAt, Expr::value(Utc::now()))
        .filter(mfa_recovery_code::Column::CodeHash.eq(code_hash(code)))
        .filter(mfa_recovery_code::Column::UserId.eq(user_id))
        .filter(mfa_recovery_code::Column::UsedAt.is_null())
        .exec(&core.db)
        .await?
        .rows_affected;
    Ok((used == 1).then_some(Proof::RecoveryCode))
}

/// What was typed, without the spaces and dashes people add.
pub(super) fn digits(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_lowercase()
}

pub(super) fn code_hash(code: &str) -> Vec<u8> {
    Sha256::digest(digits(code).as_bytes()).to_vec()
}

/// A recovery code: ten characters of base32 (50 bits), shown as `abcde-fghij`.
pub(super) fn recovery_code() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let chars: String = (0..10)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

pub(super) fn now_secs() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

pub(super) fn step_number(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 secret "12345678901234567890", 8 digits.
    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        let totp = totp_rs::Builder::new()
            .with_secret(b"12345678901234567890".to_vec())
            .with_digits(8)
            .with_account_name("rfc")
            .build()
            .expect("totp");
        for (time, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp.generate(time).to_string(), code, "at {time}");
            assert_eq!(totp.check(code, time), Some(time / 30), "at {time}");
        }
    }

    #[test]
    fn recovery_codes_are_read_as_typed() {
        let code = recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(
            code_hash(&code),
            code_hash(&code.to_uppercase().replace('-', " "))
        );
    }
}
