//! Writing a sealed object: plaintext in, stream-format ciphertext out, chunk by chunk, to a
//! local file or an object store's multipart upload.

use bytes::Bytes;
use object_store::WriteMultipart;

use super::PART_CONCURRENCY;
use super::local::LocalWriter;
use uuid::Uuid;

use crate::crypto::stream::Sealer;
use crate::crypto::{CryptoError, SecretKey};

/// An object being sealed as plaintext arrives.
pub struct SealedWriter {
    sink: Sink,
    sealer: Sealer,
    sealed: Vec<Vec<u8>>,
}

/// Where sealed bytes go: a local file written by Coffer itself, or an object store's
/// multipart upload.
pub(super) enum Sink {
    Local(LocalWriter),
    Store(WriteMultipart),
}

impl Sink {
    async fn put(&mut self, bytes: Bytes) -> Result<(), SealError> {
        match self {
            Self::Local(local) => local.write(bytes).await?,
            Self::Store(upload) => {
                upload.wait_for_capacity(PART_CONCURRENCY).await?;
                upload.put(bytes);
            }
        }
        Ok(())
    }
}

impl SealedWriter {
    /// Seals into `sink` under `key`, starting with the stream's header.
    pub(super) async fn start(
        mut sink: Sink,
        key: &SecretKey,
        file_id: Uuid,
    ) -> Result<Self, SealError> {
        let (sealer, header) = Sealer::new(key, file_id);
        sink.put(Bytes::copy_from_slice(&header)).await?;
        Ok(Self {
            sink,
            sealer,
            sealed: Vec::new(),
        })
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), SealError> {
        self.sealer.update(data, &mut self.sealed)?;
        for chunk in std::mem::take(&mut self.sealed) {
            self.sink.put(Bytes::from(chunk)).await?;
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), SealError> {
        let last = self.sealer.finish()?;
        self.sink.put(Bytes::from(last)).await?;
        match self.sink {
            Sink::Local(local) => local.finish().await?,
            Sink::Store(upload) => {
                upload.finish().await?;
            }
        }
        Ok(())
    }

    /// Abandons the object; nothing is left behind.
    pub async fn abort(self) {
        match self.sink {
            Sink::Local(local) => local.abort().await,
            Sink::Store(upload) => {
                if let Err(err) = upload.abort().await {
                    tracing::warn!(error = %err, "aborting a partial upload failed");
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("writing a local object: {0}")]
    Local(#[from] std::io::Error),
}
