//! The alarm service: set, list and clear the caller's alarms on items.

pub mod lists;
pub mod routes;
pub mod startup;
pub mod store;
