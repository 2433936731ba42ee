//! The HTTP edge: every request of every component passes here before any handler runs.
//!
//! - [`routes`]: one table per component, each route's path, method and [`Auth`];
//! - [`auth`]: the admin token and the status page's signed link, checked before any handler runs;
//! - [`serve`]: the start-up every component shares (read the request, build the platform, telemetry,
//!   route, authorize, migrate, then the handler), and the same start-up minus routing for the cron
//!   trigger;
//! - `spin` (on wasm32): Spin's request read into an [`api::Request`](crate::api::Request) (`413` over
//!   the body limit) and the [`api::Response`](crate::api::Response) written back.
//!
//! So a wrong method is one `405` with `Allow`, a missing or wrong admin token one `401`, and a broken
//! database one `503` with the same words for everyone, its cause only in the log.

pub mod auth;
pub mod routes;
pub mod serve;
#[cfg(target_arch = "wasm32")]
mod spin;

pub use routes::{Auth, Route};
pub use serve::{Context, Reply};
