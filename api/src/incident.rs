//! What is logged of a failure that is the service's, not the caller's, and what the caller is
//! told: decided here once. The API (problem+json), the web app's pages and the recipient's
//! pages only render the answer, each in its own words.

/// Seconds a caller is asked to wait when a backing service is down.
pub const UNAVAILABLE_RETRY_AFTER: u64 = 5;

/// A backing service (database, queue, storage) is unavailable: logs the cause and returns how
/// long the caller is asked to wait. The caller learns nothing of the cause.
pub fn unavailable(cause: &(dyn std::error::Error + 'static)) -> u64 {
    tracing::error!(error = %Chain(cause), "backing service unavailable");
    UNAVAILABLE_RETRY_AFTER
}

/// Anything else that is the service's fault: logs the cause under a fresh reference and
/// returns it, for the caller to quote to the operator. The cause itself is never shown.
pub fn internal(cause: &dyn std::fmt::Display) -> uuid::Uuid {
    let reference = uuid::Uuid::new_v4();
    tracing::error!(error_id = %reference, error = %cause, "internal error");
    reference
}

/// An error and its causes, on one line (what `{:#}` shows of an `anyhow::Error`).
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
