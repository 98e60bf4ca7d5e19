//! The user service: the user list, and each user's recently viewed items (`/visit`),
//! stored from the view events the item service publishes.

pub mod list;
pub mod recent;
pub mod routes;
pub mod startup;
pub mod store;
pub mod views;
