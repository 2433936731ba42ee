//! Local stand-ins for the three services openphone-notion-sync talks to, for native and end-to-end tests.
//!
//! * [`OpenPhoneServer`]: OpenPhone's public API v1 (auth, required parameters, 10 requests/s per key,
//!   pagination) plus a media host for recording and voicemail files ([`openphone`]), and helpers that
//!   build and sign webhook deliveries ([`webhooks`]).
//! * [`NotionServer`]: Notion's API at `Notion-Version: 2025-09-03` (databases and data sources, pages,
//!   queries with Notion's filter rules, block children, size limits, about 3 requests/s) ([`notion`]).
//! * [`S3Server`]: a real S3-compatible server that checks SigV4 (`s3s-fs`, installed by
//!   `scripts/install-test-deps`) ([`s3`]), and [`MemoryS3`], an in-memory bucket for in-process callers on
//!   a virtual clock ([`s3_memory`]).
//!
//! The servers are only as useful as the rules they enforce, so they reject what the real services reject
//! and, where the real rule is unknown, take the stricter reading (each such choice is documented where it
//! is made). Every server runs on its own thread with its own runtime, so a test may start one from sync
//! code or from any async runtime, and a test that blocks its own runtime does not stall the servers. All
//! state can be seeded and inspected from Rust; randomness (ids, keys, fault draws) comes from seeded RNGs.

pub mod faults;
pub mod notion;
pub mod openphone;
pub mod s3;
pub mod s3_memory;
pub mod webhooks;
pub mod workload;

mod runtime;
mod stats;

pub use faults::{Fault, FaultRule};
pub use notion::{NotionServer, Schema};
pub use openphone::OpenPhoneServer;
pub use s3::S3Server;
pub use s3_memory::MemoryS3;
