use uuid::Uuid;

use super::notify::SendShareEmail;
use super::rewrap::RewrapKeys;
use crate::queue::Payload as _;

/// Tasks already queued are read back by these exact field names and queue names.
#[test]
fn payloads_keep_their_stored_shape() {
    let id = Uuid::nil();
    let shape = serde_json::to_value(SendShareEmail {
        share_id: id,
        request_id: None,
    })
    .expect("json");
    assert_eq!(
        shape,
        serde_json::json!({ "share_id": id, "request_id": null })
    );
    let old: RewrapKeys =
        serde_json::from_value(serde_json::json!({ "rotation_id": id })).expect("old shape");
    assert_eq!((old.subject(), old.request_id()), (id, None));
    assert_eq!(
        crate::start::QUEUES,
        ["validate", "encrypt", "notify", "rewrap"]
    );
}
