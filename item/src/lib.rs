//! The item service: the item list and item details, each with the caller's
//! `is_alarm_set`; opening an item records a view for the user service's `/visit`.

pub mod routes;
pub mod startup;
pub mod store;
