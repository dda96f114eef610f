//! Tests of the share email: its headers, its parts, and what a hostile note cannot do.

use super::*;

fn sample<'a>(name: &'a str, message: Option<&'a str>) -> ShareEmail<'a> {
    ShareEmail {
        sender: "ann@example.org",
        file_name: name,
        size: 1_500_000,
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
    let email = sample(
        "\"><img src=x onerror=alert(1)>.pdf",
        Some("<script>alert('hi')</script>"),
    );
    let message = share_message(&from, "bob@example.org", &email).expect("renders");
    let html = templates()
        .get_template("share.html")
        .and_then(|t| t.render(context! { file_name => email.file_name, message => email.message, url => email.url, size => "1 MB", sender => email.sender, expires => "x", password => true, max_downloads => 3 }))
        .expect("html");
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
        &sample("report.pdf", Some("one\rtwo\nthree\r\nfour")),
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
    let message = share_message(
        &from,
        "bob@example.org",
        &sample("report.pdf", Some("Hi Bob")),
    )
    .expect("renders");
    let text = templates()
        .get_template("share.txt")
        .expect("tpl")
        .render(context! {
            sender => "ann@example.org", file_name => "report.pdf", size => crate::text::size(1_500_000),
            expires => "Friday 15 January 2027, 08:00 UTC", max_downloads => 3, message => "Hi Bob",
            password => true, url => "http://127.0.0.1:8080/s/abc",
        })
        .expect("text");
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
