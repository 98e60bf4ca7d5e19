//! The user domain's messages to its store actor: storing views and reading recent ones.

use actix::prelude::*;
use common::{
    db::Migration,
    entity::{pair_key, VersionedRow, ViewEvent},
    store::{to_rows, Store},
    Result,
};

pub static MIGRATIONS: [Migration; 5] = [
    common::db::CHANGE_CAPTURE,
    common::db::REPLICA_TABLE,
    Migration { version: 2, name: "user change capture", sql: include_str!("../migrations/0002_user_capture.sql") },
    Migration { version: 3, name: "visits", sql: include_str!("../migrations/0003_visits.sql") },
    Migration {
        version: 4,
        name: "recent visit capture",
        sql: include_str!("../migrations/0004_recent_visit_capture.sql"),
    },
];

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
        Box::pin(async move {
            let mut conn = pool.get().await?;
            let tx = conn.transaction().await?;
            // Ties the recent_visit change event to the request (and we wake our relay ourselves).
            tx.execute("SELECT set_config('moa.request_id', $1, true)", &[&request_id]).await?;
            let inserted = tx
                .execute(
                    "INSERT INTO visit (event_id, user_id, item_id, viewed_at, seq)
                     VALUES ($1::text::uuid, $2, $3, to_timestamp($4::float8 / 1000000.0), $5)
                     ON CONFLICT (event_id) DO NOTHING",
                    &[&v.event_id, &v.user_id, &v.item_id, &(v.viewed_at_us as f64), &v.seq],
                )
                .await?;
            if inserted == 1 {
                // Keep only the latest view per item; an older view arriving late loses.
                tx.execute(
                    "INSERT INTO recent_visit (user_id, item_id, viewed_at, seq, viewed_at_us)
                     VALUES ($1, $2, to_timestamp($3::float8 / 1000000.0), $4, $5)
                     ON CONFLICT (user_id, item_id) DO UPDATE
                        SET viewed_at = EXCLUDED.viewed_at, seq = EXCLUDED.seq, viewed_at_us = EXCLUDED.viewed_at_us
                        WHERE (recent_visit.viewed_at_us, recent_visit.seq) < (EXCLUDED.viewed_at_us, EXCLUDED.seq)",
                    &[&v.user_id, &v.item_id, &(v.viewed_at_us as f64), &v.seq, &v.viewed_at_us],
                )
                .await?;
            }
            let rows = tx
                .query(
                    "SELECT key, version, deleted, data FROM moa_entity_version WHERE entity = 'visit' AND key = $1",
                    &[&pair_key(v.user_id, v.item_id)],
                )
                .await?;
            tx.commit().await?;
            wake.notify_one();
            Ok((inserted == 1, to_rows(rows)?))
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
        Box::pin(async move {
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
