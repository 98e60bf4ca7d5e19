//! What the item, alarm and user services share: settings, the error body of the
//! contract, the store actor that owns a database pool, the AMQP plumbing (connection
//! supervisor, change-data fanout, RPC, outbox relay), the replica caches of other
//! domains' data, and the `USER-TOKEN` check.

pub mod amqp;
pub mod api_document;
pub mod auth;
pub mod backoff;
pub mod batch;
pub mod db;
pub mod entity;
pub mod error;
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

/// mimalloc for every binary built on this crate: loading a snapshot allocates and frees a
/// few small buffers per row, and with glibc's allocator that was a third of start-up CPU.
/// (The unit tests meter it: `replica::cache::heap_meter`.)
#[cfg(not(test))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
