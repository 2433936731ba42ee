//! The per-instance store data: WASI contexts, the resource table, and what the instance's component may
//! do. Outbound HTTP is checked here against `allowed_outbound_hosts`, and `*.spin.internal` requests are
//! dispatched in-process.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::body::HyperOutgoingBody;
use wasmtime_wasi_http::types::{
    default_send_request, HostFutureIncomingResponse, OutgoingRequestConfig,
};
use wasmtime_wasi_http::{HttpResult, WasiHttpCtx, WasiHttpView};

use crate::app::{App, ComponentConfig};
use crate::bindings::cron::fermyon::spin_cron::cron_types;
use crate::bindings::platform::fermyon::spin::variables;
use crate::outbound::default_port;
use crate::SERVICE_CHAINING_SUFFIX;

/// The data of one instance's `Store`.
pub(crate) struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) component: Arc<ComponentConfig>,
    pub(crate) app: Arc<App>,
}

impl InstanceState {
    pub(crate) fn new(wasi: WasiCtx, component: Arc<ComponentConfig>, app: Arc<App>) -> Self {
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            component,
            app,
        }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn ctx(&mut self) -> &mut WasiHttpCtx {
        &mut self.http
    }

    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn send_request(
        &mut self,
        request: hyper::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_owned();
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = uri
            .port_u16()
            .or_else(|| default_port(&scheme))
            .unwrap_or(0);
        if !self.component.allowed_hosts.allows(&scheme, &host, port) {
            self.app.logs.host_line(&format!(
                "component `{}` was denied a request to {scheme}://{host}:{port}: not in its allowed_outbound_hosts",
                self.component.id
            ));
            return Err(ErrorCode::HttpRequestDenied.into());
        }
        match host.strip_suffix(SERVICE_CHAINING_SUFFIX) {
            Some(target) => {
                let app = self.app.clone();
                let target = target.to_owned();
                let caller = self.component.id.clone();
                let handle = wasmtime_wasi::runtime::spawn(async move {
                    Ok(app
                        .dispatch_chained(&caller, &target, request, config)
                        .await)
                });
                Ok(HostFutureIncomingResponse::pending(handle))
            }
            None => Ok(default_send_request(request, config)),
        }
    }
}

impl variables::Host for InstanceState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if !crate::variables::is_valid_name(&name) {
            return Ok(Err(variables::Error::InvalidName(format!(
                "invalid variable name {name:?}"
            ))));
        }
        Ok(self.component.variables.get(&name).cloned().ok_or_else(|| {
            variables::Error::Undefined(format!("no variable for {:?}.{name:?}", self.component.id))
        }))
    }
}

// The cron world's types-only interface: nothing to implement, but its (empty) instance must be linked.
impl cron_types::Host for InstanceState {}
