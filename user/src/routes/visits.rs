use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use alarm_kind::AlarmBook;
use common::{http, openapi, service::Core, ApiError};
use item_kind::{api::ItemList, ItemCatalog};
use user_kind::{auth, UserDirectory};

use crate::{
    recent::{self, VisitBook},
    store::RecentVisits,
};

/// How many recently viewed items `/visit` shows.
pub const RECENT_LIMIT: i64 = 3;

/// `GET /visit`: the caller's 3 most recently viewed items, newest first, each once.
#[utoipa::path(get, path = "/visit", tag = "contract", operation_id = "recentVisits", security(("UserToken" = [])),
    summary = "The caller's recently viewed items, most recent first, at most 3, each item once",
    description = "Repeated views of an item show it once, at its latest view (A, B, A → A, B). Items deleted \
        from item_db are left out (the list may then hold fewer than 3).",
    responses(
        (status = 200, description = "The recently viewed items", body = ItemList,
            example = json!({"count": 0, "payload": []})),
        openapi::ReadErrors
    ))]
pub async fn recent(
    req: HttpRequest,
    users: web::Data<UserDirectory>,
    alarms: web::Data<AlarmBook>,
    items: web::Data<ItemCatalog>,
    core: web::Data<Core>,
    visits: web::Data<VisitBook>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::authenticate(&req, &users).await?;
    // From memory once this instance's visit book is loaded; from the database before that,
    // within DB_TIMEOUT_MS.
    let ids = match recent::recent(&visits, user.id, RECENT_LIMIT as usize) {
        Some(ids) => ids,
        None => {
            let read = async {
                core.store
                    .send(RecentVisits { user_id: user.id, limit: RECENT_LIMIT })
                    .await
                    .map_err(common::Error::from)?
            };
            common::error::within_own_database_deadline(core.settings.db_timeout, read)
                .await
                .map_err(|e| ApiError::from_dependency(e, "your recent views"))?
        }
    };
    let alarmed =
        alarms.items_of(user.id).await.map_err(|e| ApiError::from_dependency(e, "the list of your alarms"))?;
    let body = items
        .render_ids(&ids, &|id| alarmed.contains(&id))
        .await
        .map_err(|e| ApiError::from_dependency(e, "the viewed items"))?;
    Ok(http::json_bytes(StatusCode::OK, body))
}
