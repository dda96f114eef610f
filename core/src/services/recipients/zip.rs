//! "Download all": a bundle's files as one ZIP, written while it streams. Nothing is kept on
//! disk or in memory beyond a pipe's worth: each file is decrypted into its entry as the
//! connection takes the bytes. Entries are stored (files people share are mostly compressed
//! already, and storing keeps the rate of a single download), carry ZIP64 fields whatever
//! their size, and end with a data descriptor holding their CRC-32.

use std::collections::HashSet;
use std::io;

use async_zip::tokio::write::ZipFileWriter;
use async_zip::{Compression, ZipDateTimeBuilder, ZipEntryBuilder};
use bytes::Bytes;
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use futures::stream::BoxStream;
use futures::{AsyncWriteExt as _, StreamExt as _};
use tokio_util::io::ReaderStream;

use entity::file;

use crate::Core;
use crate::audit::{Actor, RequestMeta};
use crate::services::files::open_ready;

/// What the pipe between the writer and the connection holds at most.
const PIPE: usize = 256 * 1024;

/// Longest entry name, in bytes (most file systems take 255).
const MOST_NAME_BYTES: usize = 200;

/// Streams `files` as a ZIP, under names made safe for every unzip tool and unique within it.
/// A file that cannot be read (its blob gone, or altered) ends the stream with an error, so
/// the connection is cut rather than handed an archive that looks whole.
pub(super) fn stream(
    core: Core,
    files: Vec<file::Model>,
    actor: Actor,
    meta: RequestMeta,
) -> BoxStream<'static, Result<Bytes, io::Error>> {
    let names = entry_names(files.iter().map(|f| f.name.as_str()));
    let (sink, source) = tokio::io::duplex(PIPE);
    let writer = tokio::spawn(async move {
        let entries = names.into_iter().zip(files);
        write(&core, entries, sink, actor, &meta).await
    });
    let written = futures::stream::once(async move {
        match writer.await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(Err(err)),
            Err(err) => Some(Err(io::Error::other(err))),
        }
    })
    .filter_map(std::future::ready);
    // The pipe ends when the writer is done or gave up; which one it was comes last.
    ReaderStream::with_capacity(source, PIPE / 4)
        .chain(written)
        .boxed()
}

async fn write(
    core: &Core,
    entries: impl Iterator<Item = (String, file::Model)>,
    sink: tokio::io::DuplexStream,
    actor: Actor,
    meta: &RequestMeta,
) -> io::Result<()> {
    let mut zip = ZipFileWriter::with_tokio(sink);
    for (name, file) in entries {
        let mut body = open_ready(core, &file, None, actor, meta)
            .await
            .map_err(io::Error::other)?;
        let entry = ZipEntryBuilder::new(name.into(), Compression::Stored)
            .last_modification_date(zip_date(file.created_at))
            .unix_permissions(0o644);
        let mut writer = zip
            .write_entry_stream(entry)
            .await
            .map_err(io::Error::other)?;
        while let Some(piece) = body.next().await {
            writer.write_all(&piece?).await?;
        }
        writer.close().await.map_err(io::Error::other)?;
    }
    zip.close().await.map_err(io::Error::other)?;
    Ok(())
}

/// A ZIP's time (local time, to two seconds, from 1980): the file's upload, in UTC.
fn zip_date(at: DateTime<Utc>) -> async_zip::ZipDateTime {
    ZipDateTimeBuilder::new()
        .year(at.year().max(1980))
        .month(at.month())
        .day(at.day())
        .hour(at.hour())
        .minute(at.minute())
        .second(at.second())
        .build()
}

/// The entry names of files named `names`, in order: each [`safe_name`], and unique within the
/// archive whatever the case ("report.pdf", "Report (2).pdf").
pub(super) fn entry_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut taken = HashSet::new();
    names
        .map(|name| {
            let safe = safe_name(name);
            let (stem, extension) = split_extension(&safe);
            let mut candidate = safe.clone();
            let mut n = 1;
            while !taken.insert(candidate.to_lowercase()) {
                n += 1;
                candidate = format!("{stem} ({n}){extension}");
            }
            candidate
        })
        .collect()
}

/// `name` as one entry at the archive's top level that every unzip tool extracts where it
/// should, on every system: no directory parts (`/`, `\`), no characters Windows refuses or
/// controls, no leading dots (hidden files, `..`), no trailing dots or spaces, no device names
/// (`CON`, `NUL`, `COM1`…), at most [`MOST_NAME_BYTES`] bytes (its extension kept).
pub(super) fn safe_name(name: &str) -> String {
    let replaced: String = name
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    let trimmed = replaced
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' ']);
    let mut safe = if trimmed.is_empty() {
        "file".to_owned()
    } else {
        trimmed.to_owned()
    };
    let (stem, _) = split_extension(&safe);
    const DEVICES: [&str; 4] = ["CON", "PRN", "AUX", "NUL"];
    let upper = stem.trim_end().to_ascii_uppercase();
    let numbered = |prefix: &str| {
        upper
            .strip_prefix(prefix)
            .is_some_and(|n| n.len() == 1 && n.as_bytes()[0].is_ascii_digit())
    };
    if DEVICES.contains(&upper.as_str()) || numbered("COM") || numbered("LPT") {
        safe.insert(0, '_');
    }
    shorten(&safe)
}

/// `name` cut to [`MOST_NAME_BYTES`] on a character boundary, its extension kept.
fn shorten(name: &str) -> String {
    if name.len() <= MOST_NAME_BYTES {
        return name.to_owned();
    }
    let (stem, extension) = split_extension(name);
    let extension = if extension.len() > 20 { "" } else { extension };
    let mut end = MOST_NAME_BYTES - extension.len();
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{extension}", &stem[..end])
}

/// `("report", ".pdf")` of "report.pdf"; a name without one, or only a leading dot, has none.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_parts_and_traversal_become_one_name() {
        assert_eq!(safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_name("..\\..\\boot.ini"), "_.._boot.ini");
        assert_eq!(safe_name("/abs/path.txt"), "_abs_path.txt");
        assert_eq!(safe_name("C:evil.txt"), "C_evil.txt");
    }

    #[test]
    fn hidden_empty_and_trailing_names_are_mended() {
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name(""), "file");
        assert_eq!(safe_name("notes.txt. . "), "notes.txt");
        assert_eq!(safe_name("a\u{0}b\nc\u{7f}.txt"), "a_b_c_.txt");
    }

    #[test]
    fn device_names_are_prefixed() {
        assert_eq!(safe_name("CON"), "_CON");
        assert_eq!(safe_name("nul.txt"), "_nul.txt");
        assert_eq!(safe_name("com1.log"), "_com1.log");
        assert_eq!(safe_name("lpt9"), "_lpt9");
        assert_eq!(safe_name("console.txt"), "console.txt");
        assert_eq!(safe_name("com10.txt"), "com10.txt");
    }

    #[test]
    fn long_names_keep_their_extension_and_characters_whole() {
        let long = format!("{}.pdf", "é".repeat(300));
        let safe = safe_name(&long);
        assert!(safe.len() <= MOST_NAME_BYTES);
        assert!(safe.ends_with("é.pdf"), "{safe}");
    }

    #[test]
    fn names_are_unique_whatever_the_case() {
        let names = entry_names(
            [
                "report.pdf",
                "Report.pdf",
                "report.pdf",
                "a/b",
                "a_b",
                "README",
            ]
            .into_iter(),
        );
        assert_eq!(
            names,
            [
                "report.pdf",
                "Report (2).pdf",
                "report (3).pdf",
                "a_b",
                "a_b (2)",
                "README"
            ]
        );
    }
}
