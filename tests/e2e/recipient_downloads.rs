//! How a recipient's downloads count: a download takes its place before the first byte, keeps
//! it when it delivers the file's last byte, gives it back when it stops short; a resumed
//! download (curl -C -) is served and, once a download is complete, free.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, Topology, User, eventually, pattern, pdf, ten_at_once_deliver_one};

/// The report's `share.downloaded` events once there are `count` of them.
async fn ended_downloads(app: &TestApp, user: &User, share: &str, count: usize) -> Vec<Value> {
    eventually(
        "downloads' ends recorded",
        Duration::from_secs(30),
        || async {
            let report = app
                .get_json(
                    &format!("/api/v1/shares/{share}/activity"),
                    Some(&user.token),
                )
                .await;
            let ended: Vec<Value> = report["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter(|e| e["action"] == "share.downloaded")
                .cloned()
                .collect();
            if ended.len() >= count {
                return Ok(ended);
            }
            Err(format!("{} of {count} ends recorded", ended.len()))
        },
    )
    .await
}

async fn share_of(app: &TestApp, user: &User, share: &str) -> Value {
    app.get_json(
        &format!("/api/v1/shares/{share}/activity?limit=1"),
        Some(&user.token),
    )
    .await["share"]
        .clone()
}

async fn get(app: &TestApp, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.http.get(format!("{url}/download"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("download")
}

async fn a_cut_download_gives_its_place_back_and_curl_resumes_it(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    // Bigger than what loopback buffers hold, so that the server sees the cut.
    let bytes = pdf(&pattern(24 << 20, 3));
    let (_, url, share) = app
        .shared_link(
            &ann,
            "large.pdf",
            bytes.clone(),
            &json!({ "max_downloads": 1 }),
        )
        .await;

    // The first attempt breaks off after a megabyte.
    let mut cut = get(&app, &url, &[]).await;
    assert_eq!(cut.status(), StatusCode::OK);
    let etag = cut.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(cut.headers()["accept-ranges"], "bytes");
    let mut received = Vec::new();
    while received.len() < 1 << 20 {
        received.extend_from_slice(&cut.chunk().await.expect("chunk").expect("more"));
    }
    drop(cut);
    let ended = ended_downloads(&app, &ann, &share, 1).await;
    assert_eq!(ended[0]["details"]["completed"], false);
    let delivered = ended[0]["details"]["bytes"].as_u64().expect("bytes");
    assert!(delivered < bytes.len() as u64, "{delivered}");
    assert_eq!(
        share_of(&app, &ann, &share).await["downloads_used"],
        0,
        "its place given back"
    );

    // curl resumes it from what arrived (Range: bytes=N-): that download is the one counted.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("large.pdf");
    std::fs::write(&path, &received).expect("partial file");
    let status = std::process::Command::new("curl")
        .args(["-s", "-f", "-C", "-", "-o"])
        .arg(&path)
        .arg(format!("{url}/download"))
        .status()
        .expect("curl");
    assert!(status.success(), "curl: {status}");
    assert!(
        std::fs::read(&path).expect("file") == bytes,
        "the resumed file is whole"
    );
    app.wait_for_completed_downloads(&ann, &share, 1).await;
    assert_eq!(share_of(&app, &ann, &share).await["downloads_used"], 1);

    // Used up: a whole download, and a HEAD (the same answer), are refused.
    assert_eq!(get(&app, &url, &[]).await.status(), StatusCode::GONE);
    let head = app
        .http
        .head(format!("{url}/download"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), StatusCode::GONE);
    // A resumed download of the completed one is still served, and free.
    let resumed = get(&app, &url, &[("range", "bytes=1000-"), ("if-range", &etag)]).await;
    assert_eq!(resumed.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resumed.headers()["content-range"],
        format!("bytes 1000-{}/{}", bytes.len() - 1, bytes.len()).as_str()
    );
    assert!(resumed.bytes().await.expect("body")[..] == bytes[1000..]);
    // Not a resumption: from the first byte, or for other content (another tag).
    assert_eq!(
        get(&app, &url, &[("range", "bytes=0-999")]).await.status(),
        StatusCode::GONE
    );
    let other = get(
        &app,
        &url,
        &[("range", "bytes=1000-"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(other.status(), StatusCode::GONE);
    let ended = ended_downloads(&app, &ann, &share, 3).await;
    assert_eq!(ended[1]["details"]["completed"], true);
    assert_eq!(ended[2]["details"]["counted"], false);
    let share_now = share_of(&app, &ann, &share).await;
    assert_eq!(
        (
            share_now["downloads_used"].as_i64(),
            share_now["downloads_completed"].as_i64()
        ),
        (Some(1), Some(1))
    );
    app.stop().await;
}

async fn ten_parallel_downloads_of_a_one_download_link_deliver_it_once(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let bytes = pdf(&pattern(2 << 20, 4));
    let (_, url, share) = app
        .shared_link(
            &ann,
            "once.pdf",
            bytes.clone(),
            &json!({ "max_downloads": 1 }),
        )
        .await;
    let delivered = ten_at_once_deliver_one(&app, &format!("{url}/download")).await;
    assert!(delivered == bytes);
    app.wait_for_completed_downloads(&ann, &share, 1).await;
    assert_eq!(share_of(&app, &ann, &share).await["downloads_used"], 1);
    assert_eq!(get(&app, &url, &[]).await.status(), StatusCode::GONE);
    app.stop().await;
}

both_topologies!(
    a_cut_download_gives_its_place_back_and_curl_resumes_it,
    ten_parallel_downloads_of_a_one_download_link_deliver_it_once,
);
