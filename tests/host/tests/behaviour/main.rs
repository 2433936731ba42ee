//! spin-test-host's own behaviour, checked against real guest components: the probe fixtures in
//! `fixtures/` (built here for wasm32-wasip2) and the product's `webhook` component.

mod support;

mod chaining;
mod key_value;
mod lifecycle;
mod outbound;
mod routing;
mod runtime_config;
mod sqlite;
mod variables;
