//! Wires the user service: the shared core (store, bus, RPC, relay, replicas) plus its routes.

use common::{
    service::{Application, Core},
    settings::Settings,
    Result,
};

use actix_web::web;

use crate::{list::UserLists, recent, routes, store, store::MIGRATIONS, views};

pub fn build(settings: Settings) -> Result<Application> {
    let core = Core::start(settings, &MIGRATIONS)?;
    let visits = recent::start(&core);
    views::start(&core, visits.clone());
    core.tasks
        .spawn("visit trim", store::trim_visits_periodically(core.store.clone(), routes::visits::RECENT_LIMIT as i32));
    let visits = web::Data::from(visits);
    let lists = web::Data::new(UserLists::new(core.settings.db_pool_size, core.settings.db_timeout));
    Application::build(core, &routes::openapi(), move |cfg| {
        cfg.app_data(visits.clone()).app_data(lists.clone());
        routes::configure(cfg);
    })
}
