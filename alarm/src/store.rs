//! The alarm domain's messages to its store actor: setting and clearing alarms, coalesced.

use actix::prelude::*;
use common::{
    batch::Coalescer,
    db::Migration,
    entity::VersionedRow,
    store::{
        query::{to_rows_at, OwnEntity},
        Store,
    },
    Error, Result,
};

/// Versioned migrations in the order they apply, then this domain's function files (the shared
/// ones, `common::db::FUNCTIONS`, are applied by `common::db::migrate` itself).
pub static MIGRATIONS: [Migration; 16] = [
    common::db::CHANGE_CAPTURE,
    common::db::REPLICA_TABLE,
    common::db::LEAN_OUTBOX,
    Migration { version: 10, name: "alarm change capture", sql: include_str!("../migrations/0010_alarm_capture.sql") },
    Migration {
        version: 11,
        name: "alarm writes in batches",
        sql: include_str!("../migrations/0011_alarm_write_batch.sql"),
    },
    Migration {
        version: 12,
        name: "set-based alarm writes",
        sql: include_str!("../migrations/0012_alarm_write_set_based.sql"),
    },
    common::db::OWNER_EPOCH,
    common::db::OUTBOX_RETRY,
    common::db::TOMBSTONES,
    common::db::CACHE_ENTRIES,
    common::db::READ_MODELS,
    common::db::TOKEN_HASHES,
    Migration::function("moa_alarm_state", include_str!("../sql/functions/moa_alarm_state.sql")),
    Migration::function("moa_write_alarms", include_str!("../sql/functions/moa_write_alarms.sql")),
    Migration::function("moa_alarm_rows", include_str!("../sql/functions/moa_alarm_rows.sql")),
    Migration::function("moa_alarm_page", include_str!("../sql/functions/moa_alarm_page.sql")),
];

/// A user's alarms (`Query::Prefix` of `"<user_id>:"`: the RPC answers and this service's own
/// list) include the alarms loaded before capture existed, which have no version row and are
/// read as version 0 (see sql/functions/moa_alarm_rows.sql).
pub static OWN_ENTITIES: [OwnEntity; 1] = [OwnEntity {
    entity: "alarm",
    prefix: Some("moa_alarm_rows"),
    snapshot: Some("moa_alarm_page"),
    lookup: None,
    outward: None,
}];

/// Sets (`set: true`) or clears the alarm of `user_id` on `item_id`; both are idempotent.
#[derive(Debug, Clone)]
pub struct WriteAlarm {
    pub user_id: i32,
    pub item_id: i32,
    pub set: bool,
    /// Recorded with the change event (see moa_capture), for tracing across services.
    pub request_id: String,
}

/// Several [`WriteAlarm`]s in one transaction, applied in order. Answers, per write, the
/// pair's versioned state after it (for the service's own replica: the caller reads its
/// own write at once).
#[derive(Message)]
#[rtype(result = "Result<Vec<Vec<VersionedRow>>>")]
pub struct WriteAlarms(pub Vec<WriteAlarm>);

impl Handler<WriteAlarms> for Store {
    type Result = ResponseFuture<Result<Vec<Vec<VersionedRow>>>>;

    fn handle(&mut self, WriteAlarms(writes): WriteAlarms, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        let wake = self.outbox_wake();
        self.run(async move {
            let conn = pool.get().await?;
            let users: Vec<i32> = writes.iter().map(|w| w.user_id).collect();
            let items: Vec<i32> = writes.iter().map(|w| w.item_id).collect();
            let sets: Vec<bool> = writes.iter().map(|w| w.set).collect();
            let request_ids: Vec<&str> = writes.iter().map(|w| w.request_id.as_str()).collect();
            // Prepared once per connection: each batch is one bind and execute, one commit.
            let rows = conn
                .query_prepared(
                    "SELECT ord, key, version, deleted, data, (SELECT moa_epoch()) FROM moa_write_alarms($1, $2, $3, $4)",
                    &[&users, &items, &sets, &request_ids],
                )
                .await?;
            wake.notify_one();
            let mut answers: Vec<Vec<tokio_postgres::Row>> = (0..writes.len()).map(|_| Vec::new()).collect();
            for row in rows {
                let ord: i32 = row.try_get(0)?;
                let slot = usize::try_from(ord - 1).ok().and_then(|i| answers.get_mut(i));
                slot.ok_or_else(|| Error::Malformed(format!("moa_write_alarms answered for write {ord}")))?.push(row);
            }
            answers.into_iter().map(|rows| to_rows_at(rows, 1)).collect()
        })
    }
}

/// Concurrent alarm writes, gathered into [`WriteAlarms`] batches.
pub type AlarmWriter = Coalescer<WriteAlarm, Vec<VersionedRow>>;

/// Gathers concurrent writes into batches, `lanes` in flight at once (`WRITE_LANES`): while
/// one commits, the next requests gather for the next. See docs/performance.md for how the
/// count was chosen. With one lane, a batch that waits on a row lock (an operator's open
/// transaction on that alarm) holds up the writes queued behind it until it gets the lock.
pub fn alarm_writer(store: Addr<Store>, lanes: usize, tasks: &common::tasks::Tasks) -> AlarmWriter {
    Coalescer::to_store("alarm writes", lanes, store, tasks, WriteAlarms)
}
