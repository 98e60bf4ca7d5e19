//! The platform the item, alarm and user services are built on, naming no domain: settings,
//! the error body of the contract, the store actor that owns a database pool, the AMQP
//! plumbing (connection supervisor, change-data fanout, RPC, outbox relay), and the machinery of
//! replicas, caches and read models that each domain's kinds (`item/kind`, `alarm/kind`,
//! `user/kind`) are written over.

pub mod amqp;
pub mod api_document;
pub mod backoff;
pub mod batch;
pub mod db;
pub mod entity;
pub mod error;
pub mod heap_meter;
pub mod http;
pub mod input;
pub mod openapi;
pub mod replica;
pub mod service;
pub mod settings;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod token;

pub use error::{ApiError, Error, Result};

/// The allocator every service binary installs (`#[global_allocator]` in its `main.rs`):
/// loading a snapshot allocates and frees a few small buffers per row, and with glibc's
/// allocator that was a third of start-up CPU. Tests install [`heap_meter::Meter`], mimalloc
/// metered.
pub use mimalloc::MiMalloc as Allocator;

#[cfg(test)]
#[global_allocator]
static METER: heap_meter::Meter = heap_meter::Meter;
