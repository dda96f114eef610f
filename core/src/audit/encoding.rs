//! The bytes an audit event's MAC and its link in the chain cover. Part of the stored format:
//! an encoding is never changed in place, a new one gets a new version.
//!
//! - **v1** (events written before events had MACs, `mac_version` NULL):
//!   `hash = SHA-256(previous ‖ JSON [seq, id, occurred_at, actor_kind, actor_id, ip,
//!   user_agent, action, target_kind, target_id, outcome, details])`.
//! - **v2**: `message = "coffer audit event v2\0" ‖ JSON [mac_version, id, occurred_at, …,
//!   details]`, `mac = HMAC-SHA256(audit MAC key, message)` (set when the event is written),
//!   `hash = SHA-256(previous ‖ seq as 8 bytes big-endian ‖ message ‖ mac)`.
//!
//! JSON is serde_json's compact form; `occurred_at` is RFC 3339 with microseconds and `Z`;
//! `details` has its keys sorted.

use chrono::SecondsFormat;
use sha2::{Digest as _, Sha256};

use entity::audit_event;

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0u8; 32];

const V2_TAG: &[u8] = b"coffer audit event v2\0";

/// The fields every encoding covers, in order, after its leading number.
fn write_fields(out: &mut Vec<u8>, lead: i64, event: &audit_event::Model) {
    let fields = (
        lead,
        &event.id, // a UUID serialises as its hyphenated lowercase text
        event
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        &event.actor_kind,
        &event.actor_id,
        &event.ip,
        &event.user_agent,
        &event.action,
        &event.target_kind,
        &event.target_id,
        &event.outcome,
        &event.details,
    );
    // Writing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &fields);
}

/// The v1 canonical bytes of an event sealed as `seq`.
pub fn canonical_v1(event: &audit_event::Model, seq: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_fields(&mut out, seq, event);
    out
}

/// Writes the v2 MAC message of `event` under audit-key `version` into `out` (cleared first).
pub fn write_mac_message(out: &mut Vec<u8>, event: &audit_event::Model, version: i32) {
    out.clear();
    out.extend_from_slice(V2_TAG);
    write_fields(out, i64::from(version), event);
}

/// Gives `event` its v2 MAC under `key` (what writing an event does; tests and benchmarks that
/// build chains directly use it too).
pub fn authenticate(event: &mut audit_event::Model, key: &crate::crypto::AuditKey) {
    let mut message = Vec::with_capacity(256);
    write_mac_message(&mut message, event, key.version());
    event.mac_version = Some(key.version());
    event.mac = Some(key.mac(&message).to_vec());
}

/// The link of `event` as `seq` after `previous`, in the encoding its `mac_version` says;
/// `buffer` is reused for the encoded bytes. A v2 event's stored MAC is part of what is hashed
/// (whether it is right is checked apart, with the key).
pub fn link_hash(
    buffer: &mut Vec<u8>,
    previous: &[u8],
    event: &audit_event::Model,
    seq: i64,
) -> [u8; 32] {
    if let Some(version) = event.mac_version {
        write_mac_message(buffer, event, version);
    }
    link_hash_written(buffer, previous, event, seq)
}

/// [`link_hash`] for a v2 event whose MAC message `buffer` holds already (as checking its MAC
/// leaves it): the event is serialised once for both. A v1 event is written here.
pub fn link_hash_written(
    buffer: &mut Vec<u8>,
    previous: &[u8],
    event: &audit_event::Model,
    seq: i64,
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    match event.mac_version {
        None => {
            buffer.clear();
            write_fields(buffer, seq, event);
            hasher.update(&buffer);
        }
        Some(_) => {
            hasher.update(seq.to_be_bytes());
            hasher.update(&buffer);
            hasher.update(event.mac.as_deref().unwrap_or_default());
        }
    }
    hasher.finalize().into()
}

/// [`link_hash`] with a buffer of its own.
pub fn chain_hash(previous: &[u8], event: &audit_event::Model, seq: i64) -> Vec<u8> {
    link_hash(&mut Vec::with_capacity(256), previous, event, seq).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> audit_event::Model {
        audit_event::Model {
            id: uuid::Uuid::nil(),
            occurred_at: chrono::DateTime::from_timestamp(1_800_000_000, 123_456_789)
                .expect("time"),
            actor_kind: "user".into(),
            actor_id: Some("u1".into()),
            ip: None,
            user_agent: None,
            action: "file.uploaded".into(),
            target_kind: Some("file".into()),
            target_id: Some("f1".into()),
            outcome: "success".into(),
            details: serde_json::json!({ "b": 1, "a": [1, 2] }),
            seq: None,
            hash: None,
            mac_version: None,
            mac: None,
        }
    }

    #[test]
    fn canonical_form_is_stable_and_covers_every_field() {
        let e = event();
        let text = String::from_utf8(canonical_v1(&e, 7)).expect("utf-8");
        assert_eq!(
            text,
            r#"[7,"00000000-0000-0000-0000-000000000000","2027-01-15T08:00:00.123456Z","user","u1",null,null,"file.uploaded","file","f1","success",{"a":[1,2],"b":1}]"#
        );
        let mut changed = e.clone();
        changed.outcome = "denied".into();
        assert_ne!(
            chain_hash(&GENESIS, &e, 1),
            chain_hash(&GENESIS, &changed, 1)
        );
        assert_ne!(chain_hash(&GENESIS, &e, 1), chain_hash(&GENESIS, &e, 2));
    }

    #[test]
    fn the_v2_link_covers_the_mac_and_its_version() {
        let mut e = event();
        e.mac_version = Some(1);
        e.mac = Some(vec![1; 32]);
        let mut message = Vec::new();
        write_mac_message(&mut message, &e, 1);
        assert!(message.starts_with(b"coffer audit event v2\0[1,\"00000000-"));
        let mut expected = Sha256::new();
        expected.update(GENESIS);
        expected.update(3i64.to_be_bytes());
        expected.update(&message);
        expected.update([1u8; 32]);
        assert_eq!(chain_hash(&GENESIS, &e, 3), expected.finalize().to_vec());
        let mut other_mac = e.clone();
        other_mac.mac = Some(vec![2; 32]);
        assert_ne!(
            chain_hash(&GENESIS, &e, 3),
            chain_hash(&GENESIS, &other_mac, 3)
        );
        let mut other_version = e.clone();
        other_version.mac_version = Some(2);
        assert_ne!(
            chain_hash(&GENESIS, &e, 3),
            chain_hash(&GENESIS, &other_version, 3)
        );
    }
}
