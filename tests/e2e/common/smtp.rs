//! A real SMTP server (mailin, 32 sessions at once: each Coffer process keeps a pool of
//! connections open) in the test process, recording what it receives; it can refuse
//! the first deliveries (451, transient) or all of them (550, permanent), or be slow to accept.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::{Handler, Response, Server, response};

#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub raw: Vec<u8>,
}

impl Mail {
    fn parsed(&self) -> mailparse::ParsedMail<'_> {
        mailparse::parse_mail(&self.raw).expect("a well-formed message")
    }

    pub fn header(&self, name: &str) -> String {
        use mailparse::MailHeaderMap as _;
        self.parsed()
            .headers
            .get_first_value(name)
            .unwrap_or_default()
    }

    /// The decoded body of the first part of `mime` type.
    pub fn part(&self, mime: &str) -> String {
        fn find(part: &mailparse::ParsedMail<'_>, mime: &str) -> Option<String> {
            if part.ctype.mimetype == mime {
                return part.get_body().ok();
            }
            part.subparts.iter().find_map(|p| find(p, mime))
        }
        find(&self.parsed(), mime).unwrap_or_else(|| panic!("no {mime} part"))
    }

    /// Whether this is the link that verifies an account's address.
    pub fn is_address_verification(&self) -> bool {
        self.header("Subject")
            .contains("Confirm your email address")
    }

    /// The share link in the plain-text part.
    pub fn link(&self) -> String {
        let text = self.part("text/plain");
        text.split_whitespace()
            .find(|w| w.contains("/s/"))
            .unwrap_or_else(|| panic!("no link in:\n{text}"))
            .to_owned()
    }
}

#[derive(Default)]
struct State {
    mails: Vec<Mail>,
    refuse_transient: usize,
    refuse_always: bool,
    attempts: usize,
    /// How long the server takes to accept a message once it has its data.
    accept_after: Duration,
}

#[derive(Clone)]
struct Sink {
    state: Arc<Mutex<State>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Sink {
    /// Addresses starting with `bounce` do not exist here (550, permanent).
    fn rcpt(&mut self, to: &str) -> Response {
        if to.trim_start_matches('<').starts_with("bounce") {
            response::NO_MAILBOX
        } else {
            response::OK
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        let mut state = self.state.lock().expect("lock");
        state.attempts += 1;
        if state.refuse_always {
            return response::NO_MAILBOX;
        }
        if state.refuse_transient > 0 {
            state.refuse_transient -= 1;
            return response::INTERNAL_ERROR;
        }
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let accept_after = self.state.lock().expect("lock").accept_after;
        // A slow server: this session's thread takes its time before it answers.
        std::thread::sleep(accept_after);
        let mail = Mail {
            to: std::mem::take(&mut self.to),
            raw: std::mem::take(&mut self.data),
        };
        self.state.lock().expect("lock").mails.push(mail);
        response::OK
    }
}

pub struct SmtpServer {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_with(0, false)
    }

    /// Refuses the first `transient` deliveries with 451; with `always`, every one with 550.
    pub fn start_with(transient: usize, always: bool) -> Self {
        Self::start_state(State {
            refuse_transient: transient,
            refuse_always: always,
            ..State::default()
        })
    }

    /// Accepts every message, each only after `accept_after`.
    pub fn start_slow(accept_after: Duration) -> Self {
        Self::start_state(State {
            accept_after,
            ..State::default()
        })
    }

    fn start_state(state: State) -> Self {
        let state = Arc::new(Mutex::new(state));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind SMTP");
        let addr = listener.local_addr().expect("addr");
        let mut server = Server::new(Sink {
            state: state.clone(),
            to: Vec::new(),
            data: Vec::new(),
        });
        server
            .with_name("smtp.test")
            .with_num_threads(32)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self {
            url: format!("smtp://{addr}"),
            state,
        }
    }

    /// The mail about files: everything but the links that verify an account's own address
    /// (every account a test signs up is sent one; see [`SmtpServer::all_mails`]).
    pub fn mails(&self) -> Vec<Mail> {
        self.all_mails()
            .into_iter()
            .filter(|m| !m.is_address_verification())
            .collect()
    }

    /// Every message received.
    pub fn all_mails(&self) -> Vec<Mail> {
        self.state.lock().expect("lock").mails.clone()
    }

    pub fn attempts(&self) -> usize {
        self.state.lock().expect("lock").attempts
    }

    /// Waits (with a deadline) until `count` messages have arrived for `to`.
    pub async fn wait_for(&self, to: &str, count: usize) -> Vec<Mail> {
        super::eventually("mail arriving", Duration::from_secs(60), || async {
            let mails: Vec<Mail> = self
                .all_mails()
                .into_iter()
                .filter(|m| m.to.iter().any(|t| t == to))
                .collect();
            if mails.len() >= count {
                Ok(mails)
            } else {
                Err(format!("{} of {count} for {to}", mails.len()))
            }
        })
        .await
    }
}
