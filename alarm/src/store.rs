//! The alarm domain's messages to its store actor: setting and clearing alarms.

use actix::prelude::*;
use common::{
    db::Migration,
    entity::VersionedRow,
    store::{to_rows, Store},
    Result,
};

pub static MIGRATIONS: [Migration; 3] = [
    common::db::CHANGE_CAPTURE,
    common::db::REPLICA_TABLE,
    Migration { version: 2, name: "alarm change capture", sql: include_str!("../migrations/0002_alarm_capture.sql") },
];

/// Sets (`set: true`) or clears the alarm of `user_id` on `item_id`; both are idempotent.
/// Returns the pair's versioned state after the change, for the service's own replica
/// (so the caller reads its own write at once).
#[derive(Message)]
#[rtype(result = "Result<Vec<VersionedRow>>")]
pub struct WriteAlarm {
    pub user_id: i32,
    pub item_id: i32,
    pub set: bool,
    /// Recorded with the change event (see moa_capture), for tracing across services.
    pub request_id: String,
}

impl Handler<WriteAlarm> for Store {
    type Result = ResponseFuture<Result<Vec<VersionedRow>>>;

    fn handle(&mut self, msg: WriteAlarm, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        let wake = self.outbox_wake();
        Box::pin(async move {
            let conn = pool.get().await?;
            // One round trip: moa_write_alarm (migration 2) changes the row and returns its version.
            let rows = conn
                .query(
                    "SELECT key, version, deleted, data FROM moa_write_alarm($1, $2, $3, $4)",
                    &[&msg.user_id, &msg.item_id, &msg.set, &msg.request_id],
                )
                .await?;
            wake.notify_one();
            to_rows(rows)
        })
    }
}
