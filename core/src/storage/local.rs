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
/// Pieces (sealed chunks, 64 KiB) waiting for the writing thread.
const PIECES_IN_FLIGHT: usize = 32;

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

fn write_staging(
    staging: &Path,
    target: &Path,
    incoming: &mut mpsc::Receiver<Message>,
) -> std::io::Result<()> {
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("an object path has a directory"))?;
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(staging)?;
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
