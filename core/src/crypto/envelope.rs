//! Wrapping per-file keys under a master key (KEK). Associated data binds the wrap to one file
//! and one KEK version, so a wrapped key copied to another row does not open.

use aes_gcm::aead::{Aead as _, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
use rand::RngCore as _;
use uuid::Uuid;

use super::{CryptoError, SecretKey};

const NONCE_LEN: usize = 12;

/// `nonce(12) ‖ ciphertext(32) ‖ tag(16)`, stored with the KEK version that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_version: i32,
    pub bytes: Vec<u8>,
}

fn aad(file_id: Uuid, kek_version: i32) -> [u8; 20] {
    let mut aad = [0u8; 20];
    aad[..16].copy_from_slice(file_id.as_bytes());
    aad[16..].copy_from_slice(&kek_version.to_be_bytes());
    aad
}

#[allow(
    clippy::expect_used,
    reason = "AES-GCM fails only on inputs over 64 GiB"
)]
pub fn wrap_key(kek: &SecretKey, kek_version: i32, file_id: Uuid, key: &SecretKey) -> WrappedKey {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new(kek.expose().into());
    let aad = aad(file_id, kek_version);
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: key.expose(),
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of 32 bytes cannot fail");
    let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&sealed);
    WrappedKey { kek_version, bytes }
}

pub fn unwrap_key(
    kek: &SecretKey,
    file_id: Uuid,
    wrapped: &WrappedKey,
) -> Result<SecretKey, CryptoError> {
    let fail = CryptoError::Unwrap(wrapped.kek_version);
    if wrapped.bytes.len() != NONCE_LEN + SecretKey::LEN + 16 {
        return Err(fail);
    }
    let (nonce, sealed) = wrapped.bytes.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| fail.clone())?;
    let cipher = Aes256Gcm::new(kek.expose().into());
    let aad = aad(file_id, wrapped.kek_version);
    let mut plain = cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map_err(|_| fail.clone())?;
    let key = SecretKey::from_slice(&plain).ok_or(fail);
    zeroize::Zeroize::zeroize(&mut plain);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let kek = SecretKey::generate();
        let dek = SecretKey::generate();
        let file = Uuid::new_v4();
        let wrapped = wrap_key(&kek, 3, file, &dek);
        let back = unwrap_key(&kek, file, &wrapped).expect("unwraps");
        assert_eq!(back.expose(), dek.expose());
    }

    #[test]
    fn dek_wrapped_for_one_file_does_not_unwrap_for_another() {
        let kek = SecretKey::generate();
        let wrapped = wrap_key(&kek, 1, Uuid::new_v4(), &SecretKey::generate());
        assert_eq!(
            unwrap_key(&kek, Uuid::new_v4(), &wrapped).map(|_| ()),
            Err(CryptoError::Unwrap(1))
        );
    }

    #[test]
    fn wrap_under_one_version_does_not_open_as_another() {
        let kek = SecretKey::generate();
        let file = Uuid::new_v4();
        let mut wrapped = wrap_key(&kek, 1, file, &SecretKey::generate());
        wrapped.kek_version = 2;
        assert!(unwrap_key(&kek, file, &wrapped).is_err());
        let other_kek = SecretKey::generate();
        wrapped.kek_version = 1;
        assert!(unwrap_key(&other_kek, file, &wrapped).is_err());
    }

    #[test]
    fn tampered_or_short_wrap_fails_closed() {
        let kek = SecretKey::generate();
        let file = Uuid::new_v4();
        let mut wrapped = wrap_key(&kek, 1, file, &SecretKey::generate());
        wrapped.bytes[20] ^= 1;
        assert!(unwrap_key(&kek, file, &wrapped).is_err());
        wrapped.bytes.truncate(10);
        assert!(unwrap_key(&kek, file, &wrapped).is_err());
    }
}
