//! Wires the user service: the shared core (store, bus, RPC, relay, replicas) plus its routes.

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
    list::UserLists,
    recent, routes, store,
    store::{MIGRATIONS, OWN_ENTITIES},
    views,
};

pub fn build(settings: Settings) -> Result<Application> {
    // Read before anything starts, so that a bad value stops the service at once.
    let list_tokens = common::settings::flag_from_env("USER_LIST_TOKENS", true)?;
    // The user service owns users; it replicates items and alarm sets (`/visit`'s items with
    // their flags).
    let core = Core::start_with_reads(settings, &MIGRATIONS, &OWN_ENTITIES, |kinds| {
        kinds.own::<UserDirectory>().replicate::<ItemCatalog>().replicate::<AlarmBook>();
    })?;
    let visits = recent::start(&core);
    views::start(&core, visits.clone());
    core.tasks
        .spawn("visit trim", store::trim_visits_periodically(core.store.clone(), routes::visits::RECENT_LIMIT as i32));
    let visits = web::Data::from(visits);
    let lists = web::Data::new(UserLists::new(core.settings.db_pool_size, core.settings.db_timeout, list_tokens));
    Application::build(core, &routes::openapi(), move |cfg| {
        cfg.app_data(visits.clone()).app_data(lists.clone());
        routes::configure(cfg);
    })
}
