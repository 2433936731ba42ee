//! Helpers for the end-to-end tests: where the workspace is, and the built components (built once per
//! test run by `scripts/build-components`; built here on demand when a test runs alone).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context};

pub mod app;
pub mod backlog;
pub mod s3_proxy;
pub mod spin;
/// The workloads live in `test_servers`, shared with the simulation (`tests/sim`).
pub use test_servers::workload;

/// The four components: Spin component id and the `.wasm` file cargo writes.
pub const COMPONENTS: &[(&str, &str)] = &[
    ("webhook", "webhook.wasm"),
    ("queue-drain", "queue_drain.wasm"),
    ("phone-sync", "phone_sync.wasm"),
    ("cron", "cron.wasm"),
];

/// The workspace root (where `spin.toml` is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/e2e is two levels below the root")
        .to_path_buf()
}

/// Path of the built `.wasm` of component `id`, building all components first if needed (once per
/// process; cargo makes it a no-op when they are fresh).
pub fn component_wasm(id: &str) -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_components().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)?;
    let file = COMPONENTS
        .iter()
        .find(|(c, _)| *c == id)
        .with_context(|| format!("unknown component {id}"))?
        .1;
    Ok(workspace_root()
        .join("target/wasm32-wasip2/release")
        .join(file))
}

fn build_components() -> anyhow::Result<()> {
    let root = workspace_root();
    let status = Command::new(root.join("scripts/build-components"))
        .arg("--quiet")
        .current_dir(&root)
        .status()
        .context("running scripts/build-components")?;
    if !status.success() {
        bail!("scripts/build-components failed: {status}");
    }
    Ok(())
}
