//! Wires the alarm service: the shared core (store, bus, RPC, relay, replicas) plus its routes.

use alarm_kind::AlarmBook;
use common::{
    service::{Application, Core},
    settings::Settings,
    Result,
};
use item_kind::ItemCatalog;
use user_kind::UserDirectory;

use actix_web::web;

use crate::{
    lists::AlarmLists,
    routes,
    store::{alarm_writer, MIGRATIONS, OWN_ENTITIES},
};

pub fn build(settings: Settings) -> Result<Application> {
    // The alarm service owns alarm sets; it replicates users (the token) and items (that an
    // alarm's item exists, and the alarm list's items).
    let core = Core::start_with_reads(settings, &MIGRATIONS, &OWN_ENTITIES, |kinds| {
        kinds.own::<AlarmBook>().replicate::<UserDirectory>().replicate::<ItemCatalog>();
    })?;
    let writer = web::Data::new(alarm_writer(core.store.clone(), core.settings.write_lanes, &core.tasks));
    let lists = web::Data::new(AlarmLists::new(core.settings.own_read_timeout));
    Application::build(core, &routes::openapi(), move |cfg| {
        cfg.app_data(writer.clone()).app_data(lists.clone());
        routes::configure(cfg);
    })
}
