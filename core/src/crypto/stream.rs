//! Stream format v1: chunked AES-256-GCM (STREAM, big-endian 32-bit counter).
//! Specified in docs/FORMAT.md; the chunk size is part of the format and never changes in place.

use aead_stream::{NewStream as _, StreamBE32, StreamPrimitive as _};
use aes_gcm::{Aes256Gcm, KeyInit as _};
use rand::RngCore as _;
use uuid::Uuid;

use super::{CryptoError, SecretKey};

pub const MAGIC: &[u8; 4] = b"CFR1";
pub const VERSION: u8 = 1;
pub const CHUNK_SIZE: usize = 64 * 1024;
pub const TAG_LEN: usize = 16;
pub const NONCE_PREFIX_LEN: usize = 7;
pub const HEADER_LEN: usize = 16;
/// Ciphertext size of a full chunk.
pub const SEALED_CHUNK: usize = CHUNK_SIZE + TAG_LEN;

type Stream = StreamBE32<Aes256Gcm>;

fn new_stream(key: &SecretKey, prefix: &[u8; NONCE_PREFIX_LEN]) -> Stream {
    let cipher = Aes256Gcm::new(key.expose().into());
    Stream::from_aead(cipher, prefix.into())
}

fn associated_data(header: &[u8; HEADER_LEN], file_id: Uuid) -> [u8; 32] {
    let mut aad = [0u8; 32];
    aad[..HEADER_LEN].copy_from_slice(header);
    aad[HEADER_LEN..].copy_from_slice(file_id.as_bytes());
    aad
}

fn encode_header(prefix: &[u8; NONCE_PREFIX_LEN]) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(MAGIC);
    header[4] = VERSION;
    header[5..9].copy_from_slice(&(CHUNK_SIZE as u32).to_be_bytes());
    header[9..].copy_from_slice(prefix);
    header
}

/// Where plaintext bytes live in a sealed object of a known plaintext length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub plaintext_len: u64,
}

impl Layout {
    pub fn new(plaintext_len: u64) -> Self {
        Self { plaintext_len }
    }

    /// Number of chunks; an empty plaintext still has one (empty, authenticated) chunk.
    pub fn chunk_count(&self) -> u64 {
        self.plaintext_len.div_ceil(CHUNK_SIZE as u64).max(1)
    }

    pub fn sealed_len(&self) -> u64 {
        HEADER_LEN as u64 + self.plaintext_len + self.chunk_count() * TAG_LEN as u64
    }

    /// Byte offset of chunk `index` in the sealed object.
    pub fn chunk_offset(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * SEALED_CHUNK as u64
    }

    /// The chunks holding plaintext bytes `start..=end` (inclusive, `end < plaintext_len`).
    pub fn chunks_covering(&self, start: u64, end: u64) -> std::ops::RangeInclusive<u64> {
        start / CHUNK_SIZE as u64..=end / CHUNK_SIZE as u64
    }

    /// Sealed byte range of chunks `first..=last`.
    pub fn sealed_range(&self, first: u64, last: u64) -> std::ops::Range<u64> {
        let end = if last + 1 >= self.chunk_count() {
            self.sealed_len()
        } else {
            self.chunk_offset(last + 1)
        };
        self.chunk_offset(first)..end
    }

    pub fn is_last(&self, index: u64) -> bool {
        index + 1 == self.chunk_count()
    }
}

/// Seals plaintext as it arrives. A full chunk is sealed only once more input shows it is not
/// the last one, so the final chunk always carries the last-chunk flag.
pub struct Sealer {
    stream: Stream,
    aad: [u8; 32],
    counter: u32,
    buf: Vec<u8>,
}

impl Sealer {
    /// Returns the sealer and the header that must be written first.
    pub fn new(key: &SecretKey, file_id: Uuid) -> (Self, [u8; HEADER_LEN]) {
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        rand::rng().fill_bytes(&mut prefix);
        Self::with_nonce_prefix(key, file_id, prefix)
    }

    /// For test vectors only: a nonce prefix must never repeat under one key.
    pub fn with_nonce_prefix(
        key: &SecretKey,
        file_id: Uuid,
        prefix: [u8; NONCE_PREFIX_LEN],
    ) -> (Self, [u8; HEADER_LEN]) {
        let header = encode_header(&prefix);
        let sealer = Self {
            stream: new_stream(key, &prefix),
            aad: associated_data(&header, file_id),
            counter: 0,
            buf: Vec::with_capacity(SEALED_CHUNK),
        };
        (sealer, header)
    }

    /// Feeds plaintext; every chunk completed by it is appended to `out`, sealed.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), CryptoError> {
        while !data.is_empty() {
            if self.buf.len() == CHUNK_SIZE {
                let sealed = self.seal_buffered(false)?;
                out.push(sealed);
            }
            let take = (CHUNK_SIZE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Seals the final chunk.
    pub fn finish(mut self) -> Result<Vec<u8>, CryptoError> {
        self.seal_buffered(true)
    }

    fn seal_buffered(&mut self, last: bool) -> Result<Vec<u8>, CryptoError> {
        let mut chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(SEALED_CHUNK));
        self.stream
            .encrypt_in_place(self.counter, last, &self.aad, &mut chunk)
            .map_err(|_| CryptoError::Seal)?;
        self.counter = self.counter.checked_add(1).ok_or(CryptoError::TooLarge)?;
        Ok(chunk)
    }
}

/// Opens chunks of one sealed object, in any order (for ranges).
pub struct Opener {
    stream: Stream,
    aad: [u8; 32],
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener")
    }
}

impl Opener {
    pub fn new(key: &SecretKey, file_id: Uuid, header: &[u8]) -> Result<Self, CryptoError> {
        let header: &[u8; HEADER_LEN] = header.try_into().map_err(|_| CryptoError::Header)?;
        if &header[..4] != MAGIC
            || header[4] != VERSION
            || header[5..9] != (CHUNK_SIZE as u32).to_be_bytes()
        {
            return Err(CryptoError::Header);
        }
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(&header[9..]);
        Ok(Self {
            stream: new_stream(key, &prefix),
            aad: associated_data(header, file_id),
        })
    }

    /// Authenticates and decrypts chunk `index` in place; on success `chunk` holds plaintext.
    pub fn open(&self, index: u64, last: bool, chunk: &mut Vec<u8>) -> Result<(), CryptoError> {
        let index = u32::try_from(index).map_err(|_| CryptoError::TooLarge)?;
        let full = chunk.len() == SEALED_CHUNK;
        // Only the last chunk may be short; a short middle chunk is truncation.
        if chunk.len() < TAG_LEN || (!last && !full) || chunk.len() > SEALED_CHUNK {
            return Err(CryptoError::Open);
        }
        self.stream
            .decrypt_in_place(index, last, &self.aad, chunk)
            .map_err(|_| CryptoError::Open)
    }
}

/// Regroups a sealed byte stream, starting at chunk `first`, into whole chunks and opens them.
pub struct ChunkReader {
    opener: Opener,
    layout: Layout,
    next: u64,
    end: u64,
    pending: Vec<u8>,
}

impl ChunkReader {
    /// Opens chunks `first..=last` of an object of `layout`.
    pub fn new(opener: Opener, layout: Layout, first: u64, last: u64) -> Self {
        Self {
            opener,
            layout,
            next: first,
            end: last + 1,
            pending: Vec::with_capacity(SEALED_CHUNK),
        }
    }

    fn expected_len(&self, index: u64) -> usize {
        let range = self.layout.sealed_range(index, index);
        (range.end - range.start) as usize
    }

    /// Feeds sealed bytes; each chunk they complete is appended to `out`, opened.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), CryptoError> {
        while !data.is_empty() {
            if self.next >= self.end {
                return Err(CryptoError::Open); // more bytes than the object can hold
            }
            let want = self.expected_len(self.next) - self.pending.len();
            let take = want.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if take == want {
                let mut chunk =
                    std::mem::replace(&mut self.pending, Vec::with_capacity(SEALED_CHUNK));
                self.opener
                    .open(self.next, self.layout.is_last(self.next), &mut chunk)?;
                self.next += 1;
                out.push(chunk);
            }
        }
        Ok(())
    }

    /// Fails unless every chunk asked for was read and opened.
    pub fn finish(self) -> Result<(), CryptoError> {
        if self.next == self.end && self.pending.is_empty() {
            Ok(())
        } else {
            Err(CryptoError::Open)
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
