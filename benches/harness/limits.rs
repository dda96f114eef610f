//! The machine's limits, measured with the code the service runs: the cipher and hash on one
//! core, the loopback network and the disk.

use std::io::{Read as _, Write as _};
use std::time::Instant;

use aes_gcm::aead::AeadInOut as _;
use aes_gcm::{Aes256Gcm, KeyInit as _};
use coffer::coffer_core::crypto::SecretKey;
use coffer::coffer_core::crypto::stream::{
    CHUNK_SIZE, ChunkReader, HEADER_LEN, Layout, Opener, Sealer,
};
use sha2::Digest as _;

/// Bytes per second of each limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// AES-256-GCM sealing 64 KiB chunks in place (the aes-gcm crate; no copies).
    pub aes_gcm: f64,
    /// The service's own sealing path (`Sealer`, fed 256 KiB pieces).
    pub sealer: f64,
    /// The service's own opening path (`ChunkReader`, fed 256 KiB pieces).
    pub opener: f64,
    /// SHA-256 (the sha2 crate, which uses SHA-NI where the CPU has it).
    pub sha256: f64,
    /// One TCP stream over loopback, 256 KiB writes and reads.
    pub loopback: f64,
    /// Sequential writes of 256 KiB, then fdatasync, to the data directory's disk.
    pub disk_write: f64,
    /// Sequential reads of 256 KiB of a file written and synced, its pages dropped from the
    /// cache first (as the service's own writer drops them behind an upload).
    pub disk_read: f64,
}

const BUFFER: usize = 256 << 20;
const PIECE: usize = 256 << 10;

fn rate(bytes: usize, started: Instant) -> f64 {
    bytes as f64 / started.elapsed().as_secs_f64()
}

/// The best of three runs: the machine is shared, and a limit is what it can do.
fn best(mut run: impl FnMut() -> f64) -> f64 {
    (0..3).map(|_| run()).fold(0.0, f64::max)
}

fn aes_gcm(buffer: &mut [u8]) -> f64 {
    let cipher = Aes256Gcm::new(SecretKey::generate().expose().into());
    let nonce = aes_gcm::Nonce::<aes_gcm::aead::consts::U12>::default();
    best(|| {
        let started = Instant::now();
        for chunk in buffer.chunks_mut(CHUNK_SIZE) {
            let tag = cipher
                .encrypt_inout_detached(&nonce, b"", chunk.into())
                .expect("seal");
            std::hint::black_box(tag);
        }
        rate(buffer.len(), started)
    })
}

/// A sealed copy of the buffer, to open again.
struct Sealed {
    key: SecretKey,
    id: uuid::Uuid,
    bytes: Vec<u8>,
}

/// Seals `buffer` as an upload does; `keep` collects the sealed bytes (outside the timing).
fn seal(buffer: &[u8], key: &SecretKey, id: uuid::Uuid, mut keep: Option<&mut Vec<u8>>) -> f64 {
    let (mut sealer, header) = Sealer::new(key, id);
    if let Some(keep) = keep.as_deref_mut() {
        keep.extend_from_slice(&header);
    }
    let mut out = Vec::new();
    let started = Instant::now();
    for piece in buffer.chunks(PIECE) {
        sealer.update(piece, &mut out).expect("seal");
        for chunk in out.drain(..) {
            match keep.as_deref_mut() {
                Some(keep) => keep.extend_from_slice(&chunk),
                None => drop(std::hint::black_box(chunk)),
            }
        }
    }
    let last = sealer.finish().expect("finish");
    let speed = rate(buffer.len(), started);
    if let Some(keep) = keep {
        keep.extend_from_slice(&last);
    }
    speed
}

fn sealer(buffer: &[u8]) -> (f64, Sealed) {
    let key = SecretKey::generate();
    let id = uuid::Uuid::now_v7();
    let speed = best(|| seal(buffer, &key, id, None));
    let mut bytes = Vec::with_capacity(buffer.len() + buffer.len() / CHUNK_SIZE * 16 + 64);
    seal(buffer, &key, id, Some(&mut bytes));
    (speed, Sealed { key, id, bytes })
}

fn opener(sealed: &Sealed, plaintext_len: usize) -> f64 {
    let (key, id, sealed) = (&sealed.key, sealed.id, &sealed.bytes);
    let layout = Layout::new(plaintext_len as u64);
    best(|| {
        let opener = Opener::new(key, id, &sealed[..HEADER_LEN]).expect("header");
        let mut reader = ChunkReader::new(opener, layout, 0, layout.chunk_count() - 1);
        let mut out = Vec::new();
        let started = Instant::now();
        for piece in sealed[HEADER_LEN..].chunks(PIECE) {
            reader.update(piece, &mut out).expect("open");
            std::hint::black_box(&out);
            out.clear();
        }
        reader.finish().expect("complete");
        rate(plaintext_len, started)
    })
}

fn sha256(buffer: &[u8]) -> f64 {
    best(|| {
        let started = Instant::now();
        let mut hasher = sha2::Sha256::new();
        for piece in buffer.chunks(PIECE) {
            hasher.update(piece);
        }
        std::hint::black_box(hasher.finalize());
        rate(buffer.len(), started)
    })
}

fn loopback() -> f64 {
    const TOTAL: usize = 4 << 30;
    best(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sender = std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            let piece = vec![7u8; PIECE];
            for _ in 0..TOTAL / PIECE {
                stream.write_all(&piece).expect("send");
            }
        });
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; PIECE];
        let started = Instant::now();
        let mut got = 0;
        while got < TOTAL {
            got += stream.read(&mut buf).expect("receive");
        }
        let speed = rate(TOTAL, started);
        sender.join().expect("sender");
        speed
    })
}

fn disk_write(dir: &std::path::Path) -> f64 {
    const TOTAL: usize = 2 << 30;
    best(|| {
        let path = dir.join("disk-bench");
        let started = Instant::now();
        write_synced(&path, TOTAL);
        let speed = rate(TOTAL, started);
        std::fs::remove_file(&path).expect("remove");
        speed
    })
}

/// The disk path's rate for `files` new files of `size` bytes each written at once, each by a
/// thread of its own as [`write_synced`] writes one: what [`super::concurrent`]'s uploads write,
/// without Coffer. Measured once, in the conditions of the moment (the page cache as the section
/// left it), since that is what it compares with; the files are removed afterwards.
pub fn write_at_once(files: usize, size: u64) -> f64 {
    let dir = super::stack::scratch_dir();
    let total = files * size as usize;
    let started = Instant::now();
    std::thread::scope(|threads| {
        for i in 0..files {
            let path = dir.path().join(format!("at-once-{i}"));
            threads.spawn(move || write_synced(&path, size as usize));
        }
    });
    rate(total, started)
}

/// Writes `total` bytes to a new file at `path` in pieces of [`PIECE`], then fdatasync.
fn write_synced(path: &std::path::Path, total: usize) {
    let piece = vec![7u8; PIECE];
    let mut file = std::fs::File::create(path).expect("create");
    for _ in 0..total / PIECE {
        file.write_all(&piece).expect("write");
    }
    file.sync_data().expect("fdatasync");
}

fn disk_read(dir: &std::path::Path) -> f64 {
    use std::io::Read as _;
    const TOTAL: usize = 2 << 30;
    let path = dir.join("disk-read-bench");
    write_synced(&path, TOTAL);
    let speed = best(|| {
        let mut file = std::fs::File::open(&path).expect("open");
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        let mut buffer = vec![0u8; PIECE];
        let (started, mut read) = (Instant::now(), 0);
        loop {
            match file.read(&mut buffer).expect("read") {
                0 => break,
                n => read += n,
            }
        }
        assert_eq!(read, TOTAL, "the whole file was read");
        rate(TOTAL, started)
    });
    std::fs::remove_file(&path).expect("remove");
    speed
}

pub async fn measure() -> Limits {
    tokio::task::spawn_blocking(|| {
        let mut buffer = super::common::pattern(BUFFER, 1);
        let (sealer, sealed) = sealer(&buffer);
        let opener = opener(&sealed, BUFFER);
        drop(sealed);
        let sha256 = sha256(&buffer);
        let aes_gcm = aes_gcm(&mut buffer);
        drop(buffer);
        let dir = super::stack::scratch_dir();
        Limits {
            aes_gcm,
            sealer,
            opener,
            sha256,
            loopback: loopback(),
            disk_write: disk_write(dir.path()),
            disk_read: disk_read(dir.path()),
        }
    })
    .await
    .expect("limits")
}
