//! Least privilege on the broker (docs/security.md): each service logs in to RabbitMQ as its own
//! user (rabbitmq/service-users.json.in), which may publish only its own domain's events, read
//! only what it consumes and configure only its own per-instance queues; no service user may
//! use the management API. Checked against the real broker with the very credentials the
//! services run with, while the services run normally on them.

use std::{process::Command, time::Duration};

use e2e::{eventually, service_credentials, Seed, Svc, System};
use lapin::{
    options::{
        BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::FieldTable,
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};

/// A fresh channel of a fresh connection as `svc`'s user: a refused operation closes the
/// channel, so every attempt gets its own.
pub async fn channel(sys: &System, svc: Svc) -> (Connection, Channel) {
    let conn = Connection::connect(&sys.service_amqp_url(svc), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("{} logs in to its virtual host: {e}", svc.name()));
    let ch = conn.create_channel().await.expect("a channel");
    (conn, ch)
}

/// Publishes `body` to `exchange` as `svc`, with `svc`'s login as `user_id` as the services
/// do, and waits for the broker's verdict: Ok once the broker confirmed it, Err with the
/// broker's reason otherwise.
pub async fn publish(sys: &System, svc: Svc, exchange: &str, routing_key: &str, body: &[u8]) -> Result<(), String> {
    let props = BasicProperties::default().with_user_id(service_credentials(svc).0.as_str().into());
    publish_with(sys, svc, exchange, routing_key, body, props).await
}

/// [`publish`] with the given properties.
pub async fn publish_with(
    sys: &System,
    svc: Svc,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), String> {
    let (conn, ch) = channel(sys, svc).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm mode");
    let props = props.with_content_type("application/json".into());
    let outcome = async {
        let confirm = ch
            .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), body, props)
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(5), confirm).await {
            Ok(Ok(c)) if c.is_ack() => Ok(()),
            Ok(Ok(c)) => Err(format!("nacked: {c:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no confirm within 5 s".into()),
        }
    }
    .await;
    let _ = conn.close(200, "done".into()).await;
    outcome
}

pub fn assert_refused(what: &str, outcome: Result<(), String>) {
    match outcome {
        Ok(()) => panic!("{what}: allowed, must be refused"),
        Err(e) => assert!(e.contains("ACCESS_REFUSED"), "{what}: refused, but not for lack of permission: {e}"),
    }
}

/// The outcome of a channel-level operation as `svc`, as text for [`assert_refused`].
async fn attempt<F, Fut>(sys: &System, svc: Svc, op: F) -> Result<(), String>
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<(), lapin::Error>>,
{
    let (conn, ch) = channel(sys, svc).await;
    let outcome = op(ch).await.map_err(|e| e.to_string());
    let _ = conn.close(200, "done".into()).await;
    outcome
}

/// An empty batch of change events: well-formed, so no replica dead-letters it.
const NO_EVENTS: &[u8] = b"[]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_may_publish_only_its_own_events() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");

    // What each service does itself: allowed.
    publish(&sys, Svc::ITEM, "item.events", "", NO_EVENTS).await.expect("item-service publishes item.events");
    publish(&sys, Svc::ALARM, "alarm.events", "", NO_EVENTS).await.expect("alarm-service publishes alarm.events");
    publish(&sys, Svc::USER, "user.events", "", NO_EVENTS).await.expect("user-service publishes user.events");

    // A forged change event of another domain: refused by the broker.
    for (svc, exchange) in [
        (Svc::ITEM, "user.events"),
        (Svc::ALARM, "user.events"),
        (Svc::ITEM, "alarm.events"),
        (Svc::USER, "item.events"),
        (Svc::USER, "alarm.events"),
        (Svc::ALARM, "item.events"),
        // views come from the item service only
        (Svc::ALARM, "item.views"),
        (Svc::USER, "item.views"),
        // recent-visit changes from the user service only
        (Svc::ITEM, "user.visits"),
    ] {
        let forged = br#"[{"entity":"user","key":"1","version":9007199254740000,"row":null}]"#;
        assert_refused(
            &format!("{} publishing to {exchange}", svc.name()),
            publish(&sys, svc, exchange, "", forged).await,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_service_can_read_or_reshape_what_others_rely_on() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");

    // Read: another service's RPC requests, the views meant for the user service.
    for (svc, queue) in
        [(Svc::ITEM, "user.views"), (Svc::ALARM, "user.views"), (Svc::ALARM, "item.rpc"), (Svc::ITEM, "user.rpc")]
    {
        let outcome = attempt(&sys, svc, |ch| async move {
            ch.basic_consume(queue.into(), "spy".into(), BasicConsumeOptions::default(), FieldTable::default())
                .await
                .map(drop)
        })
        .await;
        assert_refused(&format!("{} consuming {queue}", svc.name()), outcome);
    }

    // Read: binding a queue of its own to the views exchange (who viewed what).
    let outcome = attempt(&sys, Svc::ALARM, |ch| async move {
        let opts = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        ch.queue_declare("alarm.replica.spy".into(), opts, FieldTable::default()).await?;
        ch.queue_bind(
            "alarm.replica.spy".into(),
            "item.views".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
    })
    .await;
    assert_refused("alarm-service binding a queue to item.views", outcome);

    // Configure: re-declaring, deleting or creating shared objects.
    let outcome = attempt(&sys, Svc::ITEM, |ch| async move {
        let opts = ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare("user.events".into(), ExchangeKind::Fanout, opts, FieldTable::default()).await
    })
    .await;
    assert_refused("item-service declaring user.events", outcome);
    let outcome = attempt(&sys, Svc::ALARM, |ch| async move {
        ch.queue_delete("user.views".into(), QueueDeleteOptions::default()).await.map(drop)
    })
    .await;
    assert_refused("alarm-service deleting user.views", outcome);
    let outcome = attempt(&sys, Svc::ITEM, |ch| async move {
        let opts = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        ch.queue_declare("user.replica.fake".into(), opts, FieldTable::default()).await.map(drop)
    })
    .await;
    assert_refused("item-service declaring a queue in the user service's namespace", outcome);
    // Each owner declares its own RPC queue, and only its own.
    let outcome = attempt(&sys, Svc::ITEM, |ch| async move {
        ch.queue_declare("user.rpc".into(), QueueDeclareOptions::default(), FieldTable::default()).await.map(drop)
    })
    .await;
    assert_refused("item-service declaring the user service's RPC queue", outcome);
    let outcome = attempt(&sys, Svc::ALARM, |ch| async move {
        ch.queue_delete("user.rpc".into(), QueueDeleteOptions::default()).await.map(drop)
    })
    .await;
    assert_refused("alarm-service deleting the user service's RPC queue", outcome);

    // The operator's tools are out of reach: no tag, so no management API at all.
    for svc in Svc::all() {
        let (user, password) = service_credentials(svc);
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-u",
                &format!("{user}:{password}"),
            ])
            .arg(format!("http://127.0.0.1:{}/api/overview", sys.infra.mgmt_port))
            .output()
            .expect("curl runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "401", "{user} must not use the management API");
        let about = e2e::mgmt(sys.infra.mgmt_port, "GET", &format!("/api/users/{user}"), None);
        let about: serde_json::Value = serde_json::from_str(&about).expect("user JSON");
        assert_eq!(about["tags"], serde_json::json!([]), "{user} has no tag (no administrator): {about}");
    }
}

/// The restricted users are enough: every path that crosses the broker works (RPC both
/// ways, replica feeds, the relay, views, recent visits), and no service was refused anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_run_normally_on_their_restricted_users() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let token = sys.token().await; // tokens over RPC from the user service
    let r = sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 7}"#).await; // alarm_db → alarm.events
    assert_eq!(r.status, 201, "{r:?}");
    eventually(Duration::from_secs(5), "the item service sees the alarm (alarm.events replica feed)", || async {
        let r = sys.get(Svc::ITEM, "/", &token).await;
        r.status == 200 && r.alarmed_ids() == vec![7]
    })
    .await;
    let r = sys.get(Svc::ITEM, "/7", &token).await; // item.views → user.views → user_db → user.visits
    assert_eq!(r.status, 200, "{r:?}");
    eventually(Duration::from_secs(5), "the view reaches /visit", || async {
        let r = sys.get(Svc::USER, "/visit", &token).await;
        r.status == 200 && r.ids() == vec![7]
    })
    .await;
    for svc in Svc::all() {
        let log = sys.log(svc);
        assert!(!log.contains("ACCESS_REFUSED"), "{} was refused something:\n{log}", svc.name());
        // Every message carried its owner's login, which the broker accepted.
        assert!(!log.contains("PRECONDITION_FAILED"), "{} was refused a user_id:\n{log}", svc.name());
        assert_eq!(sys.counter_sum(svc, "moa_amqp_refused_total", "").await, 0.0, "{} refused a message", svc.name());
        assert!(!log.contains("is not usable"), "{} found the shared topology missing:\n{log}", svc.name());
    }
    // Each service is connected as its own user, none as the administrator. (The management
    // API lists connections from statistics emitted every 5 s, so it may lag.)
    let path = format!("/api/vhosts/{}/connections", sys.name);
    let users = || {
        let conns: serde_json::Value =
            serde_json::from_str(&e2e::mgmt(sys.infra.mgmt_port, "GET", &path, None)).expect("connections JSON");
        let mut users: Vec<String> =
            conns.as_array().expect("a list").iter().filter_map(|c| c["user"].as_str().map(String::from)).collect();
        users.sort_unstable();
        users
    };
    let mut logins: Vec<String> = e2e::domains().iter().map(|d| format!("{d}-service")).collect();
    logins.sort_unstable();
    eventually(Duration::from_secs(15), "every service's connection is listed", || async {
        users().len() >= logins.len()
    })
    .await;
    assert_eq!(users(), logins);
}

/// Every service may write to the default exchange (RPC), which delivers into any queue by
/// name, so alarm-service's credentials can put a forged `user` change event straight into the
/// item service's replica queue, here one that gives user 1 a token of the forger's choosing.
/// The replica feed applies a change event only when the broker says it came through its
/// owner's `<domain>.events` exchange (`Delivery::exchange`), so the token stays unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_event_forged_through_the_default_exchange_is_not_applied() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let queues = e2e::mgmt(sys.infra.mgmt_port, "GET", &format!("/api/queues/{}?columns=name", sys.name), None);
    let queues: serde_json::Value = serde_json::from_str(&queues).expect("queues JSON");
    let item_replica = queues
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .find(|n| n.starts_with("item.replica."))
        .expect("the item service's replica queue")
        .to_string();
    let forged = br#"[{"event_id":"forged-1","entity":"user","key":"1","version":9007199254740000,"deleted":false,"data":{"id":1,"name":"forged","access_token":"forged-token"}}]"#;
    publish(&sys, Svc::ALARM, "", &item_replica, forged).await.expect("the default exchange takes it");
    // The replica feed refuses it: dead-lettered (counted exactly, not from the statistics),
    // so it has been handled, and not applied.
    eventually(Duration::from_secs(10), "the forged event is dead-lettered", || async {
        sys.dead_letters_now().await == 1
    })
    .await;
    let listed = sys.dead_letters_script(&["list"]);
    assert!(
        listed.contains(&format!(
            "from exchange '' (queue '{item_replica}', refused) refused by 'item-service', published by 'alarm-service' \
             [x-moa-refused: change events that came through \"\", no owner's events exchange]"
        )),
        "{listed}"
    );
    assert_eq!(sys.counter_sum(Svc::ITEM, "moa_amqp_refused_total", "reason=\"exchange\"").await, 1.0);
    crate::publisher_identity::assert_unknown_token(&sys, Svc::ITEM, "forged-token").await;
}
