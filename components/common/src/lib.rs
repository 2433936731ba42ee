//! The logic of openphone-notion-sync, shared by the four Spin components.
//!
//! Components are thin: they turn a trigger into an [`api::Request`], build a [`platform::Platform`],
//! call into this crate, and write the [`api::Response`]. Everything here runs natively in tests against
//! real SQLite and real HTTP servers.

pub mod api;
pub mod configuration;
pub mod domain;
pub mod ids;
pub mod migrations;
pub mod platform;
pub mod telemetry;
