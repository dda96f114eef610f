//! "Download all": a bundle's files as one ZIP, written while it streams. Nothing is kept on
//! disk or in memory beyond a pipe's worth: each file is decrypted into its entry as the
//! connection takes the bytes, and its decrypted pieces go to the connection as they are (only
//! the archive's own records are copied). Entries are stored (files people share are mostly compressed
//! already, and storing keeps the rate of a single download), carry ZIP64 fields whatever
//! their size, and end with a data descriptor holding their CRC-32.

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use async_zip::tokio::write::ZipFileWriter;
use async_zip::{Compression, ZipDateTimeBuilder, ZipEntryBuilder};
use bytes::Bytes;
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use futures::stream::BoxStream;
use futures::{AsyncWriteExt as _, StreamExt as _};
use tokio_util::sync::PollSender;

use entity::file;

use crate::Core;
use crate::audit::{Actor, RequestMeta};
use crate::services::files::open_ready;

/// How many pieces the pipe between the writer and the connection holds at most: a file's
/// pieces are 64 KiB or less, the archive's records far less.
const PIPE: usize = 8;

/// Longest entry name, in bytes (most file systems take 255).
const MOST_NAME_BYTES: usize = 200;

/// Streams `files` as a ZIP, under names made safe for every unzip tool and unique within it.
/// A file that cannot be read (its blob gone, or altered) ends the stream with an error there,
/// before the archive's central directory: what arrived is no archive to any unzip tool.
pub(super) fn stream(
    core: Core,
    files: Vec<file::Model>,
    actor: Actor,
    meta: RequestMeta,
) -> BoxStream<'static, Result<Bytes, io::Error>> {
    let names = entry_names(files.iter().map(|f| f.name.as_str()));
    let (sink, source) = tokio::sync::mpsc::channel(PIPE);
    let writer = async move {
        let entries = names.into_iter().zip(files);
        write(&core, entries, Pipe::new(sink), actor, &meta).await
    };
    Zipping {
        writer: Some(Box::pin(writer)),
        source,
        failed: None,
    }
    .boxed()
}

/// The ZIP as the connection takes it: the writer runs on the connection's own task, polled
/// whenever the pipe is empty, so a piece goes from the file's reader to the socket without
/// passing through another task. The pipe ends when the writer is done or gave up; which one
/// it was comes last.
struct Zipping {
    writer: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send>>>,
    source: tokio::sync::mpsc::Receiver<Bytes>,
    failed: Option<io::Error>,
}

impl futures::Stream for Zipping {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Ok(piece) = this.source.try_recv() {
                return Poll::Ready(Some(Ok(piece)));
            }
            let Some(writer) = this.writer.as_mut() else {
                return Poll::Ready(this.failed.take().map(Err));
            };
            match writer.as_mut().poll(cx) {
                Poll::Ready(outcome) => {
                    this.writer = None;
                    this.failed = outcome.err();
                }
                // Waiting for its file's next piece, or for room it has just filled.
                Poll::Pending if this.source.is_empty() => return Poll::Pending,
                Poll::Pending => {}
            }
        }
    }
}

/// The writer's end of the pipe to the connection: each write goes out as one piece, in order.
/// What async_zip writes is its own records (copied: they are small) and each file's data, which
/// it passes on untouched; a piece [`Lent`] before it is written goes out as it is, uncopied.
struct Pipe {
    sink: PollSender<Bytes>,
    lent: Lent,
}

/// The piece of a file being written into the archive, shared with the [`Pipe`] underneath.
#[derive(Clone, Default)]
struct Lent(Arc<Mutex<Option<Bytes>>>);

impl Lent {
    fn lend(&self, piece: Option<Bytes>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = piece;
        }
    }

    /// `buf` as a piece: a part of the lent piece when it lies within it, else a copy.
    fn piece_of(&self, buf: &[u8]) -> Bytes {
        let lent = self.0.lock().ok().and_then(|slot| slot.clone());
        match lent {
            Some(lent) if within(buf, &lent) => lent.slice_ref(buf),
            _ => Bytes::copy_from_slice(buf),
        }
    }
}

/// Whether `part` lies in `whole`'s memory.
fn within(part: &[u8], whole: &[u8]) -> bool {
    let (start, end) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    let at = part.as_ptr() as usize;
    !part.is_empty() && at >= start && at + part.len() <= end
}

impl Pipe {
    fn new(sink: tokio::sync::mpsc::Sender<Bytes>) -> Self {
        Self {
            sink: PollSender::new(sink),
            lent: Lent::default(),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the connection went away")
}

impl tokio::io::AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.sink.poll_reserve(cx)).map_err(|_| closed())?;
        this.sink
            .send_item(this.lent.piece_of(buf))
            .map_err(|_| closed())?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().sink.close();
        Poll::Ready(Ok(()))
    }
}

async fn write(
    core: &Core,
    entries: impl Iterator<Item = (String, file::Model)>,
    sink: Pipe,
    actor: Actor,
    meta: &RequestMeta,
) -> io::Result<()> {
    let lent = sink.lent.clone();
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
            let piece = piece?;
            lent.lend(Some(piece.clone()));
            writer.write_all(&piece).await?;
        }
        lent.lend(None);
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

    #[tokio::test]
    async fn a_lent_piece_goes_out_uncopied_and_records_are_copied() {
        use tokio::io::AsyncWriteExt as _;
        let (sink, mut source) = tokio::sync::mpsc::channel(PIPE);
        let mut pipe = Pipe::new(sink);
        let piece = Bytes::from(vec![7u8; 1000]);
        pipe.lent.lend(Some(piece.clone()));
        pipe.write_all(&piece[10..500]).await.expect("write");
        pipe.write_all(b"a record").await.expect("write");
        pipe.lent.lend(None);
        pipe.write_all(&piece[..4]).await.expect("write");
        let data = source.recv().await.expect("data");
        assert_eq!((data.as_ptr(), data.len()), (piece[10..].as_ptr(), 490));
        let record = source.recv().await.expect("record");
        assert_eq!(&record[..], b"a record");
        let copied = source.recv().await.expect("copy");
        assert_eq!(&copied[..], &piece[..4]);
        assert_ne!(copied.as_ptr(), piece.as_ptr(), "no piece lent: copied");
    }

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
