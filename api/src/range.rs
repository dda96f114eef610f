//! `Range: bytes=…` for one range (RFC 9110 §14). Anything else is ignored and the whole file
//! is served, as the RFC allows.

use coffer_core::services::files::FileView;
use coffer_core::types::FileStatus;

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Full,
    /// Inclusive byte positions within the file.
    Partial(u64, u64),
    Unsatisfiable,
}

/// The strong validator of a file's content: its SHA-256. A file's content never changes, so a
/// client may resume an interrupted download with `Range` and `If-Range` (browsers resume only
/// when the first answer carried a validator).
fn entity_tag(sha256: &str) -> String {
    format!("\"{sha256}\"")
}

/// What to serve for `Range` and `If-Range` headers: a range is honoured only without
/// `If-Range` or when it names this content's tag, compared strongly (RFC 9110 §13.1.5); a
/// date, a weak tag or another tag gets the whole file.
fn requested(
    range: Option<&str>,
    if_range: Option<&str>,
    entity_tag: &str,
    size: u64,
) -> RangeRequest {
    if range.is_some() && if_range.is_some_and(|v| v.trim() != entity_tag) {
        return RangeRequest::Full;
    }
    parse(range, size)
}

/// What an owner's download of `file` serves, from its `Range` and `If-Range` headers.
pub struct Chosen {
    /// Inclusive byte positions, or `None` for the whole file.
    pub range: Option<(u64, u64)>,
    /// The content's tag, sent as `ETag` with either answer.
    pub etag: String,
}

/// Chooses what to serve of `file`; `Err(size)` when the range lies beyond a ready file's end
/// (a 416 with `Content-Range: bytes */size`). A file not ready yet takes the whole-file path,
/// where opening it says why it cannot be served.
pub fn choose(file: &FileView, range: Option<&str>, if_range: Option<&str>) -> Result<Chosen, u64> {
    let etag = entity_tag(&file.sha256);
    let range = match requested(range, if_range, &etag, file.size) {
        RangeRequest::Full => None,
        RangeRequest::Partial(start, end) => Some((start, end)),
        RangeRequest::Unsatisfiable if file.status == FileStatus::Ready => return Err(file.size),
        RangeRequest::Unsatisfiable => None,
    };
    Ok(Chosen { range, etag })
}

/// The `Content-Range` of a partial answer.
pub fn content_range(start: u64, end: u64, size: u64) -> String {
    format!("bytes {start}-{end}/{size}")
}

fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (start, end) = (start.trim(), end.trim());
    let parsed = match (start.is_empty(), end.is_empty()) {
        (true, true) => return RangeRequest::Full,
        // Suffix: the last N bytes.
        (true, false) => match end.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size.saturating_sub(1)),
            Err(_) => return RangeRequest::Full,
        },
        (false, true) => match start.parse::<u64>() {
            Ok(s) => (s, size.saturating_sub(1)),
            Err(_) => return RangeRequest::Full,
        },
        (false, false) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
            _ => return RangeRequest::Full,
        },
    };
    if size == 0 || parsed.0 >= size {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial(parsed.0, parsed.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn if_range_lets_a_range_through_only_for_this_content() {
        let tag = entity_tag("ab12");
        assert_eq!(tag, "\"ab12\"");
        let range = Some("bytes=0-9");
        assert_eq!(requested(range, None, &tag, 100), Partial(0, 9));
        assert_eq!(requested(range, Some("\"ab12\""), &tag, 100), Partial(0, 9));
        assert_eq!(requested(range, Some("\"ff00\""), &tag, 100), Full);
        assert_eq!(requested(range, Some("W/\"ab12\""), &tag, 100), Full);
        assert_eq!(
            requested(range, Some("Thu, 03 Dec 2026 10:00:00 GMT"), &tag, 100),
            Full
        );
        assert_eq!(requested(None, Some("\"ff00\""), &tag, 100), Full);
        assert_eq!(
            requested(Some("bytes=200-"), Some(&tag), &tag, 100),
            Unsatisfiable
        );
    }

    #[test]
    fn parses_single_ranges() {
        assert_eq!(parse(None, 100), Full);
        assert_eq!(parse(Some("bytes=0-9"), 100), Partial(0, 9));
        assert_eq!(parse(Some("bytes=90-"), 100), Partial(90, 99));
        assert_eq!(parse(Some("bytes=-10"), 100), Partial(90, 99));
        assert_eq!(parse(Some("bytes=-1000"), 100), Partial(0, 99));
        assert_eq!(parse(Some("bytes=50-5000"), 100), Partial(50, 99));
        assert_eq!(parse(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse(Some("bytes=5-1"), 100), Full);
        assert_eq!(parse(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse(Some("items=0-1"), 100), Full);
        assert_eq!(parse(Some("bytes=x-y"), 100), Full);
    }
}
