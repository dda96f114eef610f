//! The id of the request being served, carried into the jobs it enqueues so that one upload's
//! log lines can be followed from the API through every job it caused.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: Option<String>;
}

/// Runs `fut` with `id` as the current request id.
pub async fn scope<F: Future>(id: Option<String>, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// The current request id, if the code runs on behalf of a request (or a job it enqueued).
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok().flatten()
}

/// A client-supplied id is kept if it is short and plain (so it is safe in logs and headers);
/// otherwise a new one is made.
pub fn accept_or_new(supplied: Option<&str>) -> String {
    match supplied {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => uuid::Uuid::new_v4().simple().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_kept_and_others_replaced() {
        assert_eq!(accept_or_new(Some("lb-1234.abc")), "lb-1234.abc");
        for hostile in ["", "a b", "x\r\ninjected: 1", &"a".repeat(65), "é"] {
            let id = accept_or_new(Some(hostile));
            assert_ne!(id, hostile);
            assert_eq!(id.len(), 32);
        }
        assert_eq!(accept_or_new(None).len(), 32);
    }

    #[tokio::test]
    async fn the_id_is_visible_inside_its_scope_only() {
        assert_eq!(current(), None);
        let seen = scope(Some("r1".into()), async { current() }).await;
        assert_eq!(seen.as_deref(), Some("r1"));
        assert_eq!(current(), None);
    }
}
