//! RabbitMQ plumbing: one supervised connection per process ([`bus::Bus`]), the topology
//! ([`topology`]), change-data and view consumers ([`consume`]), request/reply ([`rpc`]) and
//! the outbox relay ([`relay`]) with the store messages it drains the outbox by ([`outbox`]);
//! who published a message ([`identity`]).

pub mod bus;
pub mod consume;
pub mod identity;
pub mod outbox;
pub mod relay;
pub mod rpc;
pub mod topology;

pub use bus::{Bus, Link};
