//! The item domain's messages to its store actor: recording views.

use actix::prelude::*;
use common::{amqp::topology::VIEWS_EXCHANGE, db::Migration, store::Store, Result};

pub static MIGRATIONS: [Migration; 4] = [
    common::db::CHANGE_CAPTURE,
    common::db::REPLICA_TABLE,
    common::db::LEAN_OUTBOX,
    Migration { version: 2, name: "item change capture", sql: include_str!("../migrations/0002_item_capture.sql") },
];

/// Queues a view of `item_id` by `user_id` in the outbox. Committed here, so neither a down
/// user service nor a down RabbitMQ loses it; the relay publishes it to `item.views`.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct RecordView {
    pub user_id: i64,
    pub item_id: i64,
    pub request_id: String,
}

impl Handler<RecordView> for Store {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: RecordView, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        let wake = self.outbox_wake();
        Box::pin(async move {
            let conn = pool.get().await?;
            conn.execute(
                "INSERT INTO moa_outbox (exchange, payload, request_id)
                 VALUES ($1, jsonb_build_object('user_id', $2::bigint, 'item_id', $3::bigint,
                         'viewed_at_us', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint), $4)",
                &[&VIEWS_EXCHANGE, &msg.user_id, &msg.item_id, &msg.request_id],
            )
            .await?;
            // Our own relay, woken in process (no NOTIFY: it would serialize every commit).
            wake.notify_one();
            Ok(())
        })
    }
}
