//! Names and declarations of every exchange and queue. Every service declares the shared
//! topology at each (re)connect, idempotently, with the same arguments as
//! `rabbitmq/definitions.json` (a mismatch would make RabbitMQ refuse the declaration).

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Channel, ExchangeKind,
};

use crate::{error::Result, settings::Domain};

/// Fanout exchange of a domain's change-data events.
pub fn events_exchange(d: Domain) -> &'static str {
    match d {
        Domain::Item => "item.events",
        Domain::Alarm => "alarm.events",
        Domain::User => "user.events",
    }
}

/// Queue on which a domain answers RPC requests.
pub fn rpc_queue(d: Domain) -> &'static str {
    match d {
        Domain::Item => "item.rpc",
        Domain::Alarm => "alarm.rpc",
        Domain::User => "user.rpc",
    }
}

/// Fanout exchange the item service publishes views to.
pub const VIEWS_EXCHANGE: &str = "item.views";
/// Durable quorum queue of views, shared by all user service instances.
pub const VIEWS_QUEUE: &str = "user.views";
/// Fanout exchange of changes to users' recent views, bound by user service instances only.
pub const VISITS_EXCHANGE: &str = "user.visits";
/// Where rejected (malformed, unprocessable) messages go, and the queue that keeps them.
pub const DEAD_LETTERS: &str = "dead-letters";

fn durable_fanout() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..Default::default() }
}

/// Arguments that route rejected messages to the dead-letter exchange.
pub fn dead_letter_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(DEAD_LETTERS.into()));
    args
}

/// Declares every shared exchange and queue (not the per-instance cache queues).
pub async fn declare_shared(ch: &Channel) -> Result<()> {
    for ex in [
        events_exchange(Domain::Item),
        events_exchange(Domain::Alarm),
        events_exchange(Domain::User),
        VIEWS_EXCHANGE,
        VISITS_EXCHANGE,
        DEAD_LETTERS,
    ] {
        ch.exchange_declare(ex.into(), ExchangeKind::Fanout, durable_fanout(), FieldTable::default()).await?;
    }
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(DEAD_LETTERS.into(), durable, FieldTable::default()).await?;
    ch.queue_bind(
        DEAD_LETTERS.into(),
        DEAD_LETTERS.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    for d in Domain::ALL {
        ch.queue_declare(rpc_queue(d).into(), durable, FieldTable::default()).await?;
    }
    let mut views_args = dead_letter_args();
    views_args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    ch.queue_declare(VIEWS_QUEUE.into(), durable, views_args).await?;
    ch.queue_bind(
        VIEWS_QUEUE.into(),
        VIEWS_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}
