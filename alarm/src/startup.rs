//! Wires the alarm service: the shared core (store, bus, RPC, relay, replicas) plus its routes.

use common::{
    service::{Application, Core},
    settings::Settings,
    Result,
};

use actix_web::web;

use crate::{
    lists::AlarmLists,
    routes,
    store::{alarm_writer, MIGRATIONS, PREFIX_READS},
};

pub fn build(settings: Settings) -> Result<Application> {
    let core = Core::start_with_reads(settings, &MIGRATIONS, &PREFIX_READS)?;
    let writer = web::Data::new(alarm_writer(core.store.clone(), core.settings.write_lanes, &core.tasks));
    let lists = web::Data::new(AlarmLists::new(core.settings.own_read_timeout));
    Application::build(core, &routes::openapi(), move |cfg| {
        cfg.app_data(writer.clone()).app_data(lists.clone());
        routes::configure(cfg);
    })
}
