//! A loaded application: its components compiled and linked, its router, its state, and how requests
//! and cron ticks become instances.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::Store;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::bindings::ProxyPre;
use wasmtime_wasi_http::body::{HostIncomingBody, HyperIncomingBody, HyperOutgoingBody};
use wasmtime_wasi_http::types::{HostIncomingRequest, IncomingResponse, OutgoingRequestConfig};
use wasmtime_wasi_http::{hyper_response_error, WasiHttpView};

use crate::bindings::cron::fermyon::spin_cron::cron_types::{Error as CronError, Metadata};
use crate::bindings::cron::{SpinCron, SpinCronPre};
use crate::bindings::platform::Platform;
use crate::engine::{engine, load_component};
use crate::key_value::KeyValueStore;
use crate::logs::{GuestOutput, LogBuffer};
use crate::manifest::Manifest;
use crate::outbound::AllowedHosts;
use crate::routes::{RouteMatch, Router};
use crate::runtime_config::{Location, Storage};
use crate::state::InstanceState;
use crate::variables::{is_valid_name, resolve_application, Template};
use crate::{HostOptions, SERVICE_CHAINING_SUFFIX};

/// wasmtime-wasi-http's own default limit on the in-memory size of a request's headers.
const FIELD_SIZE_LIMIT: usize = 2 << 30;

/// How long a guest may wait between two chunks of a request body it reads.
const BODY_CHUNK_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the response a guest sets through its `response-outparam` arrives.
type ResponseReceiver = oneshot::Receiver<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>;

/// What one component may do, resolved from the manifest at startup.
pub(crate) struct ComponentConfig {
    pub(crate) id: String,
    /// `[component.<id>.variables]`, resolved: the only names the component can read.
    pub(crate) variables: HashMap<String, String>,
    pub(crate) allowed_hosts: AllowedHosts,
    pub(crate) key_value_stores: Vec<String>,
    pub(crate) sqlite_databases: Vec<String>,
    environment: Vec<(String, String)>,
}

struct LoadedComponent {
    config: Arc<ComponentConfig>,
    /// Set when an HTTP trigger (public or private) names the component.
    http: Option<ProxyPre<InstanceState>>,
    /// Set when a cron trigger names the component.
    cron: Option<SpinCronPre<InstanceState>>,
}

/// One running application.
pub(crate) struct App {
    components: HashMap<String, LoadedComponent>,
    router: Router,
    /// Components of the cron triggers, in manifest order.
    cron: Vec<String>,
    /// Each key-value store label's database, opened at startup.
    pub(crate) key_value_stores: HashMap<String, KeyValueStore>,
    /// Where each SQLite database label lives; every `open` connects anew.
    pub(crate) sqlite_databases: HashMap<String, Location>,
    pub(crate) logs: LogBuffer,
    request_timeout: Duration,
    /// How many instances are running.
    running: watch::Sender<usize>,
    shutdown: watch::Sender<bool>,
}

/// Counts an instance as running until dropped.
struct Running(Arc<App>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.send_modify(|n| *n -= 1);
    }
}

impl App {
    /// Reads the manifest, resolves variables and grants, and compiles and links the components that a
    /// trigger names. Blocking (compilation).
    pub(crate) fn load(opts: &HostOptions, logs: LogBuffer) -> Result<Self> {
        let mut manifest = Manifest::load(&opts.manifest)?;
        if let Some(selected) = &opts.components {
            manifest.select(selected)?;
        }
        let values = resolve_application(&manifest.variables, &opts.variables, |name| {
            std::env::var(name).ok()
        })?;
        let storage = Storage::resolve(opts.runtime_config.as_deref(), &opts.state_dir)?;

        let mut linker = Linker::<InstanceState>::new(engine()?);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::add_only_http_to_linker_async(&mut linker)?;
        Platform::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |state| state)?;
        SpinCron::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |state| state)?;

        let mut components = HashMap::new();
        for (id, decl) in &manifest.components {
            let is_http = manifest.http_triggers.iter().any(|t| &t.component == id);
            let is_cron = manifest.cron_triggers.iter().any(|t| &t.component == id);
            if !is_http && !is_cron {
                continue;
            }
            let config = resolve_component(id, decl, &values, &storage)
                .with_context(|| format!("component `{id}`"))?;
            let component =
                load_component(&decl.source).with_context(|| format!("component `{id}`"))?;
            let pre = linker
                .instantiate_pre(&component)
                .with_context(|| format!("linking component `{id}`"))?;
            let http = is_http
                .then(|| ProxyPre::new(pre.clone()))
                .transpose()
                .with_context(|| {
                    format!("component `{id}` has no wasi:http/incoming-handler export")
                })?;
            let cron = is_cron
                .then(|| SpinCronPre::new(pre))
                .transpose()
                .with_context(|| format!("component `{id}` has no handle-cron-event export"))?;
            components.insert(
                id.clone(),
                LoadedComponent {
                    config: Arc::new(config),
                    http,
                    cron,
                },
            );
        }

        let router = Router::build(
            manifest
                .http_triggers
                .iter()
                .filter_map(|t| Some((t.route.as_deref()?, t.component.as_str()))),
        )?;
        let mut cron = Vec::new();
        for trigger in &manifest.cron_triggers {
            if !cron.contains(&trigger.component) {
                cron.push(trigger.component.clone());
            }
        }

        std::fs::create_dir_all(&opts.state_dir)
            .with_context(|| format!("creating state directory {}", opts.state_dir.display()))?;
        let key_value_stores = storage
            .key_value_stores
            .iter()
            .map(|(label, location)| {
                let store = KeyValueStore::open(location)
                    .with_context(|| format!("key-value store `{label}`"))?;
                Ok((label.clone(), store))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            components,
            router,
            cron,
            key_value_stores,
            sqlite_databases: storage.sqlite_databases,
            logs,
            request_timeout: opts.request_timeout,
            running: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
        })
    }

    /// Accepts connections until shutdown; each request is served on its own task.
    pub(crate) async fn serve(self: Arc<Self>, listener: TcpListener) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        self.logs.host_line(&format!("accepting a connection failed: {e}"));
                        continue;
                    }
                },
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let app = self.clone();
            tokio::spawn(async move {
                let mut shutdown = app.shutdown.subscribe();
                let service = hyper::service::service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.serve_public(request, client).await) }
                });
                let connection = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    _ = shutdown.wait_for(|stop| *stop) => {}
                }
            });
        }
    }

    async fn serve_public(
        self: &Arc<Self>,
        request: hyper::Request<Incoming>,
        client: SocketAddr,
    ) -> hyper::Response<HyperOutgoingBody> {
        let path = request.uri().path();
        // Spin answers its well-known health route itself, for every app.
        if path == "/.well-known/spin/health" {
            return text_response(200, "OK");
        }
        let Some(route) = self.router.route(path) else {
            return text_response(404, "Not Found");
        };
        // Spin refuses a header value that is not UTF-8 before any component sees the request: `500`,
        // no body, and "invalid utf-8 sequence" in its own log.
        if request
            .headers()
            .values()
            .any(|value| std::str::from_utf8(value.as_bytes()).is_err())
        {
            eprintln!("spin-test-host: a header value is not UTF-8; answering 500 as Spin does");
            return text_response(500, "");
        }
        let (mut parts, body) = request.into_parts();
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let full_url = format!(
            "http://{host}{}",
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        route.add_spin_headers(&mut parts.headers, &full_url, Some(&client.to_string()));
        let body = body.map_err(hyper_response_error).boxed_unsync();
        self.run_http(&route.component, parts, body).await
    }

    /// A request from a component to `http://<target>.spin.internal/...`, already allowed: a new instance
    /// of `target` answers it, exactly as it would a public request.
    pub(crate) async fn dispatch_chained(
        self: Arc<Self>,
        caller: &str,
        target: &str,
        request: hyper::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> Result<IncomingResponse, ErrorCode> {
        if self
            .components
            .get(target)
            .and_then(|c| c.http.as_ref())
            .is_none()
        {
            self.logs.host_line(&format!(
                "component `{caller}` sent a request to `{target}{SERVICE_CHAINING_SUFFIX}`, which is not an HTTP component of this app"
            ));
            return Err(ErrorCode::DestinationNotFound);
        }
        let (mut parts, body) = request.into_parts();
        let full_url = parts.uri.to_string();
        RouteMatch::chained(target, parts.uri.path()).add_spin_headers(
            &mut parts.headers,
            &full_url,
            None,
        );
        let resp = self.run_http(target, parts, body).await;
        Ok(IncomingResponse {
            resp,
            worker: None,
            between_bytes_timeout: config.between_bytes_timeout,
        })
    }

    /// Runs the component's `handle` on a new instance and answers with the response it sets; the
    /// instance keeps running after that until `handle` returns (or the request timeout). Failures are
    /// logged and answered with a 500.
    async fn run_http(
        self: &Arc<Self>,
        id: &str,
        parts: http::request::Parts,
        body: HyperIncomingBody,
    ) -> hyper::Response<HyperOutgoingBody> {
        let (response, instance) = match self.start_http(id, parts, body) {
            Ok(started) => started,
            Err(e) => {
                self.logs.host_line(&format!("{e:#}"));
                return text_response(500, "Internal Server Error");
            }
        };
        match response.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => {
                self.logs.host_line(&format!(
                    "component `{id}` answered with error code {code:?}"
                ));
                text_response(500, "Internal Server Error")
            }
            // The instance ended without setting a response; if it failed, it already logged why.
            Err(_) => {
                if let Ok(Ok(())) = instance.await {
                    self.logs.host_line(&format!(
                        "component `{id}` returned without setting a response"
                    ));
                }
                text_response(500, "Internal Server Error")
            }
        }
    }

    /// Starts an instance on the request; returns where its response will arrive, and the instance.
    fn start_http(
        self: &Arc<Self>,
        id: &str,
        parts: http::request::Parts,
        body: HyperIncomingBody,
    ) -> Result<(ResponseReceiver, JoinHandle<Result<()>>)> {
        let component = self
            .components
            .get(id)
            .with_context(|| format!("component `{id}` is not loaded"))?;
        let pre = component
            .http
            .clone()
            .with_context(|| format!("component `{id}` has no HTTP trigger"))?;
        let mut store = self.new_store(&component.config)?;
        let state = store.data_mut();
        let body = HostIncomingBody::new(body, BODY_CHUNK_TIMEOUT, FIELD_SIZE_LIMIT);
        let request =
            HostIncomingRequest::new(state, parts, Scheme::Http, Some(body), FIELD_SIZE_LIMIT)
                .with_context(|| format!("passing the request to component `{id}`"))?;
        let request = state.table.push(request)?;
        let (sender, receiver) = oneshot::channel();
        let out = state.new_response_outparam(sender)?;
        let instance = self.spawn_instance(id, async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await
        });
        Ok((receiver, instance))
    }

    /// Runs each cron trigger's `handle-cron-event` once, in manifest order, stopping at the first
    /// component that reports an error.
    pub(crate) async fn invoke_cron(self: &Arc<Self>) -> Result<Result<(), String>> {
        if self.cron.is_empty() {
            bail!("no cron trigger is selected in this app");
        }
        for id in &self.cron {
            let component = &self.components[id];
            let pre = component
                .cron
                .clone()
                .context("a cron component has no cron bindings")?;
            let mut store = self.new_store(&component.config)?;
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_secs();
            let tick = self.spawn_instance(id, async move {
                let cron = pre.instantiate_async(&mut store).await?;
                cron.call_handle_cron_event(&mut store, Metadata { timestamp })
                    .await
            });
            match tick.await.context("the cron instance task failed")? {
                Ok(Ok(())) => {}
                Ok(Err(CronError::Other(message))) => return Ok(Err(message)),
                Err(e) => return Err(e.context(format!("cron component `{id}` failed"))),
            }
        }
        Ok(Ok(()))
    }

    fn new_store(self: &Arc<Self>, config: &Arc<ComponentConfig>) -> Result<Store<InstanceState>> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(GuestOutput(self.logs.clone()))
            .stderr(GuestOutput(self.logs.clone()))
            .envs(&config.environment);
        let state = InstanceState::new(wasi.build(), config.clone(), self.clone());
        let mut store = Store::new(engine()?, state);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        Ok(store)
    }

    /// Runs an instance's work on its own task, bounded by the request timeout and stopped by shutdown;
    /// a failure is logged, so one that happens after the response is not lost.
    fn spawn_instance<T, F>(self: &Arc<Self>, id: &str, work: F) -> JoinHandle<Result<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.running.send_modify(|n| *n += 1);
        let running = Running(self.clone());
        let mut shutdown = self.shutdown.subscribe();
        let timeout = self.request_timeout;
        let id = id.to_owned();
        tokio::spawn(async move {
            let result = tokio::select! {
                finished = tokio::time::timeout(timeout, work) => finished.unwrap_or_else(|_| {
                    Err(anyhow!("did not finish within the request timeout of {timeout:?}"))
                }),
                _ = shutdown.wait_for(|stop| *stop) => Err(anyhow!("stopped by the host's shutdown")),
            };
            let result = result.with_context(|| format!("component `{id}`"));
            if let Err(e) = &result {
                running.0.logs.host_line(&format!("{e:#}"));
            }
            drop(running);
            result
        })
    }

    /// Resolves when no instance is running.
    pub(crate) async fn wait_idle(&self) {
        let mut running = self.running.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = running.wait_for(|n| *n == 0).await;
    }

    /// Stops accepting requests and stops every running instance.
    pub(crate) fn stop(&self) {
        self.shutdown.send_replace(true);
    }
}

fn resolve_component(
    id: &str,
    decl: &crate::manifest::ComponentDecl,
    values: &HashMap<String, String>,
    storage: &Storage,
) -> Result<ComponentConfig> {
    let mut variables = HashMap::new();
    for (name, template) in &decl.variables {
        anyhow::ensure!(is_valid_name(name), "invalid variable name `{name}`");
        let value = Template::parse(template)
            .and_then(|t| t.resolve(values))
            .with_context(|| format!("variable `{name}`"))?;
        variables.insert(name.clone(), value);
    }
    let mut hosts = Vec::new();
    for entry in &decl.allowed_outbound_hosts {
        let template = Template::parse(entry)
            .with_context(|| format!("allowed_outbound_hosts entry {entry:?}"))?;
        let resolved = template
            .resolve(values)
            .with_context(|| format!("allowed_outbound_hosts entry {entry:?}"))?;
        hosts.push((resolved, template.has_variables()));
    }
    let allowed_hosts = AllowedHosts::parse(hosts.iter().map(|(h, t)| (h.as_str(), *t)))?;
    use crate::runtime_config::{check_grants, Store};
    check_grants(
        id,
        Store::KeyValue,
        &decl.key_value_stores,
        &storage.key_value_stores,
    )?;
    check_grants(
        id,
        Store::Sqlite,
        &decl.sqlite_databases,
        &storage.sqlite_databases,
    )?;
    Ok(ComponentConfig {
        id: id.to_owned(),
        variables,
        allowed_hosts,
        key_value_stores: decl.key_value_stores.clone(),
        sqlite_databases: decl.sqlite_databases.clone(),
        environment: decl
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

fn text_response(status: u16, text: &'static str) -> hyper::Response<HyperOutgoingBody> {
    let mut response = hyper::Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response
}
