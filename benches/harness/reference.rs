//! The reference implementation users would otherwise run (`../shared/reference/flask-seed/`:
//! Flask under gunicorn, 2 workers × 4 threads, files encrypted in memory at upload), measured
//! in the same run as Coffer: a file up and down, and 4 KiB downloads under load. The harness
//! runs it only when that folder is there; its Python packages come from PyPI into a virtual
//! environment under `~/.cache/coffer/reference-venv`, made once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use super::big::mb_per_s;
use super::load::{self, CONCURRENCY, LoadRun};

/// The largest body the reference accepts is 128 MiB; this is the size the issue compares at.
pub const SIZE: u64 = 120 << 20;

/// What one run of the reference measured.
pub struct ReferenceRun {
    pub size: u64,
    /// The upload, until the redirect that follows it: the file is encrypted and usable then.
    pub upload: Duration,
    pub download: Duration,
    /// The largest `VmHWM` of its processes (the gunicorn workers hold whole files).
    pub peak_rss_mib: f64,
    pub small: Vec<LoadRun>,
}

impl ReferenceRun {
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "reference (Flask): {} MiB: upload until usable {:.2} s ({:.0} MB/s), download {:.2} s ({:.0} MB/s); peak RSS {:.0} MiB",
            self.size >> 20,
            self.upload.as_secs_f64(),
            mb_per_s(self.size, self.upload),
            self.download.as_secs_f64(),
            mb_per_s(self.size, self.download),
            self.peak_rss_mib
        )];
        lines.extend(self.small.iter().map(|r| {
            format!(
                "reference (Flask): {} at concurrency {}: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
                r.what, r.concurrency, r.per_second, r.p50_ms, r.p99_ms
            )
        }));
        lines
    }
}

/// The reference's folder, when this checkout sits beside `shared/`.
fn source() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/flask-seed");
    dir.join("seedapp.py").is_file().then_some(dir)
}

/// A virtual environment with the reference's pinned packages, made on first use.
fn venv(source: &Path) -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let venv = home.join(".cache/coffer/reference-venv");
    if venv.join("bin/gunicorn").is_file() {
        return venv;
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv");
    assert!(made.success(), "making the reference's virtual environment");
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "-r"])
        .arg(source.join("requirements.txt"))
        .status()
        .expect("pip install");
    assert!(installed.success(), "installing the reference's packages");
    venv
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The reference app running under gunicorn in a scratch copy of its folder.
pub struct Reference {
    child: Child,
    /// The scratch copy of its folder, with gunicorn's log.
    dir: tempfile::TempDir,
    base: String,
    /// The signed-in user's session cookie, as a `Cookie` header value.
    cookie: String,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Reference {
    /// Starts it and signs a user up; `None` (and a line saying so) without its folder.
    pub async fn start(http: &reqwest::Client) -> Option<Self> {
        let Some(source) = source() else {
            println!("reference (Flask): ../shared/reference/flask-seed/ is not here; skipped");
            return None;
        };
        let venv = tokio::task::spawn_blocking({
            let source = source.clone();
            move || venv(&source)
        })
        .await
        .expect("venv");
        let dir = tempfile::tempdir().expect("tempdir");
        super::common::copy_dir(&source, dir.path());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(venv.join("bin/gunicorn"))
            .args(["-w", "2", "-k", "gthread", "--threads", "4", "-b"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("seedapp:app")
            .current_dir(dir.path())
            .env("FLASK_SECRET", "bench-fixed-secret-0123456789abcdef")
            .env(
                "MASTER_KEY",
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("gunicorn.log")).expect("log file"))
            .spawn()
            .expect("gunicorn starts");
        let mut reference = Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            cookie: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http
            .get(format!("{}/login", reference.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the reference did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let signed_up = http
            .post(format!("{}/signup", reference.base))
            .form(&[("username", "bench"), ("password", "bench-password")])
            .send()
            .await
            .expect("sign up");
        assert_eq!(signed_up.status(), StatusCode::FOUND, "signed up");
        reference.cookie = signed_up
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("; ");
        assert!(reference.cookie.contains("session="), "a session cookie");
        Some(reference)
    }

    /// What gunicorn wrote to its log so far (it is removed with the scratch folder).
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gunicorn.log")).unwrap_or_default()
    }

    /// Uploads `size` bytes as one multipart field and finds the file's id on the list page.
    async fn upload(&self, http: &reqwest::Client, name: &str, size: u64) -> (String, Duration) {
        let content = super::common::pattern(usize::try_from(size).expect("fits"), 7);
        let part = reqwest::multipart::Part::bytes(content).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        let started = Instant::now();
        let response = http
            .post(format!("{}/upload", self.base))
            .header(COOKIE, &self.cookie)
            .multipart(form)
            .send()
            .await
            .unwrap_or_else(|err| panic!("upload: {err}\ngunicorn's log:\n{}", self.log()));
        let took = started.elapsed();
        assert_eq!(response.status(), StatusCode::FOUND, "uploaded");
        assert!(response.headers().contains_key(LOCATION));
        let list = http
            .get(&self.base)
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .expect("list")
            .text()
            .await
            .expect("page");
        // Each entry is `<a href="/download/{id}" data-name="{name}">`.
        let id = list
            .split("/download/")
            .skip(1)
            .find(|entry| entry.contains(&format!("data-name=\"{name}\"")))
            .and_then(|entry| entry.split('"').next())
            .expect("the file on the list")
            .to_owned();
        (id, took)
    }

    async fn download(&self, http: &reqwest::Client, id: &str) -> (u64, Duration) {
        let started = Instant::now();
        let response = http
            .get(format!("{}/download/{id}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .expect("download");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.bytes().await.expect("body");
        (body.len() as u64, started.elapsed())
    }

    fn peak_rss_mib(&self) -> f64 {
        let workers = std::fs::read_to_string(format!(
            "/proc/{}/task/{}/children",
            self.child.id(),
            self.child.id()
        ))
        .unwrap_or_default();
        let most = workers
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .chain([self.child.id()])
            .map(peak_rss_kib)
            .max()
            .unwrap_or(0);
        most as f64 / 1024.0
    }

    /// A big file up and down, then 4 KiB downloads under load at each concurrency.
    pub async fn measure(&self, http: &reqwest::Client, duration: Duration) -> ReferenceRun {
        let (id, upload) = self.upload(http, "big.zip", SIZE).await;
        let (got, download) = self.download(http, &id).await;
        assert_eq!(got, SIZE, "the download has the file's length");
        let (small, _) = self.upload(http, "small.pdf", 4096).await;
        let url = format!("{}/download/{small}", self.base);
        let header = format!("Cookie: {}", self.cookie);
        let runs = load::run_wrk("4 KiB download", &url, &header, duration).await;
        assert!(runs.len() == CONCURRENCY.len());
        ReferenceRun {
            size: SIZE,
            upload,
            download,
            peak_rss_mib: self.peak_rss_mib(),
            small: runs,
        }
    }
}
