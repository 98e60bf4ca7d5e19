//! The user domain's messages to its store actor: storing views and reading recent ones.

use std::time::Duration;

use actix::prelude::*;
use common::{
    db::Migration,
    entity::VersionedRow,
    store::{
        query::{to_rows_at, OwnEntity},
        query_untimed, Store,
    },
    Error, Result,
};
use item_kind::ViewEvent;

/// Versioned migrations in the order they apply, then this domain's function files (the shared
/// ones, `common::db::FUNCTIONS`, are applied by `common::db::migrate` itself).
pub static MIGRATIONS: [Migration; 17] = [
    common::db::CHANGE_CAPTURE,
    common::db::REPLICA_TABLE,
    common::db::LEAN_OUTBOX,
    Migration { version: 10, name: "user change capture", sql: include_str!("../migrations/0010_user_capture.sql") },
    Migration { version: 11, name: "visits", sql: include_str!("../migrations/0011_visits.sql") },
    Migration {
        version: 12,
        name: "recent visit capture",
        sql: include_str!("../migrations/0012_recent_visit_capture.sql"),
    },
    Migration { version: 13, name: "record visit function", sql: include_str!("../migrations/0013_record_visit.sql") },
    common::db::OWNER_EPOCH,
    common::db::OUTBOX_RETRY,
    common::db::TOMBSTONES,
    Migration { version: 23, name: "visit retention", sql: include_str!("../migrations/0014_visit_retention.sql") },
    common::db::CACHE_ENTRIES,
    common::db::READ_MODELS,
    common::db::TOKEN_HASHES,
    Migration::function("moa_record_visit", include_str!("../sql/functions/moa_record_visit.sql")),
    Migration::function("moa_trim_visits", include_str!("../sql/functions/moa_trim_visits.sql")),
    Migration::function("moa_user_rows_by_token", include_str!("../sql/functions/moa_user_rows_by_token.sql")),
];

/// A user is looked up by its token (`Query::Lookup`: the RPC answers to other services'
/// misses), through the token index (see sql/functions/moa_user_rows_by_token.sql), and leaves
/// user_db with its token's hash instead of the token, in events and answers alike.
pub static OWN_ENTITIES: [OwnEntity; 1] = [OwnEntity {
    entity: "user",
    prefix: None,
    snapshot: None,
    lookup: Some("moa_user_rows_by_token"),
    // No token leaves user_db but in the service's own list (docs/security.md).
    outward: Some(user_kind::user_outward),
}];

/// Stores one view, once: a duplicate event id changes nothing. Answers whether it was new
/// and the user's recent-visit row for that item afterwards (for this instance's replica).
#[derive(Message)]
#[rtype(result = "Result<(bool, Vec<VersionedRow>)>")]
pub struct RecordVisit {
    pub view: ViewEvent,
    pub request_id: String,
}

impl Handler<RecordVisit> for Store {
    type Result = ResponseFuture<Result<(bool, Vec<VersionedRow>)>>;

    fn handle(&mut self, RecordVisit { view: v, request_id }: RecordVisit, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        let wake = self.outbox_wake();
        self.run(async move {
            let conn = pool.get().await?;
            // One round trip: moa_record_visit (sql/functions/moa_record_visit.sql) stores it and returns the pair's state.
            let row = conn
                .query_one(
                    "SELECT inserted, key, version, deleted, data, (SELECT moa_epoch())
                     FROM moa_record_visit($1::text::uuid, $2, $3, $4, $5, $6)",
                    &[&v.event_id, &v.user_id, &v.item_id, &v.viewed_at_us, &v.seq, &request_id],
                )
                .await?;
            wake.notify_one();
            let inserted: bool = row.try_get(0)?;
            // The pair's state after it, when there is one (a NULL key: none).
            let state = match row.try_get::<_, Option<&str>>(1)? {
                Some(_) => to_rows_at(vec![row], 1)?,
                None => Vec::new(),
            };
            Ok((inserted, state))
        })
    }
}

/// The ids of the `limit` items `user_id` viewed most recently, each once, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<i64>>")]
pub struct RecentVisits {
    pub user_id: i64,
    pub limit: i64,
}

impl Handler<RecentVisits> for Store {
    type Result = ResponseFuture<Result<Vec<i64>>>;

    fn handle(&mut self, msg: RecentVisits, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let conn = pool.get().await?;
            let rows = conn
                .query(
                    "SELECT item_id FROM recent_visit WHERE user_id = $1
                     ORDER BY viewed_at DESC, seq DESC LIMIT $2",
                    &[&msg.user_id, &msg.limit],
                )
                .await?;
            rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
        })
    }
}

/// How long a stored view is kept in `visit` (by when it was received): long past any
/// redelivery. See `migrations/0014_visit_retention.sql` and `sql/functions/moa_trim_visits.sql`.
pub const VISIT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often each instance trims the visit book.
pub const VISIT_TRIM_EVERY: Duration = Duration::from_secs(3600);

/// Removes views older than `retention` from `visit`, and each user's `recent_visit` rows
/// beyond the newest `keep` (what `/visit` shows). Answers how many of each were removed.
#[derive(Message)]
#[rtype(result = "Result<(i64, i64)>")]
pub struct TrimVisits {
    pub retention: Duration,
    pub keep: i32,
}

impl Handler<TrimVisits> for Store {
    type Result = ResponseFuture<Result<(i64, i64)>>;

    fn handle(&mut self, msg: TrimVisits, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let mut conn = pool.get().await?;
            let sql = "SELECT visits, recent FROM moa_trim_visits(make_interval(secs => $1), $2)";
            let rows = query_untimed(&mut conn, sql, &[&msg.retention.as_secs_f64(), &msg.keep]).await?;
            let row = rows.first().ok_or_else(|| Error::Malformed("moa_trim_visits answered no row".into()))?;
            Ok((row.try_get(0)?, row.try_get(1)?))
        })
    }
}

/// The periodic trim (owned by the service's tasks); a failure is retried at the next period.
pub async fn trim_visits_periodically(store: Addr<Store>, keep: i32) {
    loop {
        tokio::time::sleep(VISIT_TRIM_EVERY).await;
        match store.send(TrimVisits { retention: VISIT_RETENTION, keep }).await {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((visits, recent))) => {
                log::info!("visit book trimmed: {visits} views past the retention, {recent} recent views beyond {keep} per user")
            }
            Ok(Err(e)) => log::info!("visit trim failed, retried in an hour: {e}"),
            Err(_) => return,
        }
    }
}
