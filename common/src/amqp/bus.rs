//! The connection supervisor.
//!
//! lapin's own auto-recovery is partial (no QoS re-apply, reported hangs across broker
//! restarts), so we own recovery: one task keeps a connection open, publishing it on a watch
//! channel, and every component (consumer, RPC client/server, relay) rebuilds its channel,
//! QoS, topology and consumers each time a new connection appears.
//!
//! Given the nodes of a cluster (`AMQP_URL` with comma-separated URLs), it connects to one
//! of them and, when that connection is lost or refused, to the next: a new connection is a
//! new generation like any reconnect, so per-instance queues are declared again on the node
//! now serving us and the replicas catch up by digest as after any outage.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};
use tokio::sync::watch;

use crate::{amqp::identity::Identity, error::Result, tasks::Tasks};

/// A live connection and its generation (1 for the first, +1 per reconnect).
#[derive(Clone)]
pub struct Link {
    pub conn: Arc<Connection>,
    pub generation: u64,
}

#[derive(Clone)]
pub struct Bus {
    state: watch::Receiver<Option<Link>>,
    /// Told by [`Bus::close`]: the supervisor closes the connection and opens no other.
    closing: tokio_util::sync::CancellationToken,
    /// The loops of this bus (the supervisor, every per-connection component) are its
    /// children: stopped with the service's other tasks, never left waiting for a connection.
    tasks: Tasks,
    /// The login every connection opens with, and who owns what (see [`Identity`]).
    identity: Arc<Identity>,
}

impl Bus {
    /// Starts the supervisor over the nodes `urls` (at least one). It retries forever, node
    /// after node, with capped back-off once every node has failed; the service runs (serving
    /// from caches) while RabbitMQ is away.
    pub fn start(urls: &[String], connection_name: String, identity: Identity, tasks: &Tasks) -> Bus {
        let (tx, rx) = watch::channel(None);
        let closing = tokio_util::sync::CancellationToken::new();
        let nodes: Vec<Node> = urls.iter().map(|u| Node { url: with_heartbeat(u), shown: node_address(u) }).collect();
        // Instances start on different nodes (by their names), so a cluster's connections spread.
        let first = first_node(&connection_name, nodes.len());
        let closed = closing.clone();
        tasks.spawn("rabbitmq connection", async move {
            supervise(nodes, first, connection_name, tx, closed).await;
            // Closed (or no node given): nothing more to do until the service's tasks stop.
            std::future::pending::<()>().await
        });
        Bus { state: rx, closing, tasks: tasks.clone(), identity: Arc::new(identity) }
    }

    /// This service's login (to stamp its publishes with) and each domain owner's.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn current(&self) -> Option<Link> {
        self.state.borrow().clone()
    }

    pub fn is_connected(&self) -> bool {
        self.current().is_some_and(|l| l.conn.status().connected())
    }

    /// Waits for a connection.
    pub async fn connected(&self) -> Link {
        let mut rx = self.state.clone();
        loop {
            if let Some(link) = rx.borrow_and_update().clone() {
                return link;
            }
            if rx.changed().await.is_err() {
                // The supervisor is gone: only at the stop, which ends this waiter's task too.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until the connection of generation `generation` is gone (or replaced).
    pub async fn lost(&self, generation: u64) {
        let mut rx = self.state.clone();
        loop {
            match &*rx.borrow_and_update() {
                Some(l) if l.generation == generation => {}
                _ => return,
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Closes the connection for good (graceful shutdown): unacked deliveries go back to their queues.
    pub async fn close(&self) {
        self.closing.cancel();
        if let Some(link) = self.current() {
            let _ = link.conn.close(200, "shutting down".into()).await;
        }
    }

    /// Runs `component` on every connection: when it returns (its channel died, or the
    /// connection was lost) it is started again on the next live connection. The loop is one
    /// of the service's tasks: the stop ends it wherever it is (waiting for a connection, or
    /// in the component, which is dropped with whatever it started inside).
    pub fn run_on_each_connection<F, Fut>(&self, name: &'static str, component: F)
    where
        F: Fn(Link) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let bus = self.clone();
        self.tasks.spawn(name, async move {
            loop {
                let link = bus.connected().await;
                let generation = link.generation;
                match component(link).await {
                    Ok(()) => log::info!("{name}: stopped on connection {generation}"),
                    Err(e) => log::warn!("{name}: {e}; restarting it on a live connection"),
                }
                // Jittered: every instance restarts its components after the same broker blip,
                // and each restart re-syncs from an owner.
                tokio::time::sleep(crate::backoff::jitter(Duration::from_millis(300))).await;
            }
        });
    }
}

/// How long one connection attempt (TCP, AMQP handshake, authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Adds a short heartbeat so a dead peer is noticed in seconds, unless the URL sets one.
fn with_heartbeat(url: &str) -> String {
    if url.contains("heartbeat=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&heartbeat=10")
    } else {
        format!("{url}?heartbeat=10")
    }
}

/// One RabbitMQ node: its URL (with heartbeat) and, for logs, its address without credentials.
struct Node {
    url: String,
    shown: String,
}

/// `host:port` of an amqp URL (what logs may show of it; the credentials never).
fn node_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

/// The node an instance tries first: spread by a hash of its connection name.
fn first_node(connection_name: &str, nodes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    connection_name.hash(&mut h);
    (h.finish() % nodes.max(1) as u64) as usize
}

async fn supervise(
    nodes: Vec<Node>,
    mut current: usize,
    name: String,
    tx: watch::Sender<Option<Link>>,
    closing: tokio_util::sync::CancellationToken,
) {
    if nodes.is_empty() {
        log::error!("no RabbitMQ node given (AMQP_URL): running without RabbitMQ");
        return;
    }
    let mut generation = 0u64;
    let mut delay = Duration::from_millis(200);
    let mut failures = 0u32;
    // Nodes tried since the last success: back off only once every node has refused.
    let mut tried_this_round = 0usize;
    loop {
        let node = &nodes[current % nodes.len()];
        let url = &node.url;
        let props = ConnectionProperties::default().with_connection_name(name.clone().into());
        // Bounded: lapin's connect can stay pending for good when the broker drops the socket
        // mid-handshake (RabbitMQ does after its 10 s handshake timeout on a loaded machine),
        // which left a service without RabbitMQ until restarted.
        let attempt = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props)) => r.unwrap_or_else(|_| {
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no connection within the connect timeout").into())
            }),
            _ = closing.cancelled() => return,
        };
        match attempt {
            Ok(conn) => {
                generation += 1;
                failures = 0;
                tried_this_round = 0;
                delay = Duration::from_millis(200);
                log::info!("rabbitmq connected to {} (connection {generation})", node.shown);
                let conn = Arc::new(conn);
                let mut events = conn.events_listener();
                let _ = tx.send(Some(Link { conn: conn.clone(), generation }));
                loop {
                    tokio::select! {
                        ev = events.next() => match ev {
                            Some(Event::Error(e)) => { log::warn!("rabbitmq connection {generation} to {} failed: {e}", node.shown); break; }
                            None => break,
                            Some(_) => {}
                        },
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if !conn.status().connected() {
                                log::warn!("rabbitmq connection {generation} to {} is no longer connected", node.shown);
                                break;
                            }
                        }
                        _ = closing.cancelled() => { let _ = tx.send(None); return; }
                    }
                }
                let _ = tx.send(None);
                // The node we lost is likely down: the next one is tried first, at once.
                current += 1;
            }
            Err(e) => {
                failures += 1;
                // Say it once, then every ~10 attempts: an outage should not flood the log.
                if failures == 1 || failures.is_multiple_of(10) {
                    log::warn!("rabbitmq node {} unreachable ({e}); retrying (attempt {failures})", node.shown);
                }
                current += 1;
                tried_this_round += 1;
                if tried_this_round >= nodes.len() {
                    tried_this_round = 0;
                    // Jittered: the instances that lost the same node retry apart.
                    tokio::time::sleep(crate::backoff::jitter(delay)).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_show_a_node_by_its_address_only() {
        assert_eq!(node_address("amqp://item:s3cret@10.0.0.7:5673/%2f?heartbeat=10"), "10.0.0.7:5673");
        assert_eq!(node_address("amqp://rabbitmq-2:5672"), "rabbitmq-2:5672");
        assert_eq!(node_address("amqps://u:p:q@h/%2f"), "h");
    }

    #[tokio::test]
    async fn the_supervisor_and_every_component_loop_stop_with_the_services_tasks() {
        // A node nobody listens on: the components wait for a connection that never comes.
        let tasks = Tasks::new();
        let identity = Identity::new(crate::settings::Domain::new("item"), "item-service", None).expect("an identity");
        let bus = Bus::start(&["amqp://u:p@127.0.0.1:9/%2f".into()], "test".into(), identity, &tasks);
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for name in ["consumer", "relay"] {
            let started = started.clone();
            bus.run_on_each_connection(name, move |_link| {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Ok(()) }
            });
        }
        assert_eq!(tasks.running(), 3, "the supervisor and both loops are the service's tasks");
        bus.close().await;
        let left = tasks.shutdown(Duration::from_secs(1)).await;
        assert!(left.is_empty(), "none had to be aborted: {left:?}");
        assert_eq!(tasks.running(), 0);
        assert_eq!(tasks.failures(), 0, "stopped, not failed");
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 0, "no connection, no component");
    }

    #[test]
    fn instances_spread_over_the_nodes() {
        assert_eq!(first_node("anything", 1), 0);
        let firsts: std::collections::BTreeSet<usize> =
            (0..60).map(|i| first_node(&format!("item-service item-{i}"), 3)).collect();
        assert_eq!(firsts.len(), 3, "60 instance names start on every one of 3 nodes");
    }
}
