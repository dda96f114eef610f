//! Cryptography: keys, the sealed stream format, the DEK envelope and the master keyring.

mod audit_key;
mod envelope;
mod key;
mod keyring;
mod keystore;
pub mod kms;
pub mod stream;
mod vault;

pub use audit_key::{AuditKey, signature_is_valid};
pub use envelope::{WrappedKey, unwrap_key, wrap_key};
pub use key::SecretKey;
pub use keyring::{Keyring, KeyringError, KeyringSource};
pub use keystore::KeyStore;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed object header is not stream format v1")]
    Header,
    #[error("authentication failed: the data was altered, truncated or belongs elsewhere")]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error("object exceeds the stream format's size limit")]
    TooLarge,
    #[error("wrapped key does not open under master key version {0}")]
    Unwrap(i32),
    #[error("master key version {0} is not in the keyring")]
    MissingVersion(i32),
}
