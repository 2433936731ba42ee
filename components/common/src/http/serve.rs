//! The start-up every component shares, in one order: read the request (`413` over the body limit), build
//! the platform, start telemetry, find the route (`404`, `405` with `Allow`), check its [`Auth`](super::Auth)
//! (`401`), bring the schema up to date, then run the handler. A platform or database failure is one
//! `503` ([`unavailable`]) that names no internal error, whoever asks: its cause goes to the log.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use tracing::Instrument;

use super::auth;
use super::routes::{self, Route, Schemas};
use crate::api::{unavailable, Request, Response};
use crate::configuration::Settings;
use crate::platform::Platform;

/// What a handler works with: one request, the platform it runs on and the component serving it. Built
/// once per request by [`dispatch`].
#[derive(Clone)]
pub struct Context {
    /// The component's name (`webhook`, `queue-drain`, `phone-sync`), as in its logs.
    pub component: &'static str,
    /// The platform of this request.
    pub platform: Platform,
    /// The application variables of this request, each read from the host at most once: handlers load
    /// their configuration from here and pass it down.
    pub settings: Rc<Settings>,
    /// The request, body fully read.
    pub request: Request,
}

type Send = Box<dyn FnOnce(Response) -> Pin<Box<dyn Future<Output = ()>>>>;

/// Where the one response of a request goes. A handler sends it, then may go on working (the webhook
/// kicks the drain, an accepted run runs) while the client already has its answer.
pub struct Reply(Send);

impl Reply {
    /// A reply that hands the response to `send`.
    pub fn new<F, Fut>(send: F) -> Self
    where
        F: FnOnce(Response) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        Self(Box::new(move |response| Box::pin(send(response))))
    }

    /// Sends `response`.
    pub async fn send(self, response: Response) {
        (self.0)(response).await
    }
}

/// Serves one Spin request with `routes`: the start-up of [`dispatch`] on Spin's request and platform.
#[cfg(target_arch = "wasm32")]
pub async fn serve<H, F, Fut>(
    component: &'static str,
    max_body: usize,
    routes: &[Route<H>],
    request: spin_sdk::http::IncomingRequest,
    out: spin_sdk::http::ResponseOutparam,
    handler: F,
) where
    H: Copy,
    F: FnOnce(Context, H, Reply) -> Fut,
    Fut: Future<Output = ()>,
{
    use super::spin;
    let reply = Reply::new(move |response| spin::send_response(out, response));
    let request = spin::read_request(request, max_body).await;
    let platform = crate::platform::spin::platform();
    dispatch(component, request, platform, routes, reply, handler).await
}

/// Answers `request` with `routes` (refusing it if it was not read: `Err` is the answer), running
/// `handler` with the route's handler value only once the route, the method, the credentials and the
/// schema are all good.
pub async fn dispatch<H, F, Fut>(
    component: &'static str,
    request: Result<Request, Response>,
    platform: anyhow::Result<Platform>,
    routes: &[Route<H>],
    reply: Reply,
    handler: F,
) where
    H: Copy,
    F: FnOnce(Context, H, Reply) -> Fut,
    Fut: Future<Output = ()>,
{
    let request = match request {
        Ok(request) => request,
        Err(refusal) => return reply.send(refusal).await,
    };
    let (platform, settings) = match start(component, platform) {
        Ok(started) => started,
        Err(_) => return reply.send(unavailable()).await,
    };
    let span =
        tracing::info_span!("request", component, method = %request.method, path = %request.path);
    async move {
        let route = match routes::find(routes, &request) {
            Ok(route) => route,
            Err(refusal) => return reply.send(refusal).await,
        };
        if let Err(refusal) = auth::authorize(route.auth, &request, &settings, &platform) {
            return reply.send(refusal).await;
        }
        let schema = match route.needs_schema {
            Schemas::None => Ok(()),
            Schemas::Both => crate::migrations::ensure(&platform).await,
        };
        if let Err(e) = schema {
            tracing::error!(error = %format!("{e:#}"), "the schema could not be brought up to date");
            return reply.send(unavailable()).await;
        }
        let context = Context {
            component,
            platform,
            settings,
            request,
        };
        handler(context, route.handler, reply).await
    }
    .instrument(span)
    .await
}

/// The start-up of a trigger with no HTTP request (the cron tick): the platform, its settings, telemetry
/// and the checked migrations, then `work`, all in a span carrying `scheduled_at` (seconds since the epoch). The
/// error is the trigger's result; on Spin the plugin only logs it.
pub async fn run_trigger<F, Fut>(
    component: &'static str,
    scheduled_at: u64,
    platform: anyhow::Result<Platform>,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Platform, Rc<Settings>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (platform, settings) = start(component, platform)?;
    let span = tracing::info_span!("trigger", component, scheduled_at);
    async {
        crate::migrations::ensure_checked(&platform).await?;
        work(platform, settings).await
    }
    .instrument(span)
    .await
}

/// The platform and the request's settings, with telemetry started at their `log_level`; a platform that
/// failed is logged (at the default level, having none) and returned as the error.
fn start(
    component: &str,
    platform: anyhow::Result<Platform>,
) -> anyhow::Result<(Platform, Rc<Settings>)> {
    match platform {
        Ok(platform) => {
            let settings = Rc::new(Settings::new(platform.vars.clone()));
            crate::telemetry::init(&settings.log_level());
            Ok((platform, settings))
        }
        Err(e) => {
            crate::telemetry::init("");
            tracing::error!(component, error = %format!("{e:#}"), "the platform is unavailable");
            Err(e)
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
