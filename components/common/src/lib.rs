//! The logic of openphone-notion-sync, shared by the four Spin components.
//!
//! Components are thin: each hands its trigger to the edge ([`http`]), which reads the
//! [`api::Request`], builds the [`platform::Platform`], routes and authorizes it against the component's
//! table ([`http::routes`]), and the component's handler answers with an [`api::Response`]. Everything here runs natively in tests against
//! real SQLite and real HTTP servers.

pub mod admin;
pub mod api;
pub mod app;
pub mod canvas;
pub mod claims;
pub mod configuration;
pub mod contacts;
pub mod domain;
pub mod drain;
pub mod http;
pub mod http_url;
pub mod ids;
pub mod jobs;
pub mod lease;
pub mod metrics;
pub mod migrations;
pub mod notion;
pub mod openphone;
pub mod outbound;
pub mod page_map;
pub mod pages;
pub mod pending;
pub mod phone_numbers;
pub mod platform;
pub mod queue;
pub mod ratelimit;
pub mod stats;
pub mod storage;
pub mod sync;
pub mod telemetry;
pub mod webhook;

#[cfg(all(any(test, feature = "testing"), not(target_arch = "wasm32")))]
pub mod testing;
