//! Every sentence a person reads on a page or in an email comes from one message catalog: the
//! Fluent files under `text/en/` (`pages.ftl` for the web app's templates, `app.ftl` for what
//! the web app's handlers say, `mail.ftl` for emails, `reasons.ftl` for the reasons services
//! give: API problem details and page messages). Dates and numbers in them are formatted
//! by ICU4X for the catalog's locale (Fluent alone formats neither dates nor grouped
//! numbers). English only for now; a language is a new directory of `.ftl` files and a locale.
//!
//! Templates call [`template_function`] as `{{ t(id, name=value) }}`; Rust code calls [`t`]
//! and [`t_with`]. A message that is missing renders as its id (and a unit test finds it first:
//! every id used exists, and every message is used).

use std::sync::LazyLock;

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use icu_calendar::Iso;
use icu_datetime::fieldsets::{T, YMD, YMDE};
use icu_datetime::input::{Date, Time};
use icu_datetime::options::TimePrecision;
use icu_datetime::{DateTimeFormatter, NoCalendarFormatter};
use icu_decimal::DecimalFormatter;
use icu_decimal::input::Decimal;
use icu_locale_core::{Locale, locale};

pub use fluent_bundle::FluentValue as Arg;

/// The English catalog, one `.ftl` per surface.
const ENGLISH: &[(&str, &str)] = &[
    ("pages.ftl", include_str!("en/pages.ftl")),
    ("app.ftl", include_str!("en/app.ftl")),
    ("mail.ftl", include_str!("en/mail.ftl")),
    ("reasons.ftl", include_str!("en/reasons.ftl")),
];

/// The messages of one language, and the formatters of its locale.
pub struct Catalog {
    bundle: FluentBundle<FluentResource>,
    numbers: DecimalFormatter,
    dates: DateTimeFormatter<YMD>,
    long_dates: DateTimeFormatter<YMDE>,
    times: NoCalendarFormatter<T>,
}

impl Catalog {
    /// The catalog of `files` (name, Fluent source) for `locale`. Every file must parse and
    /// no id may be defined twice.
    pub fn new(locale: Locale, files: &[(&str, &str)]) -> Result<Self, String> {
        let language = locale
            .to_string()
            .parse()
            .map_err(|e| format!("{locale}: {e}"))?;
        let mut bundle = FluentBundle::new_concurrent(vec![language]);
        // Pages and emails are not bidirectional text: no isolation marks around arguments.
        bundle.set_use_isolating(false);
        for (name, source) in files {
            let resource = FluentResource::try_new((*source).to_owned())
                .map_err(|(_, errors)| format!("{name}: {errors:?}"))?;
            bundle
                .add_resource(resource)
                .map_err(|errors| format!("{name}: {errors:?}"))?;
        }
        let minutes = TimePrecision::Minute;
        Ok(Self {
            bundle,
            numbers: DecimalFormatter::try_new((&locale).into(), Default::default())
                .map_err(|e| format!("number formats of {locale}: {e}"))?,
            dates: DateTimeFormatter::try_new((&locale).into(), YMD::medium())
                .map_err(|e| format!("date formats of {locale}: {e}"))?,
            long_dates: DateTimeFormatter::try_new((&locale).into(), YMDE::long())
                .map_err(|e| format!("date formats of {locale}: {e}"))?,
            times: NoCalendarFormatter::try_new(
                (&locale).into(),
                T::medium().with_time_precision(minutes),
            )
            .map_err(|e| format!("time formats of {locale}: {e}"))?,
        })
    }

    /// Message `id` with `args`.
    pub fn text<'a>(&self, id: &str, args: impl IntoIterator<Item = (&'a str, Arg<'a>)>) -> String {
        let Some(pattern) = self.bundle.get_message(id).and_then(|m| m.value()) else {
            // Tests (debug builds) fail on it; a release shows the id rather than nothing.
            debug_assert!(false, "message {id} is missing from the catalog");
            tracing::warn!(id, "a message is missing from the catalog");
            return id.to_owned();
        };
        let mut fluent_args = FluentArgs::new();
        for (name, value) in args {
            fluent_args.set(name, value);
        }
        let mut errors = Vec::new();
        let text = self
            .bundle
            .format_pattern(pattern, Some(&fluent_args), &mut errors);
        if !errors.is_empty() {
            tracing::warn!(id, ?errors, "a message did not format cleanly");
        }
        text.into_owned()
    }

    /// Whether the catalog holds message `id`.
    pub fn has(&self, id: &str) -> bool {
        self.bundle.has_message(id)
    }

    /// A whole number, grouped as the locale writes it.
    pub fn number(&self, n: i64) -> String {
        self.numbers.format(&Decimal::from(n)).to_string()
    }

    /// A size in bytes, in decimal units with at most one digit after the point
    /// (`1.5 MB`, `999 bytes`).
    pub fn size(&self, bytes: u64) -> String {
        const UNITS: [&str; 4] = ["size-kb", "size-mb", "size-gb", "size-tb"];
        if bytes < 1000 {
            let count = Arg::from(bytes);
            let shown = Arg::from(self.number(i64::try_from(bytes).unwrap_or(i64::MAX)));
            return self.text("size-bytes", [("count", count), ("shown", shown)]);
        }
        let mut value = bytes as f64 / 1000.0;
        let mut unit = 0;
        while value >= 1000.0 && unit < UNITS.len() - 1 {
            value /= 1000.0;
            unit += 1;
        }
        // One digit after the point, none when it is 0: `1.5 MB`, `2 GB`.
        let tenths = (value * 10.0).round() as i64;
        let decimal = if tenths % 10 == 0 {
            Decimal::from(tenths / 10)
        } else {
            let mut decimal = Decimal::from(tenths);
            decimal.multiply_pow10(-1);
            decimal
        };
        let shown = self.numbers.format(&decimal).to_string();
        self.text(UNITS[unit], [("shown", Arg::from(shown))])
    }

    /// A moment as pages show it: the date and the time to the minute, in UTC.
    pub fn date(&self, at: DateTime<Utc>) -> String {
        self.moment(at, |date| self.dates.format(date).to_string())
    }

    /// A moment as emails write it: the weekday and the date in full, the time to the
    /// minute, in UTC.
    pub fn long_date(&self, at: DateTime<Utc>) -> String {
        self.moment(at, |date| self.long_dates.format(date).to_string())
    }

    /// `at` as message `date-utc` puts it: its date as `date` writes it, then its time.
    fn moment(&self, at: DateTime<Utc>, date: impl Fn(&Date<Iso>) -> String) -> String {
        let Some((day, time)) = icu_input(at) else {
            return at.to_rfc3339();
        };
        let time = self.times.format(&time).to_string();
        self.text(
            "date-utc",
            [("date", Arg::from(date(&day))), ("time", Arg::from(time))],
        )
    }
}

/// ICU4X's date and time of a UTC moment.
fn icu_input(at: DateTime<Utc>) -> Option<(Date<Iso>, Time)> {
    let date = Date::try_new_iso(
        at.year(),
        u8::try_from(at.month()).ok()?,
        u8::try_from(at.day()).ok()?,
    )
    .ok()?;
    let time = Time::try_new(
        u8::try_from(at.hour()).ok()?,
        u8::try_from(at.minute()).ok()?,
        u8::try_from(at.second()).ok()?,
        0,
    )
    .ok()?;
    Some((date, time))
}

/// The English catalog (British English: `5 Dec 2026, 14:30 UTC`).
#[allow(
    clippy::expect_used,
    reason = "compiled in; the unit tests build it before any release does"
)]
pub fn english() -> &'static Catalog {
    static ENGLISH_CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
        Catalog::new(locale!("en-GB"), ENGLISH).expect("the English catalog is valid")
    });
    &ENGLISH_CATALOG
}

/// Message `id` of the English catalog.
pub fn t(id: &str) -> String {
    english().text(id, [])
}

/// Message `id` of the English catalog, with `args`.
pub fn t_with<'a>(id: &str, args: impl IntoIterator<Item = (&'a str, Arg<'a>)>) -> String {
    english().text(id, args)
}

/// A size in bytes, as the English catalog writes it.
pub fn size(bytes: u64) -> String {
    english().size(bytes)
}

/// A moment, as the English catalog's pages write it.
pub fn date(at: DateTime<Utc>) -> String {
    english().date(at)
}

/// `t(id, name=value, …)` for minijinja templates: numbers stay numbers (for plural
/// selectors), anything else is passed as its text.
pub fn template_function(
    id: &str,
    kwargs: minijinja::value::Kwargs,
) -> Result<String, minijinja::Error> {
    let mut args: Vec<(String, Arg<'static>)> = Vec::new();
    for name in kwargs.args() {
        let value: minijinja::Value = kwargs.get(name)?;
        let arg = match i64::try_from(value.clone()) {
            Ok(n) if value.kind() == minijinja::value::ValueKind::Number => Arg::from(n),
            _ => Arg::from(value.to_string()),
        };
        args.push((name.to_owned(), arg));
    }
    kwargs.assert_all_used()?;
    Ok(english().text(
        id,
        args.iter()
            .map(|(name, value)| (name.as_str(), value.clone())),
    ))
}

#[cfg(test)]
mod tests;
