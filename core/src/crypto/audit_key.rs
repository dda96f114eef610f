//! The audit key: a secret kept with the master keys (never in the database) from which two
//! keys are derived, one to MAC every audit event as it is written and one to sign the
//! checkpoints of the chain (Ed25519, so that anyone with the public half can check one).

use std::fmt;

use ed25519_dalek::{Signer as _, Verifier as _};

use super::SecretKey;

/// One version of the audit key, with its derived keys.
#[derive(Clone)]
pub struct AuditKey {
    version: i32,
    /// What the others derive from: kept to move the key between a keyring and an HSM or KMS.
    secret: SecretKey,
    mac: SecretKey,
    signing: ed25519_dalek::SigningKey,
}

impl AuditKey {
    /// Derives the MAC key and the signing key of `version` from its secret.
    pub fn derive(version: i32, secret: &SecretKey) -> Self {
        let mac = SecretKey::from_bytes(secret.mac(&[b"coffer audit event mac v1"]));
        let mut seed = secret.mac(&[b"coffer audit checkpoint signing v1"]);
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        zeroize::Zeroize::zeroize(&mut seed);
        Self {
            version,
            secret: secret.clone(),
            mac,
            signing,
        }
    }

    pub fn version(&self) -> i32 {
        self.version
    }

    /// The secret this version was derived from.
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// HMAC-SHA256 of `message` under the event MAC key.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        self.mac.mac(&[message])
    }

    /// Whether `tag` is the MAC of `message`, compared in constant time.
    pub fn mac_matches(&self, message: &[u8], tag: &[u8]) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.mac(message)[..], tag).into()
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The public half of the signing key: published, and recorded in the database as this
    /// version's check value (it reveals nothing of the secret).
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key())
    }
}

/// Whether `signature` is a valid Ed25519 signature of `message` under `public_key` (strict
/// verification: no malleable signatures, no weak keys).
pub fn signature_is_valid(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok() && key.verify(message, &signature).is_ok()
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AuditKey(v{}, public:{})",
            self.version,
            &self.public_key_hex()[..16]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_stable_and_distinct_per_secret() {
        let secret = SecretKey::from_bytes([7; 32]);
        let a = AuditKey::derive(1, &secret);
        let b = AuditKey::derive(1, &secret);
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.mac(b"event"), b.mac(b"event"));
        let other = AuditKey::derive(1, &SecretKey::from_bytes([8; 32]));
        assert_ne!(a.public_key(), other.public_key());
        assert_ne!(a.mac(b"event"), other.mac(b"event"));
        // The MAC key is not the secret itself.
        assert_ne!(a.mac(b"event"), secret.mac(&[b"event"]));
    }

    #[test]
    fn signatures_verify_under_the_public_key_only() {
        let key = AuditKey::derive(1, &SecretKey::generate());
        let signature = key.sign(b"checkpoint");
        assert!(signature_is_valid(
            &key.public_key(),
            b"checkpoint",
            &signature
        ));
        assert!(!signature_is_valid(
            &key.public_key(),
            b"checkpoinT",
            &signature
        ));
        let other = AuditKey::derive(1, &SecretKey::generate());
        assert!(!signature_is_valid(
            &other.public_key(),
            b"checkpoint",
            &signature
        ));
        assert!(!signature_is_valid(
            &key.public_key(),
            b"checkpoint",
            &signature[..63]
        ));
    }

    #[test]
    fn macs_compare_whole_tags() {
        let key = AuditKey::derive(3, &SecretKey::generate());
        let tag = key.mac(b"m");
        assert!(key.mac_matches(b"m", &tag));
        assert!(!key.mac_matches(b"m", &tag[..31]));
        assert!(!key.mac_matches(b"n", &tag));
        assert!(!format!("{key:?}").contains(&hex::encode(tag)));
    }
}
