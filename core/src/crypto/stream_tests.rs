use super::*;

fn seal_all(key: &SecretKey, file_id: Uuid, data: &[u8], piece: usize) -> Vec<u8> {
    let (mut sealer, header) = Sealer::new(key, file_id);
    let mut out = vec![header.to_vec()];
    for part in data.chunks(piece.max(1)) {
        sealer.update(part, &mut out).expect("seal");
    }
    out.push(sealer.finish().expect("finish"));
    out.concat()
}

fn open_all(
    key: &SecretKey,
    file_id: Uuid,
    sealed: &[u8],
    len: u64,
) -> Result<Vec<u8>, CryptoError> {
    let layout = Layout::new(len);
    if sealed.len() as u64 != layout.sealed_len() {
        return Err(CryptoError::Open);
    }
    let opener = Opener::new(key, file_id, &sealed[..HEADER_LEN])?;
    let mut reader = ChunkReader::new(opener, layout, 0, layout.chunk_count() - 1);
    let mut out = Vec::new();
    // Feed in odd-sized pieces to exercise regrouping.
    for part in sealed[HEADER_LEN..].chunks(7777) {
        reader.update(part, &mut out)?;
    }
    reader.finish()?;
    Ok(out.concat())
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn round_trips_at_chunk_boundaries() {
    let key = SecretKey::generate();
    let id = Uuid::new_v4();
    for len in [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        10 * 1024 * 1024,
    ] {
        let data = pattern(len);
        for piece in [1000, CHUNK_SIZE, 3 * CHUNK_SIZE + 5] {
            if len > 1_000_000 && piece == 1000 {
                continue; // the 10 MiB case is fed in large pieces only, to keep the test quick
            }
            let sealed = seal_all(&key, id, &data, piece);
            assert_eq!(
                sealed.len() as u64,
                Layout::new(len as u64).sealed_len(),
                "len {len}"
            );
            let back = open_all(&key, id, &sealed, len as u64).expect("opens");
            assert!(
                back == data,
                "round trip of {len} bytes in pieces of {piece}"
            );
        }
    }
}

fn sample() -> (SecretKey, Uuid, Vec<u8>, Vec<u8>) {
    let key = SecretKey::generate();
    let id = Uuid::new_v4();
    let data = pattern(3 * CHUNK_SIZE + 100);
    let sealed = seal_all(&key, id, &data, CHUNK_SIZE);
    (key, id, data, sealed)
}

#[test]
fn a_flipped_byte_anywhere_fails() {
    let (key, id, data, sealed) = sample();
    for pos in [
        0,
        5,
        12,
        HEADER_LEN,
        HEADER_LEN + 100,
        HEADER_LEN + SEALED_CHUNK + 1,
        sealed.len() - 1,
    ] {
        let mut bad = sealed.clone();
        bad[pos] ^= 0x01;
        assert!(
            open_all(&key, id, &bad, data.len() as u64).is_err(),
            "flip at {pos}"
        );
    }
}

#[test]
fn truncation_fails() {
    let (key, id, data, sealed) = sample();
    let len = data.len() as u64;
    // Cut at the end of the file and at a chunk boundary, claiming the shorter length too.
    let cut_tail = &sealed[..sealed.len() - 1];
    assert!(open_all(&key, id, cut_tail, len).is_err());
    let boundary = HEADER_LEN + 3 * SEALED_CHUNK;
    assert!(open_all(&key, id, &sealed[..boundary], 3 * CHUNK_SIZE as u64).is_err());
    let mut reader = ChunkReader::new(
        Opener::new(&key, id, &sealed[..HEADER_LEN]).expect("header"),
        Layout::new(len),
        0,
        3,
    );
    let mut out = Vec::new();
    reader
        .update(&sealed[HEADER_LEN..boundary], &mut out)
        .expect("first chunks are fine");
    assert!(reader.finish().is_err(), "missing last chunk is detected");
}

#[test]
fn extension_fails() {
    let (key, id, data, mut sealed) = sample();
    sealed.extend_from_slice(&[0u8; 32]);
    assert!(open_all(&key, id, &sealed, data.len() as u64).is_err());
    let layout = Layout::new(data.len() as u64);
    let mut reader = ChunkReader::new(
        Opener::new(&key, id, &sealed[..HEADER_LEN]).expect("header"),
        layout,
        0,
        layout.chunk_count() - 1,
    );
    assert!(
        reader
            .update(&sealed[HEADER_LEN..], &mut Vec::new())
            .is_err()
    );
}

#[test]
fn dropped_or_reordered_chunks_fail() {
    let (key, id, data, sealed) = sample();
    let body = &sealed[HEADER_LEN..];
    let chunk = |i: usize| &body[i * SEALED_CHUNK..((i + 1) * SEALED_CHUNK).min(body.len())];
    let header = &sealed[..HEADER_LEN];
    let swapped = [header, chunk(1), chunk(0), chunk(2), chunk(3)].concat();
    assert!(open_all(&key, id, &swapped, data.len() as u64).is_err());
    let dropped = [header, chunk(0), chunk(2), chunk(3)].concat();
    assert!(open_all(&key, id, &dropped, (data.len() - CHUNK_SIZE) as u64).is_err());
    // A full middle chunk presented as the last one fails too.
    let early_end = [header, chunk(0), chunk(1)].concat();
    assert!(open_all(&key, id, &early_end, 2 * CHUNK_SIZE as u64).is_err());
}

#[test]
fn a_blob_moved_to_another_file_id_fails() {
    let (key, _id, data, sealed) = sample();
    assert!(open_all(&key, Uuid::new_v4(), &sealed, data.len() as u64).is_err());
}

#[test]
fn wrong_key_fails() {
    let (_key, id, data, sealed) = sample();
    assert!(open_all(&SecretKey::generate(), id, &sealed, data.len() as u64).is_err());
}

#[test]
fn any_chunk_opens_on_its_own_for_ranges() {
    let (key, id, data, sealed) = sample();
    let layout = Layout::new(data.len() as u64);
    let opener = Opener::new(&key, id, &sealed[..HEADER_LEN]).expect("header");
    for index in 0..layout.chunk_count() {
        let range = layout.sealed_range(index, index);
        let mut chunk = sealed[range.start as usize..range.end as usize].to_vec();
        opener
            .open(index, layout.is_last(index), &mut chunk)
            .expect("opens");
        let start = index as usize * CHUNK_SIZE;
        assert_eq!(chunk, data[start..(start + CHUNK_SIZE).min(data.len())]);
    }
    assert_eq!(
        layout.chunks_covering(CHUNK_SIZE as u64 - 1, CHUNK_SIZE as u64),
        0..=1
    );
}

#[test]
fn header_must_be_v1() {
    let key = SecretKey::generate();
    let id = Uuid::new_v4();
    let (_, header) = Sealer::new(&key, id);
    let mut bad = header;
    bad[4] = 2;
    assert_eq!(
        Opener::new(&key, id, &bad).map(|_| ()),
        Err(CryptoError::Header)
    );
    let mut bad = header;
    bad[5..9].copy_from_slice(&(1u32 << 30).to_be_bytes());
    assert_eq!(
        Opener::new(&key, id, &bad).map(|_| ()),
        Err(CryptoError::Header)
    );
    assert!(Opener::new(&key, id, &header[..10]).is_err());
}

/// The test vector in docs/FORMAT.md is what this code produces and opens.
#[test]
fn format_doc_test_vector_matches() {
    let doc = include_str!("../../../docs/FORMAT.md");
    let field = |name: &str| -> Vec<u8> {
        let line = doc
            .lines()
            .find_map(|l| {
                l.trim()
                    .trim_start_matches("- ")
                    .strip_prefix(&format!("{name}: "))
            })
            .unwrap_or_else(|| panic!("FORMAT.md lacks `{name}:`"));
        hex::decode(line.trim().trim_matches('`')).expect("hex")
    };
    let key = SecretKey::from_slice(&field("key")).expect("32-byte key");
    let id = Uuid::from_slice(&field("file_id")).expect("uuid");
    let prefix: [u8; NONCE_PREFIX_LEN] = field("nonce_prefix").try_into().expect("7 bytes");
    let plaintext = field("plaintext");
    let (mut sealer, header) = Sealer::with_nonce_prefix(&key, id, prefix);
    let mut out = vec![header.to_vec()];
    sealer.update(&plaintext, &mut out).expect("seal");
    out.push(sealer.finish().expect("finish"));
    let sealed = out.concat();
    assert_eq!(hex::encode(&sealed), hex::encode(field("sealed")));
    assert_eq!(
        open_all(&key, id, &sealed, plaintext.len() as u64).expect("opens"),
        plaintext
    );
}
