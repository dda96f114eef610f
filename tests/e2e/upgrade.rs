//! Upgrades are safe: a data directory written by an earlier release (`tests/e2e/fixtures/
//! upgrade-*/`, made by `make_upgrade_fixture.py` with that release's binary) is migrated by
//! this code, and every file downloads as it was, every link works or stays dead as it was
//! left, the key versions keep their states, and the audit chain verifies. The stored words
//! (file status, share state, key state, audit actions) must keep their bytes for this to hold.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::common::{Client, Process, copy_dir, eventually};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/fixtures");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    found.sort();
    assert!(
        !found.is_empty(),
        "no upgrade fixture under {}",
        dir.display()
    );
    found
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn an_earlier_release_s_data_migrates_and_everything_is_found_again() {
    for fixture in fixtures() {
        check(&fixture).await;
    }
}

async fn check(fixture: &Path) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let made_by = manifest["made_by"].as_str().unwrap_or("?");
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    copy_dir(&fixture.join("data"), &data);
    // git keeps no modes; the keyring is the operator's secret.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(data.join("keyring"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod keyring");
    }
    let vars = [
        ("COFFER_DATA_DIR".to_owned(), data.display().to_string()),
        ("COFFER_BIND".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    let service = Process::start("serve", &vars);
    let base = service.base.clone().expect("serve listens");
    let client = Client::new(&base);
    let http = client.http.clone();
    let admin = &manifest["admin"];
    let token = client
        .sign_in(
            admin["email"].as_str().expect("email"),
            admin["password"].as_str().expect("password"),
            false,
        )
        .await;
    let get = |path: String| http.get(format!("{base}{path}")).bearer_auth(&token).send();

    // Every file, in the state it was left in; ready ones byte for byte.
    let contents = &manifest["contents"];
    for file in manifest["files"].as_array().expect("files") {
        let (id, name) = (file["id"].as_str().expect("id"), &file["name"]);
        let status = file["status"].as_str().expect("status");
        let meta = get(format!("/api/v1/files/{id}")).await.expect("metadata");
        if status == "deleted" {
            assert_eq!(meta.status(), StatusCode::NOT_FOUND, "{made_by}: {name}");
            continue;
        }
        let meta: Value = meta.json().await.expect("json");
        assert_eq!(meta["status"], status, "{made_by}: {name}: {meta}");
        if status == "ready" {
            let body = get(format!("/api/v1/files/{id}/content"))
                .await
                .expect("content");
            assert_eq!(body.status(), StatusCode::OK, "{made_by}: {name}");
            let bytes = body.bytes().await.expect("bytes");
            assert_eq!(sha256_hex(&bytes), file["sha256"], "{made_by}: {name}");
            let expected = contents[name.as_str().expect("name")]
                .as_str()
                .expect("content");
            assert_eq!(bytes.as_ref(), expected.as_bytes(), "{made_by}: {name}");
        }
    }

    // Every link: live ones deliver, dead ones stay dead.
    for link in manifest["links"].as_array().expect("links") {
        let token = link["token"].as_str().expect("token");
        let file = link["file"].as_str().expect("file");
        let url = format!("{base}/s/{token}/download");
        let response = match link["password"].as_str() {
            Some(password) => http.post(&url).form(&[("password", password)]).send(),
            None => http.get(&url).send(),
        }
        .await
        .expect("download");
        if link["state"] == "active" {
            assert_eq!(response.status(), StatusCode::OK, "{made_by}: {file}");
            let bytes = response.bytes().await.expect("bytes");
            assert_eq!(
                bytes.as_ref(),
                contents[file].as_str().expect("content").as_bytes(),
                "{made_by}: link to {file}"
            );
        } else {
            assert!(
                response.status().is_client_error(),
                "{made_by}: {} link to {file}: {}",
                link["state"],
                response.status()
            );
        }
    }

    // The key versions keep their states (active, retiring, retired are stored words).
    let keys: Value = get("/api/v1/admin/keys".into())
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    for version in keys["versions"].as_array().expect("versions") {
        let number = version["version"].as_i64().expect("version").to_string();
        if let Some(state) = manifest["key_versions"].get(&number) {
            assert_eq!(&version["state"], state, "{made_by}: key version {number}");
        }
    }

    // The chain the earlier release sealed verifies, and what this one adds links onto it.
    let id = client
        .upload_ready(&token, "after.txt", b"after the upgrade\n".to_vec())
        .await;
    assert!(!id.is_empty());
    let head = manifest["audit_head_seq"].as_i64().expect("head");
    let sealed = std::time::Duration::from_secs(30);
    eventually("the new events sealed", sealed, || async {
        let report: Value = get("/api/v1/admin/audit/verify".into())
            .await
            .expect("verify")
            .json()
            .await
            .expect("json");
        assert_eq!(report["ok"], true, "{made_by}: {report}");
        if report["head_seq"].as_i64().is_some_and(|h| h > head) {
            Ok(())
        } else {
            Err(format!(
                "{made_by}: nothing sealed after the upgrade: {report}"
            ))
        }
    })
    .await;
    drop(service);
}
