//! Counting what anyone can cause at will (views of a link, hits on a dead one, failed
//! sign-ins): the first events of each kind in a window are recorded one by one, the rest become
//! one event that says how many, so the log grows with links and accounts, not request rates.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use entity::audit_event;

use super::{Event, authenticated_row};
use crate::crypto::KeyStore;

/// How many events of one kind a window records one by one before it only counts them.
pub const RECORDED_PER_WINDOW: u32 = 10;
/// Most kinds counted at once; beyond them, new kinds of an action share one count.
const MOST_KINDS: usize = 100_000;

/// The open windows of [`AuditWriter::record_repeatable`], by key.
#[derive(Debug)]
pub(super) struct Repeats {
    pub(super) window: Duration,
    open: Mutex<HashMap<String, Window>>,
}

#[derive(Debug)]
struct Window {
    opened: DateTime<Utc>,
    recorded: u32,
    counted: u64,
    first_counted: Option<DateTime<Utc>>,
    last: Option<(Event, DateTime<Utc>)>,
}

pub(super) enum Repeat {
    /// Record this event; and first, the count of the key's window that just closed, if any.
    Record(Box<Event>, Option<audit_event::ActiveModel>),
    /// Counted; the count of the key's window that just closed, if any, is to be recorded.
    Counted(Option<audit_event::ActiveModel>),
}

impl Repeats {
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window: window.max(Duration::from_secs(1)),
            open: Mutex::default(),
        }
    }

    fn span(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::minutes(10))
    }

    pub(super) fn count(
        &self,
        key: String,
        event: Event,
        now: DateTime<Utc>,
        keys: &KeyStore,
    ) -> Result<Repeat, sea_orm::DbErr> {
        let span = self.span();
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = if open.len() >= MOST_KINDS && !open.contains_key(&key) {
            format!("{}:*", event.action)
        } else {
            key
        };
        let window = open.entry(key).or_insert_with(|| Window::new(now));
        let closed = if window.opened + span <= now {
            std::mem::replace(window, Window::new(now))
                .summary()
                .map(|event| authenticated_row(keys, event))
                .transpose()?
        } else {
            None
        };
        if window.recorded < RECORDED_PER_WINDOW {
            window.recorded += 1;
            return Ok(Repeat::Record(Box::new(event), closed));
        }
        window.counted += 1;
        window.first_counted.get_or_insert(now);
        window.last = Some((event, now));
        Ok(Repeat::Counted(closed))
    }

    /// Takes the windows closed by `now` (all of them, with `None`) and returns the counts to
    /// record.
    pub(super) fn close(
        &self,
        now: Option<DateTime<Utc>>,
        keys: &KeyStore,
    ) -> Vec<audit_event::ActiveModel> {
        let span = self.span();
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows = Vec::new();
        open.retain(|_, window| {
            if now.is_some_and(|now| window.opened + span > now) {
                return true;
            }
            let summary = std::mem::replace(window, Window::new(Utc::now())).summary();
            match summary.map(|event| authenticated_row(keys, event)) {
                Some(Ok(row)) => rows.push(row),
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "could not record repeated audit events")
                }
                None => {}
            }
            false
        });
        rows
    }
}

impl Window {
    fn new(now: DateTime<Utc>) -> Self {
        Self {
            opened: now,
            recorded: 0,
            counted: 0,
            first_counted: None,
            last: None,
        }
    }

    /// The event that stands for the ones this window counted, if it counted any.
    fn summary(self) -> Option<Event> {
        let (mut event, last_at) = self.last?;
        event.details = json!({
            "repeated": self.counted,
            "from": self.first_counted.unwrap_or(last_at),
            "to": last_at,
        });
        Some(event)
    }
}
