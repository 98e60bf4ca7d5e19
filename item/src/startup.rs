//! Wires the item service: the shared core (store, bus, RPC, relay, replicas) plus its routes.

use actix_web::web;
use alarm_kind::AlarmBook;
use common::{
    service::{Application, Core},
    settings::Settings,
    Result,
};
use item_kind::ItemCatalog;
use user_kind::UserDirectory;

use crate::{
    routes,
    store::{view_writer, MIGRATIONS},
};

pub fn build(settings: Settings) -> Result<Application> {
    // The item service owns items; it replicates users (the token) and alarm sets (the flags);
    // it publishes views, which the user service stores.
    let core = Core::start(settings, &MIGRATIONS, |kinds| {
        kinds.own::<ItemCatalog>().replicate::<UserDirectory>().replicate::<AlarmBook>().publish_work(item_kind::VIEWS);
    })?;
    let views = web::Data::new(view_writer(core.store.clone(), core.settings.write_lanes, &core.tasks));
    Application::build(core, &routes::openapi(), move |cfg| {
        cfg.app_data(views.clone());
        routes::configure(cfg);
    })
}
