//! The catalog: it builds, every message a page, an email or the code asks for exists, every
//! message is asked for somewhere, and dates and sizes read as they did before the catalog.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::DateTime;

use super::english;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Every file below `dir` whose name ends with one of `extensions`.
fn files(dir: &Path, extensions: &[&str], found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, extensions, found);
        } else if extensions
            .iter()
            .any(|e| path.extension().is_some_and(|x| x == *e))
        {
            found.push(path);
        }
    }
}

/// The ids in `text` passed first to `call` (`t(` or `t_with(`), on the same line or, as
/// rustfmt writes a long call, on the next.
fn ids_after(text: &str, call: &str) -> Vec<String> {
    text.match_indices(call)
        .filter(|(at, _)| {
            // `t(`, not `format!(` or `get(`.
            !text[..*at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .filter_map(|(at, _)| {
            let rest = text[at + call.len()..].trim_start().strip_prefix('"')?;
            let id = &rest[..rest.find('"')?];
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                .then(|| id.to_owned())
        })
        .collect()
}

/// The message ids defined in the catalog's `.ftl` files.
fn defined() -> BTreeSet<String> {
    let mut ftl = Vec::new();
    files(&workspace().join("core/src/text/en"), &["ftl"], &mut ftl);
    ftl.iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter_map(|line| {
                    let (id, _) = line.split_once(" =")?;
                    id.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        .then(|| id.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .filter(|id| !id.is_empty())
        .collect()
}

#[test]
fn every_message_asked_for_exists_and_every_message_is_asked_for() {
    let catalog = english();
    let root = workspace();
    let mut templates = Vec::new();
    files(&root.join("api/templates"), &["html"], &mut templates);
    files(
        &root.join("core/src/mail"),
        &["html", "txt"],
        &mut templates,
    );
    let mut code = Vec::new();
    files(&root.join("api/src"), &["rs"], &mut code);
    files(&root.join("core/src"), &["rs"], &mut code);
    code.retain(|p| !p.ends_with("text/tests.rs"));
    assert!(
        templates.len() > 15 && code.len() > 50,
        "the sources were found"
    );

    let mut asked = BTreeSet::new();
    let mut every_literal = String::new();
    for path in templates.iter().chain(&code) {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for id in ids_after(&text, "t(")
            .into_iter()
            .chain(ids_after(&text, "t_with("))
        {
            assert!(
                catalog.has(&id),
                "{} asks for {id}, which the catalog lacks",
                path.display()
            );
            asked.insert(id);
        }
        every_literal.push_str(&text);
    }
    // Messages referenced from other messages, or named by id in tables of the code.
    let ftl: String = {
        let mut ftl = Vec::new();
        files(&root.join("core/src/text/en"), &["ftl"], &mut ftl);
        ftl.iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    };
    for id in defined() {
        let named =
            every_literal.contains(&format!("\"{id}\"")) || ftl.contains(&format!("{{ {id} }}"));
        assert!(
            asked.contains(&id) || named,
            "{id} is in the catalog but nothing asks for it"
        );
    }
}

#[test]
fn sizes_read_like_a_file_manager() {
    let catalog = english();
    assert_eq!(catalog.size(1), "1 byte");
    assert_eq!(catalog.size(999), "999 bytes");
    assert_eq!(catalog.size(1_000), "1 kB");
    assert_eq!(catalog.size(1_500_000), "1.5 MB");
    assert_eq!(catalog.size(2_000_000_000), "2 GB");
    assert_eq!(catalog.size(2_147_483_648), "2.1 GB");
}

#[test]
fn dates_read_in_utc_to_the_minute() {
    let catalog = english();
    let at = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
    assert_eq!(catalog.date(at), "15 Jan 2027, 08:00 UTC");
    assert_eq!(catalog.long_date(at), "Friday, 15 January 2027, 08:00 UTC");
    assert_eq!(catalog.number(1_234_567), "1,234,567");
}

#[test]
fn arguments_are_inserted_as_given_and_plurals_follow_numbers() {
    let catalog = english();
    let downloads = |n: i64| catalog.text("mail-share-downloads", [("count", super::Arg::from(n))]);
    assert_eq!(downloads(1), "1 download");
    assert_eq!(downloads(3), "3 downloads");
    let intro = |n: i64| {
        catalog.text(
            "mail-share-intro",
            [
                ("sender", super::Arg::from("<b>ann</b>")),
                ("count", super::Arg::from(n)),
            ],
        )
    };
    // No isolation marks, and no escaping: templates escape what they render.
    assert_eq!(
        intro(1),
        "<b>ann</b> shared a file with you through Coffer."
    );
    assert_eq!(
        intro(3),
        "<b>ann</b> shared 3 files with you through Coffer."
    );
}
