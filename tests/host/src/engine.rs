//! The process-wide wasmtime [`Engine`] and the compiled-component caches: in memory (a component is
//! compiled once per process, keyed by path and modification time) and on disk (`.cwasm` files keyed by
//! the component's bytes and the engine's compatibility hash, so the test binaries of one `cargo test`
//! run do not each pay Cranelift again).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the epoch advances: a running guest yields to the async runtime at least this often, so the
/// request timeout and shutdown can stop a guest stuck in a loop.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The directory name of the on-disk cache, next to the component in the cargo target directory.
const CACHE_DIR_NAME: &str = "spin-test-host-cache";

/// The engine every host of this process shares; components are tied to the engine that compiled them.
pub(crate) fn engine() -> Result<&'static Engine> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.async_support(true);
            config.epoch_interruption(true);
            let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
            let ticker = engine.clone();
            std::thread::Builder::new()
                .name("spin-test-host-epoch".into())
                .spawn(move || loop {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                })
                .map_err(|e| format!("starting the epoch thread: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|e| anyhow!("creating the wasmtime engine: {e}"))
}

/// The compiled component at `path`, from the process cache, the disk cache, or Cranelift. Blocking: call
/// it off the async runtime.
pub(crate) fn load_component(path: &Path) -> Result<Component> {
    static LOADED: OnceLock<Mutex<HashMap<(PathBuf, SystemTime), Component>>> = OnceLock::new();
    let engine = engine()?;
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading component {}", path.display()))?;
    let key = (path.to_path_buf(), modified);
    // Held while compiling, so two hosts starting at once compile a component once, not twice.
    let mut loaded = LOADED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(component) = loaded.get(&key) {
        return Ok(component.clone());
    }
    let component = load_or_compile(engine, path)?;
    loaded.insert(key, component.clone());
    Ok(component)
}

fn load_or_compile(engine: &Engine, path: &Path) -> Result<Component> {
    let wasm =
        std::fs::read(path).with_context(|| format!("reading component {}", path.display()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cached = cache_dir(path).join(format!("{stem}-{}.cwasm", cache_key(engine, &wasm)));
    if cached.is_file() {
        // SAFETY: the file was written by `precompile_component` of an engine whose compatibility hash
        // is part of its name, from exactly these component bytes; wasmtime also checks its header and
        // engine settings before loading it.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok(component),
            Err(e) => eprintln!(
                "spin-test-host: ignoring unusable cache file {}: {e:#}",
                cached.display()
            ),
        }
    }
    let started = Instant::now();
    let compiled = engine
        .precompile_component(&wasm)
        .with_context(|| format!("compiling component {}", path.display()))?;
    eprintln!(
        "spin-test-host: compiled {} in {:.1?}",
        path.display(),
        started.elapsed()
    );
    match store_atomically(&cached, &compiled) {
        Ok(()) => remove_older_builds(&cached, &stem),
        // The disk cache only saves time; without it every process compiles again.
        Err(e) => eprintln!("spin-test-host: not caching {}: {e:#}", cached.display()),
    }
    // SAFETY: `compiled` was produced just above by `precompile_component` on this engine.
    unsafe { Component::deserialize(engine, &compiled) }
        .with_context(|| format!("loading compiled component {}", path.display()))
}

/// `<target>/spin-test-host-cache` for a component inside a cargo target directory, else a directory in
/// the system's temporary directory.
fn cache_dir(component: &Path) -> PathBuf {
    component
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "target"))
        .map(|target| target.join(CACHE_DIR_NAME))
        .unwrap_or_else(|| std::env::temp_dir().join(CACHE_DIR_NAME))
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut compatibility = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut compatibility);
    let mut digest = Sha256::new();
    digest.update(compatibility.finish().to_le_bytes());
    digest.update(wasm);
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deletes the cache files of earlier builds of the same component, so the cache holds one file per
/// component instead of growing with every rebuild.
fn remove_older_builds(current: &Path, stem: &str) {
    let Some(dir) = current.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let same_component = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".cwasm"))
            .and_then(|n| n.rsplit_once('-'))
            .is_some_and(|(s, _)| s == stem);
        if same_component && path != current {
            // Another process may be removing it too; a file that is already gone is fine.
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Writes through a temporary file and a rename, so a concurrent test binary never loads half a file.
fn store_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("renaming to {}", path.display()))
}
