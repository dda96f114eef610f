//! Tests of the share email: its headers, its parts, and what a hostile note cannot do.

use super::*;

fn sample<'a>(files: &'a [(&'a str, u64)], message: Option<&'a str>) -> ShareEmail<'a> {
    ShareEmail {
        sender: "ann@example.org",
        files,
        expires_at: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        max_downloads: Some(3),
        message,
        password: true,
        verify: true,
        url: "http://127.0.0.1:8080/s/abc",
    }
}

fn rendered(message: &Message) -> String {
    String::from_utf8(message.formatted()).expect("utf-8")
}

#[test]
fn hostile_names_and_messages_are_escaped_in_html() {
    let from: Mailbox = "Coffer <coffer@localhost>".parse().expect("mailbox");
    let files = [("\"><img src=x onerror=alert(1)>.pdf", 1_500_000)];
    let email = sample(&files, Some("<script>alert('hi')</script>"));
    let message = share_message(&from, "bob@example.org", &email).expect("renders");
    let (_, html) = share_bodies(&email).expect("html");
    assert!(
        !html.contains("<script>") && !html.contains("<img src=x"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;") && html.contains("&lt;img src=x"));
    let raw = rendered(&message);
    assert!(raw.contains("Subject:"));
    assert!(!raw.contains("\r\nBcc:"));
}

#[test]
fn mail_has_a_message_id_on_the_sending_domain_a_reply_to_and_no_bare_line_breaks() {
    let from: Mailbox = "Coffer <coffer@files.example.org>"
        .parse()
        .expect("mailbox");
    let message = share_message(
        &from,
        "bob@example.org",
        &sample(
            &[("report.pdf", 1_500_000)],
            Some("one\rtwo\nthree\r\nfour"),
        ),
    )
    .expect("renders");
    let raw = rendered(&message);
    let parsed = mailparse::parse_mail(raw.as_bytes()).expect("parses");
    use mailparse::MailHeaderMap as _;
    let id = parsed
        .headers
        .get_first_value("Message-ID")
        .expect("Message-ID");
    assert!(
        id.starts_with('<') && id.ends_with("@files.example.org>"),
        "{id}"
    );
    assert_eq!(
        parsed.headers.get_first_value("Reply-To").as_deref(),
        Some("ann@example.org")
    );
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(bytes.get(i + 1), Some(&b'\n'), "a bare CR at {i}"),
            b'\n' => assert_eq!(
                bytes.get(i.wrapping_sub(1)),
                Some(&b'\r'),
                "a bare LF at {i}"
            ),
            _ => {}
        }
    }
}

#[test]
fn names_the_sender_file_expiry_and_link_but_no_content() {
    let from: Mailbox = "Coffer <coffer@localhost>".parse().expect("mailbox");
    let files = [("report.pdf", 1_500_000)];
    let email = sample(&files, Some("Hi Bob"));
    let message = share_message(&from, "bob@example.org", &email).expect("renders");
    let (text, _) = share_bodies(&email).expect("text");
    for needle in [
        "ann@example.org",
        "report.pdf",
        "1.5 MB",
        "15 January 2027",
        "Hi Bob",
        "http://127.0.0.1:8080/s/abc",
        "password",
        "3 download",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    let raw = rendered(&message);
    assert!(raw.contains("multipart/alternative"));
}

#[test]
fn a_bundle_email_lists_every_file_and_counts_them_in_its_subject() {
    let from: Mailbox = "Coffer <coffer@localhost>".parse().expect("mailbox");
    let files = [("a.pdf", 1_000), ("b <c>.txt", 2_000_000), ("d.zip", 3)];
    let email = sample(&files, None);
    let message = share_message(&from, "bob@example.org", &email).expect("renders");
    let raw = rendered(&message);
    let parsed = mailparse::parse_mail(raw.as_bytes()).expect("parses");
    use mailparse::MailHeaderMap as _;
    assert_eq!(
        parsed.headers.get_first_value("Subject").as_deref(),
        Some("ann@example.org shared 3 files with you")
    );
    let (text, html) = share_bodies(&email).expect("bodies");
    for needle in [
        "- a.pdf (1 kB)",
        "- b <c>.txt (2 MB)",
        "- d.zip (3 bytes)",
        "3 files",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    assert!(
        html.contains("b &lt;c&gt;.txt") && html.contains(">Files<"),
        "{html}"
    );
}
