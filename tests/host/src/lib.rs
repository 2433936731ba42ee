//! A Spin-compatible host, made with wasmtime, that runs this app's built components for end-to-end
//! tests: it reads `spin.toml` (routes, private routes and `*.spin.internal` chaining, variables,
//! `allowed_outbound_hosts`, key-value and SQLite grants), serves the app on a loopback port, provides
//! key-value stores and SQLite databases with Spin's semantics (`default`, and the `type = "spin"` labels
//! of a runtime config file), and runs the cron export.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use spin_test_host::{HostOptions, SpinHost};
//!
//! let mut options = HostOptions::new("spin.toml", ".spin");
//! options.variables.insert("admin_token".into(), "secret".into());
//! let host = SpinHost::start(options).await?;
//! let health = format!("{}/health", host.base_url());
//! // ... send requests to `health` ...
//! host.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Semantics follow Spin 3.x for WASI 0.2 components: a new instance per request, the instance kept after
//! the response until `handle` returns, guest output captured (see [`SpinHost::logs`]).

#![deny(missing_docs)]

mod app;
mod bindings;
mod engine;
mod key_value;
mod logs;
mod manifest;
mod outbound;
mod routes;
mod runtime_config;
mod sqlite;
mod state;
mod variables;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::logs::{LogBuffer, ECHO_VARIABLE};

/// The host suffix of service chaining: `http://<component-id>.spin.internal/...`.
const SERVICE_CHAINING_SUFFIX: &str = ".spin.internal";

/// How to run an app.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// The app's `spin.toml`; component sources are relative to its directory.
    pub manifest: PathBuf,
    /// Where the default key-value store (`sqlite_key_value.db`) and SQLite database (`sqlite_db.db`)
    /// live unless the runtime config file defines them, like `spin up --state-dir`.
    pub state_dir: PathBuf,
    /// Like `spin up --runtime-config-file`: a TOML file whose `[sqlite_database.<label>]` and
    /// `[key_value_store.<label>]` tables (`type = "spin"` only) define the labels other than `default`,
    /// or move `default`. Without it, only `default` exists, and a component granted another label is
    /// refused at startup, as on Spin.
    pub runtime_config: Option<PathBuf>,
    /// Application variable values, like `spin up --variable name=value`; they take precedence over
    /// `SPIN_VARIABLE_<NAME>` environment variables, which take precedence over manifest defaults.
    pub variables: HashMap<String, String>,
    /// Like `spin up -c`: run only these components; triggers of other components are dropped.
    pub components: Option<Vec<String>>,
    /// The longest an instance may run, including work after its response (default 60 s).
    pub request_timeout: Duration,
}

impl HostOptions {
    /// Options for the manifest and state directory given, with no runtime config file, no variables,
    /// all components and the default request timeout.
    pub fn new(manifest: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            state_dir: state_dir.into(),
            runtime_config: None,
            variables: HashMap::new(),
            components: None,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A running app.
pub struct SpinHost {
    app: Arc<App>,
    address: SocketAddr,
    server: JoinHandle<()>,
}

impl SpinHost {
    /// Loads the app and serves it on a free loopback port. Fails when the manifest or runtime config
    /// file is invalid, a required variable has no value, a component is granted a database or store
    /// that is not defined, or a component cannot be compiled or linked.
    pub async fn start(opts: HostOptions) -> Result<SpinHost> {
        Self::start_on(opts, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Like [`SpinHost::start`], listening on `address`.
    pub async fn start_on(opts: HostOptions, address: SocketAddr) -> Result<SpinHost> {
        let echo = std::env::var(ECHO_VARIABLE).is_ok_and(|v| v == "1");
        let logs = LogBuffer::new(echo);
        // Compiling components is CPU work of seconds; keep it off the async workers.
        let app = tokio::task::spawn_blocking(move || App::load(&opts, logs))
            .await
            .context("loading the app panicked")??;
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        let address = listener.local_addr()?;
        let app = Arc::new(app);
        let server = tokio::spawn(app.clone().serve(listener));
        Ok(SpinHost {
            app,
            address,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Runs each cron trigger's component once, as one tick of the cron trigger would, with
    /// `metadata.timestamp` = now in Unix seconds. The outer error is a host failure or a trap; the inner
    /// one is the `error` the component returned.
    pub async fn invoke_cron(&self) -> Result<Result<(), String>> {
        self.app.invoke_cron().await
    }

    /// Everything the app's instances wrote to stdout and stderr so far, plus lines from the host itself
    /// (prefixed `[spin-test-host]`: denied requests, traps, timeouts).
    pub fn logs(&self) -> String {
        self.app.logs.contents()
    }

    /// Resolves when no instance is running, including work after responses and chained requests. Each
    /// instance is bounded by the request timeout, so this resolves within it once requests stop.
    pub async fn wait_idle(&self) {
        self.app.wait_idle().await;
    }

    /// Stops the host like stopping `spin up`: no new connections, and running instances (including work
    /// after their response) are stopped where they are.
    pub async fn shutdown(mut self) {
        self.app.stop();
        // The server task only ends by shutdown; its result carries nothing.
        let _ = (&mut self.server).await;
        self.app.wait_idle().await;
    }
}

impl Drop for SpinHost {
    fn drop(&mut self) {
        self.app.stop();
    }
}
