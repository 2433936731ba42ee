//! Every HTTP route of the app, one table per component: path, method and who may call it. The edge
//! ([`super::serve`]) answers a path no table names with `404`, a wrong method with one `405` naming the
//! allowed methods in `Allow`, and a missing or wrong credential with one `401`, before any handler runs
//! and before the database is touched.

use crate::api::{self, Request, Response};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone (`/health`).
    None,
    /// `Authorization: Bearer <admin_token>`, compared in constant time.
    Admin,
    /// The admin token, or a link signed with it by `/admin/status-link` (`?expires=…&sig=…`).
    AdminOrSignedLink,
    /// OpenPhone's webhook signature, which the handler verifies: the keys it checks against are stored
    /// in the database (`webhook::keys`).
    Webhook,
    /// A private route (`*.spin.internal`): Spin routes it only from the app's own components.
    Private,
}

/// How a route's path matches a request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch {
    /// This path exactly.
    Exact(&'static str),
    /// This prefix and anything after it (the handler parses the rest).
    Prefix(&'static str),
}

impl PathMatch {
    fn matches(self, path: &str) -> bool {
        match self {
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Prefix(prefix) => path.starts_with(prefix),
        }
    }
}

/// The databases whose schemas a route needs current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemas {
    /// None: the handler reports a broken database itself (the webhook intake checks the intake
    /// database's schema in the read of its keys, [`crate::webhook::keys::signing_keys`]).
    None,
    /// The app's and the intake database's ([`crate::migrations::ensure`]).
    Both,
}

/// One route: which requests reach `handler`, and what they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<H> {
    /// The path it serves.
    pub path: PathMatch,
    /// The one method it answers.
    pub method: &'static str,
    /// Who may call it.
    pub auth: Auth,
    /// Which schemas must be current before the handler runs; `/health` reports a broken database
    /// instead of failing on it.
    pub needs_schema: Schemas,
    /// What the component runs for it.
    pub handler: H,
}

impl<H: Copy> Route<H> {
    const fn new(method: &'static str, path: &'static str, auth: Auth, handler: H) -> Self {
        Self {
            path: PathMatch::Exact(path),
            method,
            auth,
            needs_schema: Schemas::Both,
            handler,
        }
    }

    const fn get(path: &'static str, auth: Auth, handler: H) -> Self {
        Self::new("GET", path, auth, handler)
    }

    const fn post(path: &'static str, auth: Auth, handler: H) -> Self {
        Self::new("POST", path, auth, handler)
    }

    /// The route serves every path that starts with its own (`/sync/` serves `/sync/<id>`).
    const fn and_below(self) -> Self {
        let prefix = match self.path {
            PathMatch::Exact(path) | PathMatch::Prefix(path) => path,
        };
        Self {
            path: PathMatch::Prefix(prefix),
            ..self
        }
    }

    const fn without_schema(self) -> Self {
        Self {
            needs_schema: Schemas::None,
            ..self
        }
    }
}

/// The `webhook` component's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRoute {
    /// `POST /webhooks/openphone`: `webhook::intake`.
    Intake,
    /// `GET /health`: `app::health`.
    Health,
}

/// The `webhook` component's table.
pub const WEBHOOK: &[Route<WebhookRoute>] = &[
    Route::post("/webhooks/openphone", Auth::Webhook, WebhookRoute::Intake).without_schema(),
    Route::get("/health", Auth::None, WebhookRoute::Health).without_schema(),
];

/// The `queue-drain` component's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainRoute {
    /// The private `POST /drain` the webhook kicks.
    Kick,
    /// `POST /admin/drain`.
    DrainNow,
    /// `POST /admin/tick`.
    Tick,
    /// `GET /admin/dlq`.
    DlqList,
    /// `POST /admin/dlq/replay`.
    DlqReplay,
    /// `GET /stats`.
    Stats,
    /// `GET /status`.
    Status,
    /// `GET /admin/status-link`.
    StatusLink,
    /// `POST /admin/notion/check`.
    NotionCheck,
    /// `POST /admin/canvas/lookup`.
    CanvasLookup,
    /// `POST /admin/setup`.
    Setup,
}

/// The `queue-drain` component's table.
pub const QUEUE_DRAIN: &[Route<DrainRoute>] = &[
    Route::post("/drain", Auth::Private, DrainRoute::Kick),
    Route::post("/admin/drain", Auth::Admin, DrainRoute::DrainNow),
    Route::post("/admin/tick", Auth::Admin, DrainRoute::Tick),
    Route::get("/admin/dlq", Auth::Admin, DrainRoute::DlqList),
    Route::post("/admin/dlq/replay", Auth::Admin, DrainRoute::DlqReplay),
    Route::get("/stats", Auth::Admin, DrainRoute::Stats),
    Route::get("/status", Auth::AdminOrSignedLink, DrainRoute::Status),
    Route::get("/admin/status-link", Auth::Admin, DrainRoute::StatusLink),
    Route::post("/admin/notion/check", Auth::Admin, DrainRoute::NotionCheck),
    Route::post(
        "/admin/canvas/lookup",
        Auth::Admin,
        DrainRoute::CanvasLookup,
    ),
    Route::post("/admin/setup", Auth::Admin, DrainRoute::Setup),
];

/// The `phone-sync` component's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRoute {
    /// `POST /admin/sync`.
    Admin,
    /// The private `POST /sync/<phone_number_id>`.
    One,
}

/// The `phone-sync` component's table.
pub const PHONE_SYNC: &[Route<SyncRoute>] = &[
    Route::post("/admin/sync", Auth::Admin, SyncRoute::Admin),
    Route::post("/sync/", Auth::Private, SyncRoute::One).and_below(),
];

/// The route of `table` that serves `request`'s path and method: `Err` is the `404`, or the `405` with
/// `Allow`, to send instead.
pub fn find<'t, H>(table: &'t [Route<H>], request: &Request) -> Result<&'t Route<H>, Response> {
    let mut allowed: Vec<&str> = Vec::new();
    for route in table.iter().filter(|r| r.path.matches(&request.path)) {
        if route.method == request.method {
            return Ok(route);
        }
        if !allowed.contains(&route.method) {
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        Err(api::not_found(&request.path))
    } else {
        Err(api::method_not_allowed(&allowed.join(", ")))
    }
}
