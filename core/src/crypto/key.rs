//! 256-bit secret keys: zeroized on drop, never printed.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit AES key (a master key, a data key or a quarantine key).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub const LEN: usize = 32;

    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(array))
    }

    /// Parses standard base64 (with or without padding).
    pub fn from_base64(text: &str) -> Option<Self> {
        let mut decoded = STANDARD
            .decode(text.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim()))
            .ok()?;
        let key = Self::from_slice(&decoded);
        decoded.zeroize();
        key
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key check value of a master key: HMAC-SHA256 under the key of a fixed label, 16 bytes
    /// in hex. The database records it per version, so processes given different keys under one
    /// version number refuse to start; it reveals nothing of the key.
    pub fn check_value(&self) -> String {
        hex::encode(&self.mac(&[b"coffer master key check value v1"])[..16])
    }

    /// HMAC-SHA256 under the key of `purpose`, a zero byte and `data`, in hex: a stable name for
    /// `data` that only the key's holder can compute (and so test a guess against).
    pub fn keyed_hash(&self, purpose: &[u8], data: &[u8]) -> String {
        hex::encode(self.mac(&[purpose, b"\0", data]))
    }

    /// HMAC-SHA256 under the key of the concatenated `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        use hmac::Mac as _;
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `other` is the same key, compared in constant time.
    pub fn same_as(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }

    /// A short, non-secret identifier: the first 8 hex digits of SHA-256(key).
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..4])
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(fp:{})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_fingerprint_not_bytes() {
        let key = SecretKey::from_bytes([0xAB; 32]);
        let shown = format!("{key:?}");
        assert!(shown.starts_with("SecretKey(fp:"), "{shown}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(!shown.contains(&key.to_base64()), "{shown}");
    }

    #[test]
    fn check_value_is_hmac_sha256_of_the_label() {
        // Computed independently: Python's hmac.new(bytes([1] * 32), label, sha256).
        let key = SecretKey::from_bytes([1; 32]);
        assert_eq!(key.check_value(), "743def5b2366ad623b87a31cc59adb63");
        assert_ne!(SecretKey::generate().check_value(), key.check_value());
    }

    #[test]
    fn keyed_hash_is_hmac_sha256_of_purpose_and_data() {
        // Python: hmac.new(bytes([1] * 32), b"p\0d", sha256).hexdigest()
        let key = SecretKey::from_bytes([1; 32]);
        assert_eq!(
            key.keyed_hash(b"p", b"d"),
            "f3c80f1db8c81979e500b5a629c896ca0742b20abc551d1561ea4641d064f022"
        );
        assert_ne!(key.keyed_hash(b"p", b"d"), key.keyed_hash(b"q", b"d"));
    }

    #[test]
    fn base64_round_trip() {
        let key = SecretKey::generate();
        let back = SecretKey::from_base64(&key.to_base64()).expect("parses");
        assert_eq!(key.expose(), back.expose());
        assert!(SecretKey::from_base64("c2hvcnQ=").is_none());
    }
}
