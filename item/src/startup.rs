//! Wires the item service: the shared core (store, bus, RPC, relay, replicas) plus its routes.

use common::{
    service::{Application, Core},
    settings::Settings,
    Result,
};

use crate::{routes, store::MIGRATIONS};

pub fn build(settings: Settings) -> Result<Application> {
    let core = Core::start(settings, &MIGRATIONS)?;
    Application::build(core, include_str!("../openapi.json"), routes::configure)
}
