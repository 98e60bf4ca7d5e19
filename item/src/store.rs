//! The item domain's messages to its store actor: recording views, coalesced.

use actix::prelude::*;
use common::{batch::Coalescer, db::Migration, store::Store, Result};
use item_kind::VIEWS;
use tokio_postgres::types::Type;

/// Versioned migrations in the order they apply (the shared function files,
/// `common::db::FUNCTIONS`, are applied by `common::db::migrate` itself).
pub static MIGRATIONS: [Migration; 10] = [
    common::db::CHANGE_CAPTURE,
    common::db::REPLICA_TABLE,
    common::db::LEAN_OUTBOX,
    Migration { version: 10, name: "item change capture", sql: include_str!("../migrations/0010_item_capture.sql") },
    common::db::OWNER_EPOCH,
    common::db::OUTBOX_RETRY,
    common::db::TOMBSTONES,
    common::db::CACHE_ENTRIES,
    common::db::READ_MODELS,
    common::db::TOKEN_HASHES,
];

/// A view of `item_id` by `user_id`, to queue in the outbox. Committed before the detail
/// answers, so neither a down user service nor a down RabbitMQ loses it; the relay publishes
/// it to `item.views`.
#[derive(Debug, Clone)]
pub struct RecordView {
    pub user_id: i64,
    pub item_id: i64,
    pub request_id: String,
    /// The client's (or the load balancer's) `Idempotency-Key`: a view sent again with the same
    /// key (a retry on another instance after one died under it) gets the same event id, and
    /// the user service stores an event id once. None: every view is a view of its own.
    pub idempotency_key: Option<String>,
}

/// Several [`RecordView`]s in one statement and one commit, in order. Each gets its own
/// outbox row (its own `viewed_at_us` from item_db's clock, its own request id).
#[derive(Message)]
#[rtype(result = "Result<Vec<()>>")]
pub struct RecordViews(pub Vec<RecordView>);

impl Handler<RecordViews> for Store {
    type Result = ResponseFuture<Result<Vec<()>>>;

    fn handle(&mut self, RecordViews(views): RecordViews, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        let wake = self.outbox_wake();
        self.run(async move {
            let conn = pool.get().await?;
            let users: Vec<i64> = views.iter().map(|v| v.user_id).collect();
            let items: Vec<i64> = views.iter().map(|v| v.item_id).collect();
            let request_ids: Vec<&str> = views.iter().map(|v| v.request_id.as_str()).collect();
            let keys: Vec<Option<&str>> = views.iter().map(|v| v.idempotency_key.as_deref()).collect();
            // With a key, the event id is a hash of (user, item, key): the same view sent twice
            // is one event; without, a fresh random id (the column's default).
            conn.execute_typed(
                "INSERT INTO moa_outbox (exchange, payload, request_id, event_id)
                 SELECT $1, jsonb_build_object('user_id', v.user_id, 'item_id', v.item_id,
                            'viewed_at_us', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint),
                        v.request_id,
                        CASE WHEN v.key IS NULL THEN gen_random_uuid()
                             ELSE md5('view|' || v.user_id || '|' || v.item_id || '|' || v.key)::uuid END
                 FROM unnest($2, $3, $4, $5) WITH ORDINALITY AS v(user_id, item_id, request_id, key, n)
                 ORDER BY v.n",
                &[
                    (&VIEWS.exchange, Type::TEXT),
                    (&users, Type::INT8_ARRAY),
                    (&items, Type::INT8_ARRAY),
                    (&request_ids, Type::TEXT_ARRAY),
                    (&keys, Type::TEXT_ARRAY),
                ],
            )
            .await?;
            // Our own relay, woken in process (no NOTIFY: it would serialize every commit).
            wake.notify_one();
            Ok(vec![(); views.len()])
        })
    }
}

/// Concurrent item views, gathered into [`RecordViews`] batches (as alarm writes are).
pub type ViewWriter = Coalescer<RecordView, ()>;

/// Starts the [`ViewWriter`], `lanes` batches in flight at once (`WRITE_LANES`).
pub fn view_writer(store: Addr<Store>, lanes: usize, tasks: &common::tasks::Tasks) -> ViewWriter {
    Coalescer::to_store("item views", lanes, store, tasks, RecordViews)
}
