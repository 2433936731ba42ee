//! Building the guest components, writing test manifests, and a small HTTP client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spin_test_host::{HostOptions, SpinHost};
use tempfile::TempDir;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace directory exists")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs `cargo build --target wasm32-wasip2 --release` with `args`; cargo makes it a no-op when nothing
/// changed.
fn cargo_build_wasm(args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--release",
            "--target-dir",
        ])
        .arg(target_dir())
        .args(args)
        .status()
        .context("running cargo")?;
    ensure!(status.success(), "cargo build {args:?} failed: {status}");
    Ok(())
}

fn release_wasm(name: &str) -> PathBuf {
    target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"))
}

/// The probe components of `fixtures/`, built once per test run.
pub fn probe() -> &'static Path {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/Cargo.toml");
        cargo_build_wasm(&["--manifest-path", manifest.to_str().expect("UTF-8 path")])
            .expect("building the probe fixtures");
    });
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| release_wasm("probe"))
}

/// The cron probe of `fixtures/`.
pub fn cron_probe() -> PathBuf {
    probe();
    release_wasm("cron_probe")
}

/// The product's `webhook` component, built from the workspace.
pub fn webhook() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let manifest = workspace_root().join("Cargo.toml");
        cargo_build_wasm(&[
            "--manifest-path",
            manifest.to_str().expect("UTF-8 path"),
            "-p",
            "webhook",
        ])
        .expect("building the webhook component");
    });
    release_wasm("webhook")
}

/// An app in a temporary directory: its manifest and its state directory.
pub struct TestApp {
    pub dir: TempDir,
}

impl TestApp {
    /// Writes `manifest` as `spin.toml`; `{probe}` and `{cron_probe}` stand for the fixtures' paths.
    pub fn new(manifest: &str) -> Self {
        let manifest = manifest
            .replace("{probe}", &probe().display().to_string())
            .replace("{cron_probe}", &cron_probe().display().to_string());
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("spin.toml"), manifest).expect("writing spin.toml");
        Self { dir }
    }

    pub fn options(&self) -> HostOptions {
        HostOptions::new(
            self.dir.path().join("spin.toml"),
            self.dir.path().join(".spin"),
        )
    }

    pub async fn start(&self) -> SpinHost {
        SpinHost::start(self.options())
            .await
            .expect("starting the host")
    }

    /// Writes `contents` as `config/runtime-config.toml`, in a directory of its own so that paths relative
    /// to the file differ from paths relative to the manifest, and returns options that pass it, like
    /// `spin up --runtime-config-file`.
    pub fn options_with_runtime_config(&self, contents: &str) -> HostOptions {
        let dir = self.dir.path().join("config");
        std::fs::create_dir_all(&dir).expect("creating the config directory");
        let file = dir.join("runtime-config.toml");
        std::fs::write(&file, contents).expect("writing runtime-config.toml");
        let mut options = self.options();
        options.runtime_config = Some(file);
        options
    }

    pub async fn start_with(&self, variables: &[(&str, &str)]) -> Result<SpinHost> {
        let mut options = self.options();
        options.variables = variables
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>();
        SpinHost::start(options).await
    }
}

/// Sends a request and returns the status and the body as text.
pub async fn request(method: &str, url: &str, body: &str) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a valid request");
    let response = client.request(request).await.expect("sending the request");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("reading the response")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub async fn get(url: &str) -> (u16, String) {
    request("GET", url, "").await
}

/// The value of `name=` in the probe's echo output.
pub fn echoed<'a>(body: &'a str, name: &str) -> &'a str {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in {body:?}"))
}

/// The results of spawned request tasks, in order.
pub async fn join_all<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("a request task panicked"));
    }
    results
}

/// The error of a start that must fail, with its causes.
pub async fn start_error(app: &TestApp) -> String {
    refusal(app.options()).await
}

/// The error of a start with `options` that must fail, with its causes.
pub async fn refusal(options: HostOptions) -> String {
    match SpinHost::start(options).await {
        Ok(_) => panic!("the host started but should have refused"),
        Err(e) => format!("{e:#}"),
    }
}
