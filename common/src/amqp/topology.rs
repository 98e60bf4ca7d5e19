//! Names of every exchange and queue, and the check that the shared ones exist.
//!
//! The shared topology (exchanges, durable queues, bindings, policies) is created by the
//! broker itself from `rabbitmq/definitions.json.in`, rendered for the domains of `domains.tsv`
//! and imported at boot. The services only check it, with passive declares, at each
//! (re)connect: a passive declare needs no permission, so
//! each service's RabbitMQ user may configure nothing but its own per-instance queues and
//! cannot delete, re-create or re-bind what other services rely on (docs/security.md).

use lapin::{
    options::{ExchangeDeclareOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Channel, ExchangeKind,
};

use crate::{
    error::{Error, Result},
    settings::Domain,
};

/// Fanout exchange of a domain's change-data events (its row in `domains.tsv`).
pub fn events_exchange(d: Domain) -> &'static str {
    d.events_exchange()
}

/// Queue on which a domain answers RPC requests (its row in `domains.tsv`).
pub fn rpc_queue(d: Domain) -> &'static str {
    d.rpc_queue()
}

/// A stream of work: messages a service publishes (through its outbox) for another to do
/// each exactly once, such as the item service's views for the user service to store. Unlike
/// change events, each row is a message of its own (the consumer acks, or dead-letters, each
/// alone), drained by a relay lane of its own, and never dropped when no queue is bound: its
/// durable queue, shared by the consumer's instances, is in `rabbitmq/definitions.json.in`.
/// The publishing service declares it in its `startup.rs` ([`crate::replica::Kinds::publish_work`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkStream {
    /// The fanout exchange the publisher sends to.
    pub exchange: &'static str,
    /// The durable quorum queue bound to it, shared by every consumer instance.
    pub queue: &'static str,
}
/// Where rejected (malformed, unprocessable) messages go, and the queue that keeps them.
pub const DEAD_LETTERS: &str = "dead-letters";

/// Arguments that route rejected messages to the dead-letter exchange.
pub fn dead_letter_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(DEAD_LETTERS.into()));
    args
}

/// The platform's shared exchanges (durable fanouts), as `rabbitmq/definitions.json.in`
/// declares them: each domain's events and the dead letters'. A domain's own streams (work
/// streams, other change feeds) are in that file too, and checked by the code that uses them.
pub fn shared_exchanges() -> Vec<&'static str> {
    Domain::all().iter().map(|d| d.events_exchange()).chain([DEAD_LETTERS]).collect()
}
/// The platform's shared durable queues, as `rabbitmq/definitions.json.in` declares them. Not
/// the RPC queues: each owner declares its own ([`declare_rpc_queue`]).
pub const SHARED_QUEUES: [&str; 1] = [DEAD_LETTERS];

/// Declares `domain`'s RPC queue on the node `ch` is connected to, if no node has it: a
/// transient classic queue. A question needs no durability (its asker gives up after
/// `RPC_TIMEOUT_MS`, and a lost question is a timeout either way), while a quorum queue, as
/// these were, delivers a question only once its Raft log is fsynced: on a disk shared with the
/// databases, questions waited 100-400 ms for that, and first requests failed by the hundred
/// (docs/performance-history.md, "Held events, transient RPC queues"). A transient queue goes away with its node; every owner
/// instance then sees its consumer cancelled and declares the queue again on its own node
/// (`rpc::serve`), so losing a node costs the moment of failover every request through
/// RabbitMQ pays. A durable queue of that name left in a broker's data by an earlier version (a
/// quorum queue) does not match and must be deleted (`rabbitmqctl delete_queue user.rpc`;
/// questions are never worth keeping): `scripts/infra rabbit-start` does it itself.
///
/// Declared, not checked first: a passive declare of a missing queue is a channel error, which
/// lapin reports on the connection, and the connection is started over for it.
pub async fn declare_rpc_queue(conn: &lapin::Connection, domain: Domain) -> Result<Channel> {
    let ch = conn.create_channel().await?;
    let transient = QueueDeclareOptions { durable: false, auto_delete: false, exclusive: false, ..Default::default() };
    ch.queue_declare(rpc_queue(domain).into(), transient, FieldTable::default()).await?;
    Ok(ch)
}

/// Checks that every shared exchange and queue exists (not the per-instance queues), with
/// passive declares. A missing one fails with an error that names it and says where it
/// comes from; the broker also closes the channel, and the caller starts over on a new one.
pub async fn declare_shared(ch: &Channel) -> Result<()> {
    let passive_exchange = ExchangeDeclareOptions { passive: true, ..Default::default() };
    for ex in shared_exchanges() {
        ch.exchange_declare(ex.into(), ExchangeKind::Fanout, passive_exchange, FieldTable::default())
            .await
            .map_err(|e| missing("exchange", ex, e))?;
    }
    let passive_queue = QueueDeclareOptions { passive: true, ..Default::default() };
    for q in SHARED_QUEUES {
        ch.queue_declare(q.into(), passive_queue, FieldTable::default()).await.map_err(|e| missing("queue", q, e))?;
    }
    Ok(())
}

fn missing(kind: &str, name: &str, e: lapin::Error) -> Error {
    Error::Config(format!(
        "RabbitMQ {kind} {name} is not usable ({e}); the broker creates the shared topology from \
         rabbitmq/definitions.json.in at boot (load_definitions), the services do not"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rabbitmq/<template>` rendered for the domains of domains.tsv by `rabbitmq/render.sh`, as
    /// the brokers import it, with `env` set (the services' passwords), as JSON.
    fn rendered(template: &str, env: &[(String, String)]) -> serde_json::Value {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = std::process::Command::new("sh")
            .arg(repo.join("rabbitmq/render.sh"))
            .arg(repo.join("domains.tsv"))
            .arg(repo.join("rabbitmq").join(template))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "render.sh {template}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{template} renders JSON: {e}"))
    }

    /// Every domain gets its RabbitMQ user, which reads every domain's events.
    #[test]
    fn every_domain_has_a_user_that_reads_every_events_exchange() {
        let env: Vec<(String, String)> =
            Domain::all().iter().map(|d| (format!("{}_AMQP_PASSWORD", d.env_prefix()), "x".to_string())).collect();
        let users = rendered("service-users.json.in", &env);
        for d in Domain::all().iter().copied() {
            let login = format!("{}-service", d.name());
            assert!(
                users["users"].as_array().expect("users").iter().any(|u| u["name"] == login.as_str()),
                "no {login}"
            );
            let perms = users["permissions"].as_array().expect("permissions");
            let mine: Vec<_> = perms.iter().filter(|p| p["user"] == login.as_str()).collect();
            assert_eq!(mine.len(), 1, "{login}'s permissions");
            let read = mine[0]["read"].as_str().expect("read");
            for e in Domain::all().iter().copied() {
                let escaped = e.events_exchange().replace('.', "\\.");
                assert!(read.contains(&escaped), "{login} may not read {}: {read}", e.events_exchange());
            }
        }
    }

    /// The names the services check are the ones the definitions file creates.
    #[test]
    fn the_shared_names_are_those_of_the_definitions_file() {
        let defs = rendered("definitions.json.in", &[]);
        let names = |key: &str| -> Vec<String> {
            let mut v: Vec<String> = defs[key]
                .as_array()
                .expect("a list")
                .iter()
                .filter_map(|o| o["name"].as_str().map(String::from))
                .collect();
            v.sort();
            v
        };
        let sorted = |a: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        let (exchanges, queues) = (names("exchanges"), names("queues"));
        for name in sorted(&shared_exchanges()) {
            assert!(exchanges.contains(&name), "{name} is not in definitions.json.in: {exchanges:?}");
        }
        for name in sorted(&SHARED_QUEUES) {
            assert!(queues.contains(&name), "{name} is not in definitions.json.in: {queues:?}");
        }
        for d in Domain::all().iter().copied() {
            assert!(shared_exchanges().contains(&events_exchange(d)));
            // Declared by its owner, transient: never a durable queue the broker imports.
            assert!(!names("queues").contains(&rpc_queue(d).to_string()), "{} is in definitions.json.in", rpc_queue(d));
        }
    }
}
