//! Writing an object of a local store: a staging file filled on a blocking thread, renamed into
//! place once it is on stable storage. Writeback of each part starts as soon as the part is
//! written, so the final fdatasync waits only for the tail: otherwise a big upload sat in the
//! page cache until its end and then waited a second or more for the disk (the kernel starts
//! writing back only when gigabytes are dirty).

use std::io::Write as _;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rand::Rng as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How much is written before its writeback is started.
const WRITEBACK_EVERY: u64 = 8 << 20;
/// Pieces (sealed chunks, 64 KiB) waiting for the writing thread: 512 KiB per upload. At 32
/// (2 MiB) sixteen uploads at once, waiting on the disk, held 24 MiB more between them and the
/// service's processes peaked at 158 MiB together (129 MiB at 8); one upload alone is as fast.
const PIECES_IN_FLIGHT: usize = 8;

enum Message {
    Piece(Bytes),
    /// Everything was sent: make it durable and put it in place.
    Commit,
}

pub struct LocalWriter {
    messages: mpsc::Sender<Message>,
    thread: JoinHandle<std::io::Result<()>>,
}

/// The staging file of `target`: object_store's naming (`{name}#{digits}`), which the orphan
/// pass recognises when a crash leaves one behind.
fn staging_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(format!("#{}", rand::rng().random::<u32>()));
    PathBuf::from(name)
}

impl LocalWriter {
    /// Starts writing `target` (the file of an object under a local store's root).
    pub fn create(target: PathBuf) -> Self {
        let (messages, mut incoming) = mpsc::channel(PIECES_IN_FLIGHT);
        let thread = tokio::task::spawn_blocking(move || {
            let staging = staging_path(&target);
            let result = write_staging(&staging, &target, &mut incoming);
            if result.is_err() {
                let _ = std::fs::remove_file(&staging);
            }
            result
        });
        Self { messages, thread }
    }

    pub async fn write(&mut self, piece: Bytes) -> std::io::Result<()> {
        if self.messages.send(Message::Piece(piece)).await.is_ok() {
            return Ok(());
        }
        // The thread stopped on an error; it is in its result.
        Err(stopped(&mut self.thread).await)
    }

    /// Makes the object durable and visible.
    pub async fn finish(mut self) -> std::io::Result<()> {
        if self.messages.send(Message::Commit).await.is_err() {
            return Err(stopped(&mut self.thread).await);
        }
        drop(self.messages);
        self.thread.await.map_err(std::io::Error::other)?
    }

    /// Abandons the object; the staging file is removed.
    pub async fn abort(self) {
        drop(self.messages);
        let _ = self.thread.await;
    }
}

async fn stopped(thread: &mut JoinHandle<std::io::Result<()>>) -> std::io::Error {
    match thread.await {
        Ok(Err(err)) => err,
        Ok(Ok(())) => std::io::Error::other("the object was already finished"),
        Err(err) => std::io::Error::other(err),
    }
}

/// How often creating a staging file is tried again when its directory vanished meanwhile.
const DIRECTORY_RACES: usize = 100;

/// Creates `file` in `dir`, making the directories as needed. The store deletes a directory
/// once its last object goes (`with_automatic_cleanup`, up to the root), so another task may
/// remove `dir` or its parent between their creation and the file's: then they are made again.
/// (CI saw an upload answered with a 500 when the worker removed the last quarantined object as
/// the upload began.)
fn create_in(dir: &Path, file: &Path) -> std::io::Result<std::fs::File> {
    use std::io::ErrorKind::{AlreadyExists, NotFound};
    let mut races = 0;
    loop {
        let vanished = match std::fs::create_dir_all(dir) {
            // How `create_dir_all` reports a directory removed under it.
            Err(err) if matches!(err.kind(), NotFound | AlreadyExists) => err,
            Err(err) => return Err(err),
            Ok(()) => match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(file)
            {
                Err(err) if err.kind() == NotFound => err,
                opened => return opened,
            },
        };
        if races == DIRECTORY_RACES {
            return Err(vanished);
        }
        races += 1;
    }
}

fn write_staging(
    staging: &Path,
    target: &Path,
    incoming: &mut mpsc::Receiver<Message>,
) -> std::io::Result<()> {
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("an object path has a directory"))?;
    let mut file = create_in(dir, staging)?;
    let (mut written, mut started) = (0u64, 0u64);
    loop {
        match incoming.blocking_recv() {
            Some(Message::Piece(piece)) => {
                file.write_all(&piece)?;
                written += piece.len() as u64;
                if written - started >= WRITEBACK_EVERY {
                    // POSIX_FADV_DONTNEED starts writeback of the dirty range without waiting
                    // (pages still being written stay cached). Only a hint: errors are ignored.
                    let _ = rustix::fs::fadvise(
                        &file,
                        started,
                        NonZeroU64::new(written - started),
                        rustix::fs::Advice::DontNeed,
                    );
                    started = written;
                }
            }
            Some(Message::Commit) => break,
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "the object was abandoned",
                ));
            }
        }
    }
    file.sync_data()?;
    drop(file);
    std::fs::rename(staging, target)?;
    // The rename itself is durable only once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finished_object_is_in_place_and_nothing_else_is() {
        let root = tempfile::tempdir().expect("tempdir");
        let target = root.path().join("blobs/f/b");
        let mut writer = LocalWriter::create(target.clone());
        let piece = Bytes::from(vec![7u8; 1 << 20]);
        for _ in 0..(WRITEBACK_EVERY >> 20) + 3 {
            writer.write(piece.clone()).await.expect("write");
        }
        writer.finish().await.expect("finish");
        let written = std::fs::read(&target).expect("the object");
        assert_eq!(written.len() as u64, WRITEBACK_EVERY + (3 << 20));
        assert!(written.iter().all(|b| *b == 7));
        assert_eq!(names(&root.path().join("blobs/f")), ["b"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_is_created_while_the_store_removes_emptied_directories() {
        use object_store::{ObjectStoreExt as _, PutPayload, local::LocalFileSystem, path::Path};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let root = tempfile::tempdir().expect("tempdir");
        let store = LocalFileSystem::new_with_prefix(root.path())
            .expect("a local store")
            .with_automatic_cleanup(true);
        let done = Arc::new(AtomicBool::new(false));
        // Another object in the same directory, written and deleted over and over: each
        // deletion removes `blobs/f` and `blobs` when nothing else is left in them.
        let churn = tokio::spawn({
            let done = done.clone();
            async move {
                let other = Path::from("blobs/f/other");
                while !done.load(Ordering::Relaxed) {
                    store.put(&other, PutPayload::from_static(b"x")).await?;
                    store.delete(&other).await?;
                }
                Ok::<_, object_store::Error>(())
            }
        });
        let dir = root.path().join("blobs/f");
        let created = tokio::task::spawn_blocking(move || {
            (0..5_000).try_for_each(|i| {
                let file = dir.join(format!("s{i}"));
                create_in(&dir, &file)?;
                std::fs::remove_file(&file)
            })
        })
        .await
        .expect("the creating thread");
        done.store(true, Ordering::Relaxed);
        churn
            .await
            .expect("the churning task")
            .expect("the store's own writes");
        created.expect("every file is created although its directories keep vanishing");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_object_leaves_nothing() {
        let root = tempfile::tempdir().expect("tempdir");
        let target = root.path().join("quarantine/q");
        let mut writer = LocalWriter::create(target.clone());
        writer
            .write(Bytes::from_static(b"sealed"))
            .await
            .expect("write");
        writer.abort().await;
        assert!(!target.exists());
        assert!(names(&root.path().join("quarantine")).is_empty());
    }
}
