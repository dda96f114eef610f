//! The email that tells an owner of complete downloads of their shares: one receipt, or the
//! day's in one email.

use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::Mailbox;

use crate::text::{self, Arg, t, t_with};

/// One complete download, as its receipt tells it.
#[derive(Debug)]
pub struct Receipt<'a> {
    /// The address the link was sent to; `None` for a link handed to the owner.
    pub recipient: Option<&'a str>,
    pub file_name: &'a str,
    pub at: DateTime<Utc>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// What a client sent as its user agent, made safe to quote in a line of plain text.
fn quoted(agent: &str) -> String {
    agent
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// The receipts email to `to`. `settings` is the page where the owner changes how receipts
/// come.
pub fn receipts_message(
    from: &Mailbox,
    to: &str,
    receipts: &[Receipt<'_>],
    settings: &str,
) -> anyhow::Result<Message> {
    let someone = t("mail-receipt-someone");
    let mut body = String::new();
    if receipts.len() > 1 {
        body.push_str(&t("mail-receipt-digest-intro"));
        body.push_str("\n\n");
    }
    for r in receipts {
        let who = r.recipient.unwrap_or(&someone);
        body.push_str(&t_with(
            "mail-receipt-line",
            [
                ("recipient", Arg::from(who)),
                ("name", Arg::from(r.file_name)),
            ],
        ));
        body.push('\n');
        body.push_str(&t_with(
            "mail-receipt-when",
            [("when", Arg::from(text::english().long_date(r.at)))],
        ));
        body.push('\n');
        body.push_str(&t_with(
            "mail-receipt-from",
            [
                ("address", Arg::from(r.ip.unwrap_or("?"))),
                ("agent", Arg::from(quoted(r.user_agent.unwrap_or("?")))),
            ],
        ));
        body.push_str("\n\n");
    }
    body.push_str(&t_with(
        "mail-receipt-footer",
        [("link", Arg::from(settings))],
    ));
    let subject = match receipts {
        [one] => t_with(
            "mail-receipt-subject-one",
            [
                ("recipient", Arg::from(one.recipient.unwrap_or(&someone))),
                ("name", Arg::from(one.file_name)),
            ],
        ),
        many => t_with(
            "mail-receipt-subject-many",
            [("count", Arg::from(many.len()))],
        ),
    };
    let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
    super::account_message(from, to, &subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_agent_is_quoted_on_one_line_and_cut_short() {
        assert_eq!(
            quoted("curl/8\r\nBcc: eve@example.org\u{7}"),
            "curl/8Bcc: eve@example.org"
        );
        assert_eq!(quoted(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn one_receipt_names_who_and_what_in_the_subject_and_many_count() {
        let from: Mailbox = "Coffer <coffer@localhost>".parse().expect("mailbox");
        let receipt = |name| Receipt {
            recipient: Some("rita@example.org"),
            file_name: name,
            at: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            ip: Some("192.0.2.7"),
            user_agent: Some("curl/8"),
        };
        let one = receipts_message(
            &from,
            "ann@example.org",
            &[receipt("a.pdf")],
            "http://x/app/preferences",
        )
        .expect("message");
        let shown = String::from_utf8(one.formatted()).expect("utf-8");
        assert!(shown.contains("192.0.2.7"), "{shown}");
        let many = receipts_message(
            &from,
            "ann@example.org",
            &[receipt("a.pdf"), receipt("b.pdf")],
            "http://x/app/preferences",
        )
        .expect("message");
        let shown = String::from_utf8(many.formatted()).expect("utf-8");
        assert!(
            shown.contains("Subject: 2 downloads of files you shared"),
            "{shown}"
        );
    }
}
