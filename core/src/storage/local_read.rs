//! Reading objects of a local store (in large pieces, on the blocking pool) and removing the
//! staging files that interrupted writes left behind.

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt as _};

use super::{LOCAL_READ_SIZE, ReadError};
use crate::crypto::stream::ChunkReader;

/// Reads opened on threads of their own at once. Each holds a blocking-pool thread for as long
/// as its client takes to receive the file, so slow clients could otherwise take the whole pool;
/// past this many, a read is opened on the response's task as before.
pub(super) const THREADED_READS: usize = 8;
/// What of the opened chunks a ranged read passes on: the first `skip` bytes are dropped, then
/// `want` bytes are kept.
pub(super) struct Trim {
    pub(super) skip: usize,
    pub(super) want: u64,
}

impl Trim {
    /// The part of an opened chunk that is wanted, if any (without copying it).
    pub(super) fn apply(&mut self, chunk: Vec<u8>) -> Option<Bytes> {
        let mut chunk = Bytes::from(chunk);
        let drop = self.skip.min(chunk.len());
        let _ = chunk.split_to(drop);
        self.skip -= drop;
        chunk.truncate(self.want.min(chunk.len() as u64) as usize);
        self.want -= chunk.len() as u64;
        (!chunk.is_empty()).then_some(chunk)
    }
}

/// Opened chunks a threaded read may hold before the response takes them (64 KiB each).
const IN_FLIGHT: usize = 8;

pub(super) fn remove_partials_under(
    root: &std::path::Path,
    older_than: std::time::Duration,
) -> usize {
    let is_partial = |name: &str| {
        name.rsplit_once('#')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                dirs.push(path);
                continue;
            }
            let stale = meta
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= older_than);
            if stale
                && is_partial(&entry.file_name().to_string_lossy())
                && std::fs::remove_file(&path).is_ok()
            {
                removed += 1;
                let _ = std::fs::remove_dir(&dir); // only succeeds when nothing else is left
            }
        }
    }
    removed
}

/// Opens a local object, checks that it has the size its layout says, and reads the first piece
/// of `range`.
pub(super) fn open_local(
    path: &std::path::Path,
    range: std::ops::Range<u64>,
    expected: u64,
) -> Result<(std::fs::File, Bytes), ReadError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::NotFound),
        Err(err) => return Err(err.into()),
    };
    let actual = file.metadata()?.len();
    if actual != expected {
        return Err(ReadError::WrongSize { expected, actual });
    }
    let first = read_piece(&mut file, range)?;
    Ok((file, first))
}

/// The next piece of `range` (at most [`LOCAL_READ_SIZE`] bytes) of a local file.
fn read_piece(file: &mut std::fs::File, range: std::ops::Range<u64>) -> std::io::Result<Bytes> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let want = (range.end - range.start).min(LOCAL_READ_SIZE as u64) as usize;
    let mut piece = vec![0u8; want];
    file.seek(SeekFrom::Start(range.start))?;
    file.read_exact(&mut piece)?;
    Ok(Bytes::from(piece))
}

/// Reads `range` of a local file in large pieces on the blocking pool.
pub(super) fn read_file(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> BoxStream<'static, Result<Bytes, ReadError>> {
    stream::try_unfold(
        (file, range.start, range.end),
        |(mut file, pos, end)| async move {
            if pos >= end {
                return Ok(None);
            }
            let (file, piece) = tokio::task::spawn_blocking(move || {
                read_piece(&mut file, pos..end).map(|piece| (file, piece))
            })
            .await
            .map_err(std::io::Error::other)??;
            let next = pos + piece.len() as u64;
            Ok(Some((piece, (file, next, end))))
        },
    )
    .boxed()
}

/// Reads `range` of a local file and opens it on a thread of the blocking pool, handing the
/// opened chunks on through a small bounded channel: the next chunks are opened on one core
/// while the response sends the ones before on the other. A chunk is passed on only once its
/// tag has verified; a failure ends the stream with it. The thread stops when the response is
/// dropped; `permit` is given back when it does.
pub(super) fn open_on_thread(
    mut file: std::fs::File,
    range: std::ops::Range<u64>,
    mut reader: ChunkReader,
    mut trim: Trim,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> BoxStream<'static, Result<Bytes, ReadError>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut pos = range.start;
        let mut opened = Vec::new();
        while pos < range.end {
            let step = read_piece(&mut file, pos..range.end)
                .map_err(ReadError::from)
                .and_then(|piece| {
                    pos += piece.len() as u64;
                    reader.update(&piece, &mut opened).map_err(ReadError::from)
                });
            if let Err(err) = step {
                let _ = tx.blocking_send(Err(err));
                return;
            }
            for chunk in opened.drain(..) {
                if let Some(bytes) = trim.apply(chunk)
                    && tx.blocking_send(Ok(bytes)).is_err()
                {
                    return; // the response is gone
                }
            }
        }
        if let Err(err) = reader.finish() {
            let _ = tx.blocking_send(Err(err.into()));
        }
    });
    stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures::TryStreamExt as _;
    use object_store::path::Path;
    use uuid::Uuid;

    use super::super::Storage;
    use super::THREADED_READS;
    use crate::crypto::SecretKey;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_past_the_threaded_limit_are_opened_in_place_and_all_complete() {
        let root = tempfile::tempdir().expect("tempdir");
        let url = url::Url::from_directory_path(root.path()).expect("a directory URL");
        let storage = Storage::from_url(&url, &[]).expect("a local store");
        let (key, id, path) = (
            SecretKey::generate(),
            Uuid::new_v4(),
            Path::from("blobs/f/b"),
        );
        let content: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut writer = storage
            .create_sealed(path.clone(), &key, id)
            .await
            .expect("create");
        writer.write(&content).await.expect("write");
        writer.finish().await.expect("finish");

        // More long reads at once than there are threads for, none of them read yet.
        let mut reads = Vec::new();
        for _ in 0..THREADED_READS + 2 {
            let read = storage
                .read_sealed(&path, &key, id, content.len() as u64, None)
                .await
                .expect("a read");
            reads.push(read);
        }
        assert_eq!(storage.threaded.available_permits(), 0);
        for read in reads {
            let pieces: Vec<bytes::Bytes> = read.try_collect().await.expect("the whole file");
            assert!(pieces.concat() == content, "every read gives the file");
        }
        // Each thread gives its permit back once its read is done.
        let deadline = Instant::now() + Duration::from_secs(10);
        while storage.threaded.available_permits() < THREADED_READS {
            assert!(Instant::now() < deadline, "permits were not given back");
            tokio::task::yield_now().await;
        }
    }
}
