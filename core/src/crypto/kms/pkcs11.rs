//! An HSM through its PKCS#11 module: Coffer's keys are wrapped with `CKM_AES_GCM` under an
//! AES key on the token, found by its label.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use rand::RngCore as _;
use zeroize::Zeroize as _;

use super::{KeyName, KmsError, Pkcs11Spec, Wrapped, associated_data};
use crate::crypto::SecretKey;

/// The format of a wrap: this byte, the 12-byte IV, the ciphertext and its 16-byte tag.
const FORMAT: u8 = 1;
const IV_LEN: usize = 12;

/// A module is initialised once per process (PKCS#11 allows no more), whoever opens it.
static MODULES: LazyLock<Mutex<HashMap<PathBuf, Pkcs11>>> = LazyLock::new(Mutex::default);

pub(super) struct Hsm {
    spec: Arc<Pkcs11Spec>,
    /// One session, signed in, reopened when the token drops it. Wraps are rare (start-up,
    /// a new version, a rewrap): they take turns.
    session: Arc<Mutex<Option<Session>>>,
}

impl Hsm {
    pub(super) async fn open(spec: Pkcs11Spec) -> Result<Self, KmsError> {
        let hsm = Self {
            spec: Arc::new(spec),
            session: Arc::default(),
        };
        // Signs in and finds the key: a wrong PIN or label stops start-up here.
        hsm.probe().await?;
        Ok(hsm)
    }

    pub(super) async fn probe(&self) -> Result<(), KmsError> {
        self.blocking(|session, spec| find_key(session, spec, &spec.key).map(|_| ()))
            .await
    }

    pub(super) fn wrapping_key(&self) -> String {
        reference(&self.spec.token, &self.spec.key)
    }

    pub(super) async fn wrap(&self, name: KeyName, key: &SecretKey) -> Result<Wrapped, KmsError> {
        let key = key.clone();
        let by = self.wrapping_key();
        let bytes = self
            .blocking(move |session, spec| {
                let handle = find_key(session, spec, &spec.key)?;
                let mut iv = [0u8; IV_LEN];
                rand::rng().fill_bytes(&mut iv);
                let aad = associated_data(name);
                let mut params_iv = iv;
                let params = GcmParams::new(&mut params_iv, aad.as_bytes(), 128.into())
                    .map_err(|e| refused(spec, "preparing AES-GCM", &e))?;
                let sealed = session
                    .encrypt(&Mechanism::AesGcm(params), handle, key.expose())
                    .map_err(|e| failure(spec, "wrapping with the key", &e))?;
                let mut bytes = Vec::with_capacity(1 + IV_LEN + sealed.len());
                bytes.push(FORMAT);
                bytes.extend_from_slice(&iv);
                bytes.extend_from_slice(&sealed);
                Ok(bytes)
            })
            .await?;
        Ok(Wrapped { by, bytes })
    }

    pub(super) async fn unwrap(
        &self,
        name: KeyName,
        wrapped: &Wrapped,
    ) -> Result<SecretKey, KmsError> {
        let (token, label) = parse_reference(&wrapped.by).ok_or_else(|| {
            KmsError::Refused(format!(
                "{name} is wrapped by `{}`, which is not a PKCS#11 key: give this process the COFFER_KMS it was wrapped with",
                wrapped.by
            ))
        })?;
        if token != self.spec.token {
            return Err(KmsError::Refused(format!(
                "{name} is wrapped by a key on token \"{token}\", not on this process's token \"{}\"",
                self.spec.token
            )));
        }
        let bytes = wrapped.bytes.clone();
        self.blocking(move |session, spec| {
            let handle = find_key(session, spec, &label)?;
            let altered = || {
                KmsError::Unwrap(format!(
                    "{name} does not open under the key \"{label}\" of token \"{}\": the wrap was altered, or made by another key of that label",
                    spec.token
                ))
            };
            let (&format, rest) = bytes.split_first().ok_or_else(altered)?;
            if format != FORMAT || rest.len() < IV_LEN {
                return Err(altered());
            }
            let (iv, sealed) = rest.split_at(IV_LEN);
            let mut iv: [u8; IV_LEN] = iv.try_into().map_err(|_| altered())?;
            let aad = associated_data(name);
            let params = GcmParams::new(&mut iv, aad.as_bytes(), 128.into())
                .map_err(|e| refused(spec, "preparing AES-GCM", &e))?;
            let mut opened = match session.decrypt(&Mechanism::AesGcm(params), handle, sealed) {
                Ok(opened) => opened,
                // SoftHSM2 answers a tag that does not check with CKR_GENERAL_ERROR.
                Err(Error::Pkcs11(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::DataInvalid
                    | RvError::GeneralError,
                    _,
                )) => return Err(altered()),
                Err(e) => return Err(failure(spec, "unwrapping with the key", &e)),
            };
            let key = SecretKey::from_slice(&opened);
            opened.zeroize();
            key.ok_or_else(altered)
        })
        .await
    }

    /// Runs `op` with the signed-in session on the blocking pool. A call that finds the token
    /// gone starts over once, from the module up: a token that dropped the session (the HSM
    /// restarted) needs a new one, and a network HSM's client module (p11-kit's, for one)
    /// reconnects to its HSM only when it is initialised again.
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl Fn(&Session, &Pkcs11Spec) -> Result<T, KmsError> + Send + 'static,
    ) -> Result<T, KmsError> {
        let spec = self.spec.clone();
        let session = self.session.clone();
        tokio::task::spawn_blocking(move || {
            let mut session = session
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match signed_in(&mut session, &spec, &op) {
                Err(KmsError::Unreachable(_)) => {
                    *session = None;
                    reinitialize(&spec);
                    signed_in(&mut session, &spec, &op)
                }
                result => result,
            }
        })
        .await
        .map_err(|e| KmsError::Unreachable(format!("the PKCS#11 call did not finish: {e}")))?
    }
}

/// Runs `op` with `session`, signing in first if there is none.
fn signed_in<T>(
    session: &mut Option<Session>,
    spec: &Pkcs11Spec,
    op: impl Fn(&Session, &Pkcs11Spec) -> Result<T, KmsError>,
) -> Result<T, KmsError> {
    let open = match session.take() {
        Some(open) => open,
        None => sign_in(spec)?,
    };
    let result = op(&open, spec);
    *session = Some(open);
    result
}

/// `pkcs11:token=<token>;object=<label>`, percent-encoded as RFC 7512 asks (all but RFC
/// 3986's unreserved characters).
fn reference(token: &str, label: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    format!(
        "pkcs11:token={};object={}",
        utf8_percent_encode(token, RESERVED),
        utf8_percent_encode(label, RESERVED)
    )
}

fn parse_reference(text: &str) -> Option<(String, String)> {
    let rest = text.strip_prefix("pkcs11:")?;
    let (mut token, mut label) = (None, None);
    for (name, value) in super::attributes(rest, ';').ok()? {
        match name.as_str() {
            "token" => token = Some(value),
            "object" => label = Some(value),
            _ => return None,
        }
    }
    Some((token?, label?))
}

fn module(spec: &Pkcs11Spec) -> Result<Pkcs11, KmsError> {
    let mut modules = MODULES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(module) = modules.get(&spec.module) {
        return Ok(module.clone());
    }
    let module = Pkcs11::new(&spec.module).map_err(|e| {
        KmsError::Refused(format!(
            "loading the PKCS#11 module {}: {e}",
            spec.module.display()
        ))
    })?;
    match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(KmsError::Unreachable(format!(
                "initialising the PKCS#11 module {}: {}",
                spec.module.display(),
                short(&e)
            )));
        }
    }
    modules.insert(spec.module.clone(), module.clone());
    Ok(module)
}

/// Finalises the module, so that the next call initialises it again. Every session this
/// process has with it ends.
fn reinitialize(spec: &Pkcs11Spec) {
    let mut modules = MODULES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(module) = modules.remove(&spec.module) {
        // A module that lost its HSM may answer that it failed; it is finalised all the same.
        let _ = module.finalize();
    }
}

fn sign_in(spec: &Pkcs11Spec) -> Result<Session, KmsError> {
    let module = module(spec)?;
    let slot = slot(&module, spec)?;
    let session = module
        .open_ro_session(slot)
        .map_err(|e| failure(spec, "opening a session", &e))?;
    let Some(pin) = &spec.pin else {
        return Err(KmsError::Refused(format!(
            "the PKCS#11 token \"{}\" needs its user PIN: set COFFER_KMS_PIN_FILE",
            spec.token
        )));
    };
    match session.login(UserType::User, Some(pin)) {
        // Signing in is per process: another session of this process did it already.
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(Error::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            Err(KmsError::Refused(format!(
                "the PKCS#11 token \"{}\" refused the PIN (COFFER_KMS_PIN_FILE)",
                spec.token
            )))
        }
        Err(Error::Pkcs11(RvError::PinLocked, _)) => Err(KmsError::Refused(format!(
            "the user PIN of PKCS#11 token \"{}\" is locked: its security officer must unlock it",
            spec.token
        ))),
        Err(e) => Err(failure(spec, "signing in", &e)),
    }
}

fn slot(module: &Pkcs11, spec: &Pkcs11Spec) -> Result<Slot, KmsError> {
    let slots = module
        .get_slots_with_initialized_token()
        .map_err(|e| failure(spec, "listing the tokens", &e))?;
    for slot in slots {
        if let Ok(info) = module.get_token_info(slot)
            && info.label().trim_end() == spec.token
        {
            return Ok(slot);
        }
    }
    Err(KmsError::Unreachable(format!(
        "no PKCS#11 token labelled \"{}\" in {}",
        spec.token,
        spec.module.display()
    )))
}

/// The one secret key labelled `label` on the token.
fn find_key(session: &Session, spec: &Pkcs11Spec, label: &str) -> Result<ObjectHandle, KmsError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| failure(spec, "looking for the key", &e))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(KmsError::Refused(format!(
            "no secret key labelled \"{label}\" on PKCS#11 token \"{}\" (create an AES-256 key with that label; README: Keys in an HSM or KMS)",
            spec.token
        ))),
        more => Err(KmsError::Refused(format!(
            "{} secret keys are labelled \"{label}\" on PKCS#11 token \"{}\": give the key Coffer uses a label of its own",
            more.len(),
            spec.token
        ))),
    }
}

/// A failed call: a token or session gone is worth retrying, anything else is a refusal.
fn failure(spec: &Pkcs11Spec, doing: &str, error: &Error) -> KmsError {
    let gone = matches!(
        error,
        Error::Pkcs11(
            RvError::DeviceError
                | RvError::DeviceRemoved
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SessionClosed
                | RvError::SessionHandleInvalid
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized
                | RvError::FunctionFailed
                | RvError::GeneralError,
            _
        )
    );
    let what = format!(
        "PKCS#11 token \"{}\": {doing}: {}",
        spec.token,
        short(error)
    );
    if gone {
        KmsError::Unreachable(what)
    } else {
        KmsError::Refused(what)
    }
}

fn refused(spec: &Pkcs11Spec, doing: &str, error: &Error) -> KmsError {
    KmsError::Refused(format!(
        "PKCS#11 token \"{}\": {doing}: {}",
        spec.token,
        short(error)
    ))
}

/// The return value's name (`CKR_KEY_FUNCTION_NOT_PERMITTED`-like), not cryptoki's paragraph.
fn short(error: &Error) -> String {
    match error {
        Error::Pkcs11(rv, function) => format!("{rv:?} from {function:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_survives_odd_labels() {
        let text = reference("Coffer HSM;1", "kek=2");
        assert_eq!(
            parse_reference(&text),
            Some(("Coffer HSM;1".to_owned(), "kek=2".to_owned()))
        );
        assert_eq!(parse_reference("aws-kms:alias/x"), None);
    }
}
