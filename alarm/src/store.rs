//! The alarm domain's messages to its store actor: setting and clearing alarms.

use actix::prelude::*;
use common::{
    db::Migration,
    entity::{alarm_key, VersionedRow},
    store::Store,
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
        Box::pin(async move {
            let mut conn = pool.get().await?;
            let tx = conn.transaction().await?;
            tx.execute("SELECT set_config('moa.request_id', $1, true)", &[&msg.request_id]).await?;
            if msg.set {
                tx.execute(
                    "INSERT INTO alarm (item_id, user_id, created) VALUES ($1, $2, now()::timestamp)
                     ON CONFLICT (user_id, item_id) DO NOTHING",
                    &[&msg.item_id, &msg.user_id],
                )
                .await?;
            } else {
                tx.execute("DELETE FROM alarm WHERE user_id = $1 AND item_id = $2", &[&msg.user_id, &msg.item_id])
                    .await?;
            }
            let key = alarm_key(msg.user_id.into(), msg.item_id.into());
            let rows = tx
                .query(
                    "SELECT key, version, deleted, data FROM moa_entity_version WHERE entity = 'alarm' AND key = $1",
                    &[&key],
                )
                .await?;
            tx.commit().await?;
            rows.into_iter()
                .map(|r| {
                    Ok(VersionedRow {
                        key: r.try_get(0)?,
                        version: r.try_get(1)?,
                        deleted: r.try_get(2)?,
                        data: r.try_get(3)?,
                    })
                })
                .collect()
        })
    }
}
