//! A 1 GiB file up and down through the real binary, and a bundle over 4 GiB down as one ZIP,
//! with the service's peak memory measured.

use std::time::{Duration, Instant};

use crate::common::{Client, Process, eventually};

use futures::StreamExt as _;
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};

const SIZE: u64 = 1 << 30;
const PIECE: usize = 256 * 1024;
/// What a 1 GiB round trip may add to the service's resident memory (its buffers, its pools):
/// it would be a gibibyte if anything held the file.
const GROWTH_LIMIT_KIB: u64 = 32 * 1024;
/// A sanity cap on the whole debug binary's resident memory, idle included (about 42 MiB).
const RSS_LIMIT_KIB: u64 = 80 * 1024;
/// What signing in may leave resident: sessions, caches, a pool connection; not argon2's 19 MiB.
const ARGON2_SLACK_KIB: u64 = 8 * 1024;

fn start_service() -> (Process, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let vars = [
        (
            "COFFER_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        ),
        ("COFFER_BIND".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    (Process::start("serve", &vars), data)
}

/// The service's resident set once start-up is over: two readings 250 ms apart within 512 KiB.
async fn settled_rss_kib(service: &Process) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = service.rss_kib();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = service.rss_kib();
        if now.abs_diff(last) < 512 {
            return now;
        }
        assert!(Instant::now() < deadline, "RSS keeps changing: {now} KiB");
        last = now;
    }
}

/// The `i`-th piece of the test file: a fixed random block stamped with its index, cheap to
/// regenerate (this test binary is not optimised).
fn piece(block: &[u8], i: u64) -> Vec<u8> {
    let mut bytes = block.to_vec();
    bytes[..8].copy_from_slice(&i.to_be_bytes());
    if i == 0 {
        bytes[..4].copy_from_slice(b"PK\x03\x04"); // validates as an archive
    }
    bytes
}

/// What both tests begin with: the service started, its idle memory read, and an account
/// signed in, with argon2's memory given back.
struct Started {
    service: Process,
    _data: tempfile::TempDir,
    /// The service's resident set once start-up was over, in KiB.
    idle: u64,
    client: Client,
    token: String,
}

/// Waits until file `id` has settled, and checks it is `ready` with the SHA-256 of what was sent.
async fn ready_as_sent(client: &Client, token: &str, id: &str, sha256: &str, within: Duration) {
    let path = format!("/api/v1/files/{id}");
    let file = eventually("the file settling", within, || async {
        let file = client.get_json(&path, Some(token)).await;
        match file["status"].as_str() {
            Some("ready" | "rejected") => Ok(file),
            _ => Err(file.to_string()),
        }
    })
    .await;
    assert_eq!(file["status"], "ready", "{file}");
    assert_eq!(file["sha256"], sha256);
}

async fn signed_in(email: &str) -> Started {
    let (service, data) = start_service();
    let idle = settled_rss_kib(&service).await;
    eprintln!("idle RSS {} MiB", idle / 1024);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1800))
        .build()
        .expect("client");
    let base = service.base.clone().expect("serves the API");
    let client = Client { base, http };
    let token = client.sign_in(email, "correct horse battery", true).await;
    // Signing up and in ran argon2 (19 MiB); its memory goes back once no login waits.
    eventually(
        "argon2's memory released",
        Duration::from_secs(10),
        || async {
            match service.rss_kib() {
                rss if rss > idle + ARGON2_SLACK_KIB => Err(format!("{rss} KiB, idle {idle} KiB")),
                _ => Ok(()),
            }
        },
    )
    .await;
    Started {
        service,
        _data: data,
        idle,
        client,
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "streams 1 GiB through the binary (about a minute); run by .ci/run"]
async fn one_gibibyte_round_trip_keeps_memory_flat() {
    let Started {
        service,
        _data,
        idle,
        client,
        token,
    } = signed_in("big@example.org").await;
    let http = client.http.clone();
    let base = client.base.clone();
    let url = |p: &str| format!("{base}{p}");

    let pieces = SIZE / PIECE as u64;
    let block = crate::common::pattern(PIECE, 42);
    let mut expected = Sha256::new();
    for i in 0..pieces {
        expected.update(piece(&block, i));
    }
    let body =
        futures::stream::iter(0..pieces).map(move |i| Ok::<_, std::io::Error>(piece(&block, i)));
    let expected = hex::encode(expected.finalize());
    let started = Instant::now();
    let body = reqwest::Body::wrap_stream(body);
    let id = client.put_upload(&token, "big.zip", body).await;
    eprintln!(
        "upload returned after {:?}; peak RSS so far {} MiB",
        started.elapsed(),
        service.peak_rss_kib() / 1024
    );

    ready_as_sent(&client, &token, &id, &expected, Duration::from_secs(600)).await;
    eprintln!(
        "ready after {:?}; peak RSS so far {} MiB",
        started.elapsed(),
        service.peak_rss_kib() / 1024
    );

    let download = http
        .get(url(&format!("/api/v1/files/{id}/content")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), StatusCode::OK);
    let mut stream = download.bytes_stream();
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        received += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(received, SIZE);
    assert_eq!(hex::encode(hasher.finalize()), expected);
    eprintln!("downloaded after {:?}", started.elapsed());

    let peak = service.peak_rss_kib();
    eprintln!("peak RSS of the service: {} MiB", peak / 1024);
    assert!(
        peak.saturating_sub(idle) < GROWTH_LIMIT_KIB,
        "the round trip grew the service's RSS by {} KiB (idle {idle} KiB, peak {peak} KiB), over {GROWTH_LIMIT_KIB} KiB",
        peak.saturating_sub(idle)
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {peak} KiB exceeds {RSS_LIMIT_KIB} KiB"
    );
}

/// Files of the bundle over 4 GiB: five of 880 MiB, 4.3 GiB in all.
const BUNDLE_FILES: u64 = 5;
const BUNDLE_FILE_SIZE: u64 = 880 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "zips a 4.3 GiB bundle through the binary (minutes; needs python3 and unzip); run by .ci/run"]
async fn a_bundle_over_four_gibibytes_downloads_as_one_zip_with_memory_flat() {
    let Started {
        service,
        _data,
        idle,
        client,
        token,
    } = signed_in("bundle@example.org").await;
    let http = client.http.clone();

    let pieces = BUNDLE_FILE_SIZE / PIECE as u64;
    let started = Instant::now();
    let mut files = Vec::new();
    for n in 0..BUNDLE_FILES {
        let seed = 100 + u8::try_from(n).expect("few files");
        let block = crate::common::pattern(PIECE, seed);
        let mut expected = Sha256::new();
        for i in 0..pieces {
            expected.update(piece(&block, i));
        }
        let body = futures::stream::iter(0..pieces)
            .map(move |i| Ok::<_, std::io::Error>(piece(&block, i)));
        let name = format!("part {n}.zip");
        let id = client
            .put_upload(&token, &name, reqwest::Body::wrap_stream(body))
            .await;
        files.push((id, name, hex::encode(expected.finalize())));
    }
    for (id, _, expected) in &files {
        ready_as_sent(&client, &token, id, expected, Duration::from_secs(1200)).await;
    }
    eprintln!("{BUNDLE_FILES} files ready after {:?}", started.elapsed());
    let ids: Vec<&str> = files.iter().map(|(id, _, _)| id.as_str()).collect();
    let created: serde_json::Value = client
        .post_json(
            "/api/v1/shares",
            &serde_json::json!({ "file_ids": ids }),
            Some(&token),
        )
        .await
        .json()
        .await
        .expect("json");
    let link = created["shares"][0]["url"].as_str().expect("a link");

    // The ZIP goes to disk here (the test's, not the service's), for the unzip tools.
    let zipped = tempfile::tempdir().expect("tempdir");
    let path = zipped.path().join("all.zip");
    let mut out = tokio::fs::File::create(&path).await.expect("create");
    let download = http.get(format!("{link}/zip")).send().await.expect("zip");
    assert_eq!(download.status(), StatusCode::OK);
    let mut stream = download.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        received += chunk.len() as u64;
        tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
            .await
            .expect("write");
    }
    tokio::io::AsyncWriteExt::flush(&mut out)
        .await
        .expect("flush");
    assert!(received > 4 << 30, "{received} bytes");
    eprintln!("zip of {received} bytes after {:?}", started.elapsed());
    let peak = service.peak_rss_kib();
    eprintln!("peak RSS of the service: {} MiB", peak / 1024);
    assert!(
        peak.saturating_sub(idle) < GROWTH_LIMIT_KIB,
        "the bundle grew the service's RSS by {} KiB (idle {idle} KiB, peak {peak} KiB), over {GROWTH_LIMIT_KIB} KiB",
        peak.saturating_sub(idle)
    );

    let path = path.to_str().expect("path");
    let tested = std::process::Command::new("unzip")
        .args(["-t", path])
        .output()
        .expect("unzip (apt: unzip)");
    let said = String::from_utf8_lossy(&tested.stdout);
    assert!(
        tested.status.success() && said.contains("No errors detected"),
        "{said}"
    );
    let listing: serde_json::Value = serde_json::from_str(&crate::common::python(
        "import hashlib, json, sys, zipfile\n\
         z = zipfile.ZipFile(sys.argv[1])\n\
         out = []\n\
         for i in z.infolist():\n\
         \x20   h = hashlib.sha256()\n\
         \x20   with z.open(i) as f:\n\
         \x20       for block in iter(lambda: f.read(1 << 20), b''):\n\
         \x20           h.update(block)\n\
         \x20   out.append([i.filename, i.file_size, h.hexdigest()])\n\
         print(json.dumps([out, z.start_dir]))",
        &[path],
    ))
    .expect("json");
    // The central directory starts past 4 GiB: only its ZIP64 record can say where.
    assert!(
        listing[1].as_u64().expect("offset") > 0xFFFF_FFFF,
        "{}",
        listing[1]
    );
    let listing = listing[0].as_array().expect("entries");
    assert_eq!(listing.len(), files.len());
    for (entry, (_, name, expected)) in listing.iter().zip(&files) {
        assert_eq!(entry[0], name.as_str());
        assert_eq!(entry[1], BUNDLE_FILE_SIZE);
        assert_eq!(entry[2], expected.as_str(), "{name}");
    }
}
