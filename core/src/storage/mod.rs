//! Sealed objects in an object store (a local directory or S3). Everything written here is
//! stream-format ciphertext; plaintext exists only in memory, one chunk at a time.

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt as _, WriteMultipart,
};
use url::Url;
use uuid::Uuid;

mod local;
mod local_read;
mod writer;

pub use local_read::Opening;
use local_read::{
    THREADED_READS, Trim, open_local, open_on_threads, read_file, remove_partials_under,
};
use writer::Sink;
pub use writer::{SealError, SealedWriter};

use local::LocalWriter;

use crate::crypto::stream::{ChunkReader, HEADER_LEN, Layout, Opener};
use crate::crypto::{CryptoError, SecretKey};

/// The part size of multipart uploads to S3 (its minimum). Local objects are written by
/// [`LocalWriter`] instead.
const S3_PART_SIZE: usize = 5 * 1024 * 1024;
/// The largest object S3 copies in one `CopyObject` request.
const S3_COPY_LIMIT: u64 = 5 << 30;
/// Parts in flight per transfer; with the part size this bounds a transfer's memory.
const PART_CONCURRENCY: usize = 2;
/// Sealed bytes from which a local read is opened on a thread of its own (below, one trip to
/// the blocking pool reads it and it is opened in place).
const PIPELINE_FROM: u64 = 1 << 20;
/// How much of a local file one read takes (object_store's own stream reads 8 KiB at a time).
const LOCAL_READ_SIZE: usize = 256 * 1024;

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local store, where interrupted writes leave staging files.
    local_root: Option<std::path::PathBuf>,
    /// Permits for reads opened on threads of their own, one per thread (see
    /// `local_read::THREADED_READS`).
    threaded: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.store)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("object has {actual} bytes, expected {expected}")]
    WrongSize { expected: u64, actual: u64 },
    #[error("object not found")]
    NotFound,
    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("reading a stored object: {0}")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// True when the stored bytes themselves are wrong (tampering or corruption).
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Self::Crypto(_) | Self::WrongSize { .. } | Self::NotFound
        )
    }
}

pub fn quarantine_path(file_id: Uuid) -> Path {
    Path::from(format!("quarantine/{file_id}"))
}

/// Each encryption run writes its own object, so a repeated job can never overwrite the blob
/// that the database points to.
pub fn blob_path(file_id: Uuid, seal_id: Uuid) -> Path {
    Path::from(format!("blobs/{file_id}/{seal_id}"))
}

impl Storage {
    /// Opens the store at `url`; `aws` holds the standard `AWS_*` settings for S3.
    pub fn from_url(url: &Url, aws: &[(String, String)]) -> anyhow::Result<Self> {
        let mut local_root = None;
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| anyhow::anyhow!("COFFER_STORAGE_URL: not a local path: {url}"))?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating storage directory {}", dir.display()))?;
                local_root = Some(dir.clone());
                Arc::new(
                    LocalFileSystem::new_with_prefix(&dir)
                        .with_context(|| format!("opening storage directory {}", dir.display()))?
                        .with_automatic_cleanup(true)
                        // A file is marked ready only once its blob is on stable storage.
                        .with_fsync(true),
                )
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .context("COFFER_STORAGE_URL: s3:// URL needs a bucket")?;
                let mut builder = AmazonS3Builder::new();
                for (key, value) in aws {
                    if let Ok(key) = key
                        .to_ascii_lowercase()
                        .parse::<object_store::aws::AmazonS3ConfigKey>()
                    {
                        builder = builder.with_config(key, value);
                    }
                }
                let s3 = builder.with_bucket_name(bucket).build().context(
                    "configuring S3 storage from COFFER_STORAGE_URL and AWS_* variables",
                )?;
                let prefix = url.path().trim_matches('/');
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix))
                }
            }
            other => anyhow::bail!("COFFER_STORAGE_URL: unsupported scheme {other}"),
        };
        Ok(Self {
            store,
            local_root,
            threaded: Arc::new(tokio::sync::Semaphore::new(THREADED_READS)),
        })
    }

    /// Starts sealing a new object at `path` under `key`.
    pub async fn create_sealed(
        &self,
        path: Path,
        key: &SecretKey,
        file_id: Uuid,
    ) -> Result<SealedWriter, SealError> {
        let sink = match &self.local_root {
            Some(root) => Sink::Local(LocalWriter::create(root.join(path.as_ref()))),
            None => {
                let upload = self.store.put_multipart(&path).await?;
                Sink::Store(WriteMultipart::new_with_chunk_size(upload, S3_PART_SIZE))
            }
        };
        SealedWriter::start(sink, key, file_id).await
    }

    /// Streams the plaintext bytes `start..=end` (or all) of a sealed object, opening only the
    /// chunks that cover them, on as many threads as `opening` says when the object is local and
    /// the read long. Any tampering ends the stream with an error.
    pub async fn read_sealed(
        &self,
        path: &Path,
        key: &SecretKey,
        file_id: Uuid,
        plaintext_len: u64,
        range: Option<(u64, u64)>,
        opening: Opening,
    ) -> Result<BoxStream<'static, Result<Bytes, ReadError>>, ReadError> {
        let layout = Layout::new(plaintext_len);
        let (start, end) = match range {
            Some(range) => range,
            None if plaintext_len == 0 => (0, 0),
            None => (0, plaintext_len - 1),
        };
        let chunks = layout.chunks_covering(start, end);
        let (first, last) = (*chunks.start(), *chunks.end());
        let sealed = layout.sealed_range(first, last);
        let trim = Trim {
            skip: (start - first * crate::crypto::stream::CHUNK_SIZE as u64) as usize,
            want: if plaintext_len == 0 {
                0
            } else {
                end - start + 1
            },
        };

        // A long read of a local object is read and opened on threads of its own, so that
        // opening the next chunks overlaps what the reader does with the ones before.
        if let Some(root) = &self.local_root
            && sealed.end - sealed.start >= PIPELINE_FROM
            && let Some(permit) = self.threads_for(opening)
        {
            let file_path = root.join(path.as_ref());
            let expected = layout.sealed_len();
            let (file, header) = tokio::task::spawn_blocking(move || {
                open_local(&file_path, 0..HEADER_LEN as u64, expected)
            })
            .await
            .map_err(std::io::Error::other)??;
            let opener = Opener::new(key, file_id, &header)?;
            return Ok(open_on_threads(
                file,
                opener,
                layout,
                first..=last,
                trim,
                permit,
            ));
        }

        // The header is needed first; when the range begins at chunk 0 it comes in the same read.
        let (header, body) = if first == 0 {
            let mut body = self.get(path, 0..sealed.end, layout).await?;
            let mut header = Vec::with_capacity(HEADER_LEN);
            while header.len() < HEADER_LEN {
                let Some(piece) = body.next().await else {
                    return Err(CryptoError::Header.into());
                };
                let mut piece = piece?;
                let take = (HEADER_LEN - header.len()).min(piece.len());
                header.extend_from_slice(&piece.split_to(take));
                if !piece.is_empty() {
                    body = stream::once(async move { Ok(piece) }).chain(body).boxed();
                }
            }
            (header, body)
        } else {
            let header = self.get(path, 0..HEADER_LEN as u64, layout).await?;
            let header: Vec<Bytes> = header.try_collect().await?;
            (
                header.concat(),
                self.get(path, sealed.clone(), layout).await?,
            )
        };
        let opener = Opener::new(key, file_id, &header)?;
        let reader = ChunkReader::new(opener, layout, first, last);
        // Each opened chunk is passed on as it is (64 KiB), never copied into a bigger piece.
        let state = (body, Some(reader), trim, VecDeque::new());
        let plain = stream::try_unfold(
            state,
            |(mut body, mut reader, mut trim, mut ready)| async move {
                loop {
                    if let Some(chunk) = ready.pop_front() {
                        return Ok(Some((chunk, (body, reader, trim, ready))));
                    }
                    let Some(open) = reader.as_mut() else {
                        return Ok(None);
                    };
                    match body.next().await {
                        Some(piece) => {
                            let mut opened = Vec::new();
                            open.update(&piece?, &mut opened)?;
                            ready.extend(opened.into_iter().filter_map(|c| trim.apply(c)));
                        }
                        None => {
                            reader.take().map(ChunkReader::finish).transpose()?;
                            return Ok(None);
                        }
                    }
                }
            },
        );
        Ok(plain.boxed())
    }

    async fn get(
        &self,
        path: &Path,
        range: std::ops::Range<u64>,
        layout: Layout,
    ) -> Result<BoxStream<'static, Result<Bytes, ReadError>>, ReadError> {
        if let Some(root) = &self.local_root {
            // One trip to the blocking pool opens the file, checks its size and reads the first
            // piece (object_store's own read takes one trip to open and another to read): a
            // small download needs no more. Object paths are ids, the same on disk.
            let file_path = root.join(path.as_ref());
            let expected = layout.sealed_len();
            let first_range = range.clone();
            let (file, first) =
                tokio::task::spawn_blocking(move || open_local(&file_path, first_range, expected))
                    .await
                    .map_err(std::io::Error::other)??;
            let rest = range.start + first.len() as u64..range.end;
            return Ok(stream::once(async move { Ok(first) })
                .chain(read_file(file, rest))
                .boxed());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(path, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Err(ReadError::NotFound),
            Err(err) => return Err(err.into()),
        };
        if result.meta.size != layout.sealed_len() {
            return Err(ReadError::WrongSize {
                expected: layout.sealed_len(),
                actual: result.meta.size,
            });
        }
        Ok(match result.payload {
            GetResultPayload::File(file, _) => read_file(file, result.range),
            GetResultPayload::Stream(stream) => stream.map_err(ReadError::from).boxed(),
        })
    }

    /// Whether [`Storage::copy`] can copy an object of `sealed_len` bytes: always in a local
    /// store (a hard link), up to S3's 5 GiB limit of a single server-side copy otherwise.
    pub fn can_copy(&self, sealed_len: u64) -> bool {
        self.local_root.is_some() || sealed_len <= S3_COPY_LIMIT
    }

    /// Copies an object within the store without reading it: a hard link in a local store, a
    /// server-side copy in S3. The copy is on stable storage when this returns.
    pub async fn copy(&self, from: &Path, to: &Path) -> Result<(), ReadError> {
        match self.store.copy(from, to).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(ReadError::NotFound),
            Err(err) => Err(err.into()),
        }
    }

    /// The stored (sealed) bytes of an object, for tooling and tests.
    pub async fn read_raw(&self, path: &Path) -> Result<Bytes, object_store::Error> {
        self.store.get(path).await?.bytes().await
    }

    /// Replaces an object's stored bytes as they are (restoring a backup, or tampering in tests).
    pub async fn write_raw(&self, path: &Path, bytes: Bytes) -> Result<(), object_store::Error> {
        self.store.put(path, bytes.into()).await.map(|_| ())
    }

    /// Deletes an object; one that is already gone is fine.
    pub async fn delete(&self, path: &Path) -> Result<(), object_store::Error> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Lists object paths under a prefix (for sweeps and tests).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Path>, object_store::Error> {
        let prefix = Path::from(prefix);
        self.store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
    }

    /// Objects under a prefix with their last-modified times, as the store pages them.
    pub fn list_dated(
        &self,
        prefix: &str,
    ) -> BoxStream<'static, Result<(Path, chrono::DateTime<chrono::Utc>), object_store::Error>>
    {
        self.store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| (meta.location, meta.last_modified))
            .boxed()
    }

    /// Deletes the staging files that writes interrupted by a crash left in a local store
    /// (object_store names them `{object}#{n}` and lists only finished objects), once they
    /// have not been written to for `older_than`. S3 keeps unfinished multipart uploads out
    /// of sight instead; a bucket lifecycle rule removes them (README). Returns how many.
    pub async fn remove_stale_partials(&self, older_than: std::time::Duration) -> usize {
        let Some(root) = self.local_root.clone() else {
            return 0;
        };
        tokio::task::spawn_blocking(move || remove_partials_under(&root, older_than))
            .await
            .unwrap_or(0)
    }

    /// A cheap round trip for readiness checks.
    pub async fn check(&self) -> Result<(), object_store::Error> {
        let mut listing = self.store.list(Some(&Path::from("blobs")));
        listing.next().await.transpose()?;
        Ok(())
    }
}
