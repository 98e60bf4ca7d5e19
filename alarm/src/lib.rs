//! The alarm service: set, list and clear the caller's alarms on items.

pub mod routes;
pub mod startup;
pub mod store;
