//! `Range: bytes=…` for one range (RFC 9110 §14). Anything else is ignored and the whole file
//! is served, as the RFC allows.

#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    Full,
    /// Inclusive byte positions within the file.
    Partial(u64, u64),
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
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
