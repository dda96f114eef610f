//! Reading objects of a local store (in large pieces, on the blocking pool) and removing the
//! staging files that interrupted writes left behind.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt as _};

use super::{LOCAL_READ_SIZE, ReadError};
use crate::crypto::stream::{Layout, Opener};

/// Blocking-pool threads that reads may be opened on at once (one per read, two for
/// [`Opening::TwoThreads`]). Each is held for as long as its client takes to receive the file,
/// so slow clients could otherwise take the whole pool; past this many, a read is opened on the
/// reader's task as before.
pub(super) const THREADED_READS: usize = 8;

/// How many threads a long read of a local object is opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// One, beside the reader: a download sends what one core opens on the other.
    OneThread,
    /// Two, each opening every other piece: the reader does little with what is opened (it
    /// checks it), so both cores open.
    TwoThreads,
}

impl super::Storage {
    /// Permits for a threaded read: as many as `opening` asks for, or one if that many are not
    /// free, or none (the read is opened on the reader's task).
    pub(super) fn threads_for(
        &self,
        opening: Opening,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let wanted: u32 = match opening {
            Opening::OneThread => 1,
            Opening::TwoThreads => 2,
        };
        (1..=wanted)
            .rev()
            .find_map(|n| self.threaded.clone().try_acquire_many_owned(n).ok())
    }
}

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

/// Pieces of [`PIECE_CHUNKS`] each thread of a threaded read may hold before the reader takes
/// them.
const IN_FLIGHT: usize = 2;

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

/// Chunks a thread of a threaded read opens at a time (256 KiB of plaintext), and passes on
/// together.
const PIECE_CHUNKS: u64 = 4;

/// Opens chunks `chunks` of a local sealed object of `layout` on `threads` threads of the
/// blocking pool, handing them on in order through small bounded channels. With one thread the
/// next chunks are opened on one core while the reader sends the ones before on the other (a
/// download); with two, both cores open (validation, whose reader does little with them).
///
/// The chunks are taken in pieces of [`PIECE_CHUNKS`], thread `k` of `n` taking pieces `k`,
/// `k + n`, … Each chunk is read on its own (at its offset: the threads share the file) and
/// opened under its own index and last-chunk flag, so a chunk moved, dropped or cut short fails
/// as it would read in order. A chunk is passed on only once its tag has verified; a failure
/// ends the stream with it. The threads stop when the stream is dropped; `permit` (one per
/// thread) is given back when the last one does.
pub(super) fn open_on_threads(
    file: std::fs::File,
    opener: Opener,
    layout: Layout,
    chunks: RangeInclusive<u64>,
    mut trim: Trim,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> BoxStream<'static, Result<Bytes, ReadError>> {
    let threads = permit.num_permits().max(1);
    let (first, last) = (*chunks.start(), *chunks.end());
    let pieces = (last - first) / PIECE_CHUNKS + 1;
    let shared = Arc::new((file, opener, permit));
    let mut lanes = Vec::with_capacity(threads);
    for lane in 0..threads as u64 {
        let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
        lanes.push(rx);
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || {
            let (file, opener, _permit) = &*shared;
            for piece in (lane..pieces).step_by(threads) {
                let from = first + piece * PIECE_CHUNKS;
                let to = (from + PIECE_CHUNKS - 1).min(last);
                let opened = (from..=to)
                    .map(|index| open_chunk(file, opener, layout, index))
                    .collect::<Result<Vec<_>, _>>();
                let failed = opened.is_err();
                if tx.blocking_send(opened).is_err() || failed {
                    return; // the reader is gone, or has what stopped this read
                }
            }
        });
    }
    let mut next = 0;
    let mut ready = VecDeque::new();
    stream::poll_fn(move |cx| {
        loop {
            if let Some(bytes) = ready.pop_front() {
                return Poll::Ready(Some(Ok(bytes)));
            }
            if next == pieces {
                return Poll::Ready(None);
            }
            let lane = &mut lanes[(next % threads as u64) as usize];
            let opened = match std::task::ready!(lane.poll_recv(cx)) {
                Some(opened) => opened,
                None => Err(std::io::Error::other("a reading thread stopped").into()),
            };
            match opened {
                Ok(opened) => ready.extend(opened.into_iter().filter_map(|c| trim.apply(c))),
                Err(err) => {
                    next = pieces;
                    return Poll::Ready(Some(Err(err)));
                }
            }
            next += 1;
        }
    })
    .boxed()
}

/// Reads chunk `index` of a local sealed object at its offset and opens it.
fn open_chunk(
    file: &std::fs::File,
    opener: &Opener,
    layout: Layout,
    index: u64,
) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::FileExt as _;
    let range = layout.sealed_range(index, index);
    let mut chunk = vec![0u8; (range.end - range.start) as usize];
    file.read_exact_at(&mut chunk, range.start)?;
    opener.open(index, layout.is_last(index), &mut chunk)?;
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures::TryStreamExt as _;
    use object_store::path::Path;
    use uuid::Uuid;

    use super::super::{Opening, Storage};
    use super::THREADED_READS;
    use crate::crypto::SecretKey;

    /// A local store holding one sealed object of `len` bytes: (its directory, the store, key,
    /// file id, path, plaintext).
    async fn one_object(len: u32) -> (tempfile::TempDir, Storage, SecretKey, Uuid, Path, Vec<u8>) {
        let root = tempfile::tempdir().expect("tempdir");
        let url = url::Url::from_directory_path(root.path()).expect("a directory URL");
        let storage = Storage::from_url(&url, &[]).expect("a local store");
        let (key, id, path) = (
            SecretKey::generate(),
            Uuid::new_v4(),
            Path::from("blobs/f/b"),
        );
        let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut writer = storage
            .create_sealed(path.clone(), &key, id)
            .await
            .expect("create");
        writer.write(&content).await.expect("write");
        writer.finish().await.expect("finish");
        (root, storage, key, id, path, content)
    }

    /// A read of the whole object.
    async fn read(
        storage: &Storage,
        key: &SecretKey,
        id: Uuid,
        path: &Path,
        len: usize,
        opening: Opening,
    ) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, super::ReadError>> {
        storage
            .read_sealed(path, key, id, len as u64, None, opening)
            .await
            .expect("a read starts")
    }

    /// Waits until every threaded read has given its permits back.
    async fn permits_back(storage: &Storage) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while storage.threaded.available_permits() < THREADED_READS {
            assert!(Instant::now() < deadline, "permits were not given back");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_past_the_threaded_limit_are_opened_in_place_and_all_complete() {
        let (_root, storage, key, id, path, content) = one_object(3 << 20).await;

        // More long reads at once than there are threads for, none of them read yet.
        let mut reads = Vec::new();
        for _ in 0..THREADED_READS + 2 {
            reads.push(read(&storage, &key, id, &path, content.len(), Opening::OneThread).await);
        }
        assert_eq!(storage.threaded.available_permits(), 0);
        for read in reads {
            let pieces: Vec<bytes::Bytes> = read.try_collect().await.expect("the whole file");
            assert!(pieces.concat() == content, "every read gives the file");
        }
        // Each thread gives its permit back once its read is done.
        permits_back(&storage).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_on_two_threads_gives_the_file_and_its_ranges_in_order() {
        let len = (3 << 20) + 1000;
        let (_root, storage, key, id, path, content) = one_object(len).await;
        let len = u64::from(len);
        for range in [None, Some((70_000, 2_900_000)), Some((1 << 20, len - 1))] {
            let read = storage
                .read_sealed(&path, &key, id, len, range, Opening::TwoThreads)
                .await
                .expect("a read");
            assert_eq!(
                storage.threaded.available_permits(),
                THREADED_READS - 2,
                "two threads open it"
            );
            let pieces: Vec<bytes::Bytes> = read.try_collect().await.expect("the read");
            let (start, end) = range.unwrap_or((0, len - 1));
            assert!(
                pieces.concat() == content[start as usize..=end as usize],
                "{range:?} is what was sealed, in order"
            );
            permits_back(&storage).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_on_two_threads_fails_on_a_chunk_altered_or_moved() {
        use crate::crypto::stream::{HEADER_LEN, SEALED_CHUNK};
        let (root, storage, key, id, path, content) = one_object(3 << 20).await;
        let on_disk = root.path().join("blobs/f/b");
        let sealed = std::fs::read(&on_disk).expect("the object");
        let chunk = |i: usize| HEADER_LEN + i * SEALED_CHUNK..HEADER_LEN + (i + 1) * SEALED_CHUNK;
        let mut flipped = sealed.clone();
        flipped[chunk(21).start + 5] ^= 1;
        // Two chunks that two different threads open (pieces of four chunks each).
        let mut swapped = sealed.clone();
        swapped[chunk(9)].copy_from_slice(&sealed[chunk(13)]);
        swapped[chunk(13)].copy_from_slice(&sealed[chunk(9)]);
        for altered in [flipped, swapped] {
            std::fs::write(&on_disk, &altered).expect("altering the object");
            let err = read(
                &storage,
                &key,
                id,
                &path,
                content.len(),
                Opening::TwoThreads,
            )
            .await
            .try_collect::<Vec<_>>()
            .await
            .expect_err("an altered object does not open");
            assert!(err.is_integrity(), "an integrity failure: {err}");
            permits_back(&storage).await;
        }
    }
}
