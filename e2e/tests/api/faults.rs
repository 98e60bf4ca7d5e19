//! Keep serving and lose nothing when a service, a database or RabbitMQ dies. Crashes are
//! crashes: services and the broker are killed with SIGKILL, databases stopped with
//! `pg_ctl -m immediate`; only the tests about a graceful stop use SIGTERM.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use e2e::{eventually, mgmt, Infra, Method, Resp, Seed, Svc, System};

const BACK: Duration = Duration::from_secs(10);

/// Scheduling margin on top of a documented timeout, for the 2-core CI machine with the rest
/// of the suite beside: measured there, RPC misses took 304–314 ms (bound 300 ms) and a
/// crashed database's 503 took 2–44 ms; 100 ms leaves room without hiding a broken bound.
const MARGIN: Duration = Duration::from_millis(100);
/// `RPC_TIMEOUT_MS`: how long a cache miss waits for the owning service (docs/failures.md): the
/// documented default, 300 ms, which the harness leaves the services at (e2e::rpc_timeout).
fn rpc_bound() -> Duration {
    e2e::rpc_timeout()
}
/// `OWN_READ_TIMEOUT_MS`: how long the alarm list waits for alarm_db before answering from
/// memory (docs/operations.md, 250 ms by default).
const OWN_READ_BOUND: Duration = e2e::OWN_READ_TIMEOUT;
/// `DB_TIMEOUT_MS`: how long a request waits for its own database (docs/failures.md).
const DB_BOUND: Duration = Duration::from_millis(2000);

/// The answer and how long it took.
async fn timed(request: impl Future<Output = Resp>) -> (Resp, Duration) {
    let started = Instant::now();
    let r = request.await;
    (r, started.elapsed())
}

fn assert_within(took: Duration, bound: Duration, what: &str) {
    // The stated margin: MARGIN plus a tenth of the bound (a 2 s pool wait on 2 loaded cores
    // overran by 155-200 ms in the suite; 300 ms and 250 ms bounds get 130 and 125 ms).
    let margin = MARGIN + bound / 10;
    eprintln!("{what}: answered in {took:?} (bound {bound:?} + {margin:?})");
    assert!(took <= bound + margin, "{what} answered in {took:?}; the documented bound is {bound:?} (+{margin:?})");
}

async fn demo(infra: Infra) -> System {
    System::start_on(infra, Seed::Demo, &[]).await.expect("the demo seed is part of the repository")
}

/// A system whose misses go to the owner alone (`READ_MODELS=0`): the owner tier as it answers
/// while a read model is still being built (a first start, a new owner epoch). With complete
/// read models the same requests are answered from disk (e2e/tests/api/read_models.rs).
async fn demo_owner_tier(infra: Infra) -> System {
    System::start_on(infra, Seed::Demo, &[("READ_MODELS", "0")]).await.expect("the demo seed is part of the repository")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_service_down_item_list_flags_stay_right() {
    let mut sys = demo_owner_tier(Infra::shared()).await;
    let token = sys.token().await;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 11}"#).await.assert_empty(201);
    eventually(Duration::from_secs(1), "flag visible", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids() == vec![11]
    })
    .await;
    assert_eq!(sys.get(Svc::ITEM, "/11", &token).await.status, 200);
    // The user service has this user's alarms in its cache too (a /visit before the outage).
    eventually(Duration::from_secs(2), "/visit with the flag", || async {
        sys.get(Svc::USER, "/visit", &token).await.alarmed_ids() == vec![11]
    })
    .await;
    let stopping = Instant::now();
    assert_eq!(sys.stop(Svc::ALARM), vec![Some(0)], "SIGTERM is a clean exit");
    // Quickly, and with every background task stopped by its owner (common::tasks): none
    // failed, none had to be aborted.
    assert!(stopping.elapsed() < Duration::from_secs(6), "stopped in {:?}", stopping.elapsed());
    let log = sys.log(Svc::ALARM);
    assert!(log.contains("bye"), "a graceful stop ends with its last line: {log}");
    // Every loop is the service's own task (the broker connection's and each per-connection
    // component's included): stopped, none left.
    assert!(log.contains(" own tasks stopped, 0 left running"), "nothing outlives the stop: {log}");
    assert!(!log.contains("background task"), "a background task failed or outlived the stop: {log}");
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.alarmed_ids(), vec![11]);
    assert_eq!(sys.get(Svc::ITEM, "/11", &token).await.json["payload"]["is_alarm_set"], true);
    eventually(Duration::from_secs(2), "/visit from caches", || async {
        sys.get(Svc::USER, "/visit", &token).await.alarmed_ids() == vec![11]
    })
    .await;
    // A user whose alarms were never asked for: cannot be told, so 503 naming the alarm service.
    let (_, other) = sys.users(2).await.remove(1);
    let r = sys.get(Svc::ITEM, "/", &other).await;
    r.assert_unavailable("alarm service");
    // The item service crashed and restarted while the alarm service is down: the persisted
    // hot copy of its cache.
    sys.kill(Svc::ITEM);
    sys.restart(Svc::ITEM).await;
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.alarmed_ids(), vec![11], "flags right after a restart");
    sys.restart(Svc::ALARM).await;
    sys.delete(Svc::ALARM, "/", &token, r#"{"item_id": 11}"#).await.assert_empty(200);
    eventually(Duration::from_secs(1), "cleared after the alarm service returned", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_service_crashed_known_tokens_work_and_views_wait() {
    let mut sys = demo_owner_tier(Infra::shared()).await;
    let token = sys.token().await;
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.status, 200); // the token is now known to the item service
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.status, 200);
    sys.kill(Svc::USER);
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.status, 200);
    assert_eq!(sys.get(Svc::ITEM, "/2", &token).await.status, 200, "a view while the user service is down");
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 2}"#).await.assert_empty(201);
    // A token never seen: cannot be told, so 503 naming the user service, within the RPC timeout.
    for attempt in 0..3 {
        let (r, took) = timed(sys.get(Svc::ITEM, "/", &format!("never-seen-token-{attempt}"))).await;
        r.assert_unavailable("user service");
        assert_within(took, rpc_bound(), "a never-seen token with the user service down");
    }
    // Said once at warn, not once per failed request.
    let log = sys.log(Svc::ITEM);
    let warned = log.matches("user cache: the user service did not answer a miss").count();
    assert_eq!(warned, 1, "three failed misses in a row are one warning: {log}");
    sys.restart(Svc::USER).await;
    eventually(BACK, "the view made meanwhile shows in /visit", || async {
        let v = sys.get(Svc::USER, "/visit", &token).await;
        v.ids() == vec![2] && v.alarmed_ids() == vec![2]
    })
    .await;
    sys.get(Svc::ITEM, "/", "never-seen-token-0").await.assert_error(401, "Unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_service_crashed_alarms_on_known_items_still_work() {
    let mut sys = demo(Infra::shared()).await;
    let token = sys.token().await;
    sys.kill(Svc::ITEM);
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 3}"#).await.assert_empty(201);
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![3]);
    // Unknown item with its owner down: 503 naming it, not a 404 that may be wrong, within
    // the RPC timeout.
    let (r, took) = timed(sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 5000}"#)).await;
    r.assert_unavailable("item service");
    assert_within(took, rpc_bound(), "an unknown item with the item service down");
    // The alarm service restarted (after a crash) while the item service is down still knows the items.
    sys.kill(Svc::ALARM);
    sys.restart(Svc::ALARM).await;
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![3]);
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 4}"#).await.assert_empty(201);
    sys.restart(Svc::ITEM).await;
    eventually(Duration::from_secs(1), "item list shows both", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids() == vec![4, 3]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_crashed_gets_serve_writes_commit_and_everything_arrives_after() {
    let sys = demo(Infra::shared().with_own_rabbit()).await;
    let token = sys.token().await;
    assert_eq!(sys.get(Svc::ITEM, "/1", &token).await.status, 200);
    eventually(BACK, "first view stored", || async { sys.get(Svc::USER, "/visit", &token).await.ids() == vec![1] })
        .await;
    // Every service has seen this user (cached users keep working without RabbitMQ; others
    // would be a 503: their owner cannot be asked).
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.status, 200);
    sys.infra.kill_rabbit();
    for (svc, path) in [(Svc::ITEM, "/"), (Svc::ITEM, "/5"), (Svc::ALARM, "/"), (Svc::USER, "/"), (Svc::USER, "/visit")]
    {
        assert_eq!(sys.get(svc, path, &token).await.status, 200, "{svc:?} {path} while RabbitMQ is down");
    }
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 6}"#).await.assert_empty(201);
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![6], "own write visible at once");
    // The connection's loss is noticed when its socket closes: waited for, not assumed at once.
    eventually(Duration::from_secs(2), "/ready reports RabbitMQ down", || async {
        sys.request(Method::GET, sys.port(Svc::ITEM), "/ready", None, None).await.status == 503
    })
    .await;
    sys.infra.start_rabbit();
    eventually(BACK, "the alarm set during the outage reaches the item service", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids() == vec![6]
    })
    .await;
    eventually(BACK, "the view made during the outage reaches /visit", || async {
        sys.get(Svc::USER, "/visit", &token).await.ids() == vec![5, 1]
    })
    .await;
    for svc in Svc::all() {
        sys.wait_ready(svc).await;
    }
    // Consumers, QoS and topology are back: a new change still flows.
    sys.sql(Svc::ITEM, "UPDATE item SET price = 31337 WHERE id = 6").await;
    eventually(BACK, "a change after recovery flows", || async {
        sys.get(Svc::ALARM, "/", &token).await.json["payload"][0]["price"] == 31337
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_database_crashed_is_503_within_the_timeout_and_the_others_go_on() {
    // Each domain's database on a server of its own: a crash of one leaves the others up.
    let sys = demo(Infra::shared().with_own_pg(&Svc::all())).await;
    let token = sys.token().await;
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.ids().len(), 100);
    // Every service has this user cached (the alarm list also refreshes the user's alarms).
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.status, 200);
    assert_eq!(sys.get(Svc::USER, "/visit", &token).await.status, 200);
    let database_down = |svc: Svc| {
        let sys = &sys;
        async move {
            let ready = sys.request(Method::GET, sys.port(svc), "/ready", None, None).await;
            assert_eq!(ready.status, 503, "{svc:?} /ready: {ready:?}");
            assert_eq!(ready.json["checks"]["database"], "down", "{svc:?} /ready: {ready:?}");
            // A generic reason: the driver's text (hosts, users, databases) goes to the log only.
            let hint = ready.json["hint"].as_str().unwrap_or_default();
            assert!(hint.contains("database unreachable") && !hint.contains("database unreachable ("), "{hint}");
        }
    };

    // item_db crashes: the list comes from memory; a view cannot be recorded, so 503.
    sys.infra.crash_pg(Svc::ITEM);
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.ids().len(), 100, "the list is served from memory");
    for _ in 0..3 {
        let (r, took) = timed(sys.get(Svc::ITEM, "/5", &token)).await;
        r.assert_unavailable("database");
        assert_within(took, DB_BOUND, "a view with item_db down");
    }
    database_down(Svc::ITEM).await;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#).await.assert_empty(201);
    sys.infra.start_pg(Svc::ITEM);
    eventually(BACK, "item_db is back: views are recorded again", || async {
        sys.get(Svc::ITEM, "/5", &token).await.status == 200
    })
    .await;
    // alarm_db crashes: alarm writes are 503, the alarm list comes from memory, views go on.
    sys.infra.crash_pg(Svc::ALARM);
    for _ in 0..3 {
        let (r, took) = timed(sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 6}"#)).await;
        r.assert_unavailable("database");
        assert_within(took, DB_BOUND, "an alarm write with alarm_db down");
    }
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![5], "the alarm list is served from memory");
    // A user whose list this instance never read: not cached, so 503 naming the database.
    let (_, other) = sys.users(2).await.remove(1);
    let (r, took) = timed(sys.get(Svc::ALARM, "/", &other)).await;
    r.assert_unavailable("database");
    assert_within(took, DB_BOUND, "an uncached alarm list with alarm_db down");
    assert_eq!(sys.get(Svc::ITEM, "/6", &token).await.status, 200);
    database_down(Svc::ALARM).await;
    sys.infra.start_pg(Svc::ALARM);
    eventually(BACK, "alarm_db is back: alarm writes work again", || async {
        sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 6}"#).await.status == 201
    })
    .await;

    // user_db crashes: /visit comes from memory; a view is recorded (200) and waits.
    sys.infra.crash_pg(Svc::USER);
    assert_eq!(sys.get(Svc::USER, "/visit", &token).await.ids(), vec![6, 5], "/visit from the visit book");
    // The user list is read from user_db as it streams (user/src/list.rs): 503 naming it.
    let (r, took) = timed(sys.get(Svc::USER, "/", &token)).await;
    r.assert_unavailable("user service's database");
    assert_within(took, DB_BOUND, "the user list with user_db down");
    assert_eq!(sys.get(Svc::ITEM, "/7", &token).await.status, 200, "views are recorded in item_db");
    database_down(Svc::USER).await;
    sys.infra.start_pg(Svc::USER);
    eventually(BACK, "every view and alarm shows in /visit", || async {
        let v = sys.get(Svc::USER, "/visit", &token).await;
        v.ids() == vec![7, 6, 5] && v.alarmed_ids() == vec![6, 5]
    })
    .await;
    assert_eq!(sys.get(Svc::USER, "/", &token).await.ids().len(), 50, "the user list is back");
    assert_eq!(sys.dead_letters_now().await, 0, "no view was dead-lettered");
}

/// `WRITE_TIMEOUT_MS` in this test: a write to a database that hangs is answered by the
/// write-path deadline (a pooled connection to a hung server is handed out at once).
const WRITE_BOUND: Duration = Duration::from_millis(2000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_database_hung_is_503_within_the_timeout() {
    let infra = Infra::shared().with_own_pg(&[Svc::ITEM, Svc::ALARM]);
    let sys = System::start_on(infra, Seed::Demo, &[("WRITE_TIMEOUT_MS", "2000")])
        .await
        .expect("the demo seed is part of the repository");
    let token = sys.token().await;
    assert_eq!(sys.get(Svc::ITEM, "/5", &token).await.status, 200);
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.status, 200, "the list read once: cached");
    // A database that hangs (every server process stopped) rather than refuses: a refused
    // connection is answered at once, a hung one only by the timeout the docs give.
    sys.infra.freeze_pg(Svc::ITEM);
    sys.infra.freeze_pg(Svc::ALARM);
    for _ in 0..2 {
        let (r, took) = timed(sys.get(Svc::ITEM, "/5", &token)).await;
        r.assert_unavailable("database");
        assert_within(took, WRITE_BOUND, "a view with item_db hung");
        let (r, took) = timed(sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#)).await;
        r.assert_unavailable("database");
        assert_within(took, WRITE_BOUND, "an alarm write with alarm_db hung");
        // The list is read from alarm_db first; hung, it is answered from the cache after OWN_READ_TIMEOUT_MS.
        let (r, took) = timed(sys.get(Svc::ALARM, "/", &token)).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.ids().is_empty(), "{r:?}");
        assert_within(took, OWN_READ_BOUND, "the alarm list with alarm_db hung");
    }
    sys.infra.thaw_pg(Svc::ITEM);
    sys.infra.thaw_pg(Svc::ALARM);
    eventually(BACK, "the databases resumed: writes work again", || async {
        sys.get(Svc::ITEM, "/5", &token).await.status == 200
            && sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#).await.status == 201
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_and_consumers_go_on() {
    let sys = demo(Infra::shared()).await;
    let token = sys.token().await;
    let vhost = &sys.name;
    // Published by the operator in the owner's name (guest has the impersonator tag): a
    // message without its owner's user_id would be refused before it is even parsed.
    let publish = |exchange: &str, payload: &str| {
        let owner = format!("{}-service", exchange.split('.').next().unwrap_or_default());
        let body = serde_json::json!({"properties": {"user_id": owner}, "routing_key": "", "payload": payload,
            "payload_encoding": "string"});
        mgmt(
            sys.infra.mgmt_port,
            "POST",
            &format!("/api/exchanges/{vhost}/{exchange}/publish"),
            Some(&body.to_string()),
        );
    };
    publish("item.views", "this is not json");
    publish("item.views", r#"{"event_id":"nope","user_id":1,"item_id":1,"viewed_at_us":1,"seq":1}"#);
    // Well-formed, but user_db refuses it for its content (a time out of range): retrying
    // cannot help, so it is dead-lettered rather than held.
    publish(
        "item.views",
        r#"{"event_id":"0b6f6c1e-8a47-4f0e-9d1a-2f4c7f1e9a00","user_id":1,"item_id":1,"viewed_at_us":-9223372036854775807,"seq":1}"#,
    );
    publish("alarm.events", r#"{"garbage": true}"#);
    // Every instance has its own replica queue: 3 copies of the bad event, plus 3 bad views.
    // Counted exactly (a passive declare), not from the management API's lagging statistics.
    eventually(Duration::from_secs(20), "6 messages in the dead-letter queue", || async {
        sys.dead_letters_now().await >= 6
    })
    .await;
    // The operator's view of them: where each came from, left in place.
    let listed = sys.dead_letters_script(&["list"]);
    assert!(listed.starts_with("6 message(s) in dead-letters"), "{listed}");
    assert_eq!(listed.matches("from exchange 'item.views' (queue 'user.views', rejected)").count(), 3, "{listed}");
    assert_eq!(listed.matches("from exchange 'alarm.events'").count(), 3, "{listed}");
    // `count` is the management API's statistic (documented as a few seconds behind): polled.
    eventually(Duration::from_secs(15), "scripts/dead-letters count says 6", || async {
        sys.dead_letters_script(&["count"]).trim() == "6"
    })
    .await;
    assert_eq!(sys.get(Svc::ITEM, "/9", &token).await.status, 200);
    eventually(Duration::from_secs(2), "consumers go on", || async {
        sys.get(Svc::USER, "/visit", &token).await.ids() == vec![9]
    })
    .await;
    // A good change event after the bad ones, through every replica queue: once each replica
    // has applied it, each has handled the bad messages queued before it, so a 7th dead letter
    // would be there now.
    sys.sql(Svc::ITEM, "UPDATE item SET price = 777 WHERE id = 9").await;
    eventually(Duration::from_secs(5), "the good event after them is applied", || async {
        sys.get(Svc::ALARM, "/", &token).await.status == 200
            && sys.get(Svc::USER, "/visit", &token).await.json["payload"][0]["price"] == 777
    })
    .await;
    assert_eq!(sys.dead_letters_now().await, 6, "exactly the malformed messages are dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_logs_hints_or_metrics() {
    let mut sys = demo(Infra::shared()).await;
    let token = sys.token().await;
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.status, 200);
    assert_eq!(sys.get(Svc::ITEM, "/3", &token).await.status, 200);
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 3}"#).await.assert_empty(201);
    let bad = sys.get(Svc::ITEM, "/", "secret-wrong-token-123").await;
    assert!(!bad.text.contains("secret-wrong-token-123"));
    for svc in Svc::all() {
        let m = sys.request(Method::GET, sys.port(svc), "/metrics", None, None).await;
        assert_eq!(m.status, 200);
        assert!(m.text.contains("moa_http_requests_total"), "{svc:?} metrics");
        assert!(!m.text.contains(&token) && !m.text.contains("secret-wrong-token"));
    }
    for svc in Svc::all() {
        sys.stop(svc);
        let log = sys.log(svc);
        assert!(log.contains("GET") || log.contains("POST") || log.contains("consuming"), "{svc:?} logged something");
        assert!(!log.contains(&token), "{svc:?} log leaks a token");
        assert!(!log.contains("secret-wrong-token-123"), "{svc:?} log leaks a token");
        assert!(!log.contains("postgres:postgres@"), "{svc:?} log leaks a password");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_cache_entry_is_asked_again_before_use_and_serves_only_while_the_owner_is_down() {
    let mut sys = demo_owner_tier(Infra::shared()).await;
    let (user, token) = sys.users(1).await.remove(0);
    for item in [1, 2, 3] {
        sys.post(Svc::ALARM, "/", &token, &format!(r#"{{"item_id": {item}}}"#)).await.assert_empty(201);
    }
    eventually(BACK, "the item list shows the alarms", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids() == vec![3, 2, 1]
    })
    .await;
    // An alarm entry is kept as {"<item id>": {"v": version, "d": cleared, "k": null}, ...}.
    let holds =
        |item: i64| format!("SELECT entry ? '{item}' FROM moa_cache_entry WHERE cache = 'alarm' AND grp = {user}");
    eventually(BACK, "the item service persisted the user's cache entry", || async {
        sys.sql(Svc::ITEM, &holds(3)).await.first().is_some_and(|r| r.get::<_, bool>(0))
    })
    .await;
    // The hot copy holds the entries of the users asked for (one), not every row of the owners.
    for cache in ["alarm", "user"] {
        let q = format!("SELECT count(*) FROM moa_cache_entry WHERE cache = '{cache}'");
        assert_eq!(sys.sql(Svc::ITEM, &q).await[0].get::<_, i64>(0), 1, "{cache} entries persisted");
    }
    let q = "SELECT count(*) FROM moa_replica WHERE entity IN ('user', 'alarm')";
    assert_eq!(sys.sql(Svc::ITEM, q).await[0].get::<_, i64>(0), 0, "no full copy");
    sys.stop(Svc::ITEM);
    // What a missed event looks like in the hot copy: the alarm on item 2 gone from the entry.
    sys.sql(
        Svc::ITEM,
        &format!("UPDATE moa_cache_entry SET entry = entry - '2' WHERE cache = 'alarm' AND grp = {user}"),
    )
    .await;
    // And a change made while the item service is down.
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 4}"#).await.assert_empty(201);
    sys.restart(Svc::ITEM).await;
    // The first request asks the owner: the restored entry is of an old generation.
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.alarmed_ids(), vec![4, 3, 2, 1], "right at once");
    // Restored again, this time with the owner down: the old entry is served as it is.
    eventually(BACK, "the refreshed entry persisted", || async {
        sys.sql(Svc::ITEM, &holds(4)).await.first().is_some_and(|r| r.get::<_, bool>(0))
    })
    .await;
    sys.stop(Svc::ITEM);
    sys.stop(Svc::ALARM);
    sys.restart(Svc::ITEM).await;
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.alarmed_ids(), vec![4, 3, 2, 1], "owner down");
    let stale = sys.counter_sum(Svc::ITEM, "moa_cache_stale_served_total", "entity=\"alarm\"").await;
    assert!(stale >= 1.0, "the old entry served is counted: {stale}");
    sys.restart(Svc::ALARM).await;
}

/// The RPC queues are transient classic queues each owner declares (a quorum queue delivered a
/// question only after an fsync: docs/decisions.md). One that goes away, as it does with the
/// node it lived on, is declared again by its owner, and first requests are answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_queue_that_goes_away_is_declared_again_by_its_owner() {
    // The owner tier: a first request needs the user service (a complete read model would
    // answer it from item_db without a question).
    let sys = demo_owner_tier(Infra::shared()).await;
    let q = sys.queue("user.rpc");
    assert_eq!((q["type"].as_str(), q["durable"].as_bool()), (Some("classic"), Some(false)), "{q}");
    mgmt(sys.infra.mgmt_port, "DELETE", &format!("/api/queues/{}/user.rpc", sys.name), None);
    // A token the item service has not seen needs the user service.
    let (_, token) = sys.users(3).await.remove(2);
    let took = eventually(Duration::from_secs(3), "a first request answered after the queue went away", || async {
        sys.get(Svc::ITEM, "/", &token).await.status == 200
    })
    .await;
    eprintln!("first request answered {:.2} s after user.rpc was deleted", took.as_secs_f64());
    let q = sys.queue("user.rpc");
    assert_eq!((q["type"].as_str(), q["durable"].as_bool()), (Some("classic"), Some(false)), "declared again: {q}");
    // And consumed for good (not the management API's consumer count: it lags the broker by
    // seconds): another new user's first request is answered at its first try.
    let (_, other) = sys.users(4).await.remove(3);
    assert_eq!(sys.get(Svc::ITEM, "/", &other).await.status, 200, "a first request once the queue is back");
    let log = sys.log(Svc::USER);
    assert!(log.contains("rpc server: user.rpc went away; declaring it again"), "{log}");
}

/// An owner with no RPC queue on the broker (not started yet, or down with its queue gone
/// with its node): the questions are published mandatory, so the broker returns one at once,
/// and a first request that needs that owner is a 503 naming it without waiting out
/// `RPC_TIMEOUT_MS`, counted as `no_owner`, not as a timeout. Once the owner is back (it
/// declares its queue) the same request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_to_an_owner_with_no_rpc_queue_comes_back_at_once() {
    let mut sys = demo_owner_tier(Infra::shared()).await;
    // A user the item service has not seen: its alarms need the alarm service.
    let (_, token) = sys.users(3).await.remove(2);
    assert_eq!(sys.stop(Svc::ALARM), vec![Some(0)]);
    mgmt(sys.infra.mgmt_port, "DELETE", &format!("/api/queues/{}/alarm.rpc", sys.name), None);
    let calls = |outcome: &'static str| {
        let sys = &sys;
        async move {
            sys.counter_sum(Svc::ITEM, "moa_rpc_calls_total", &format!("owner=\"alarm\",outcome=\"{outcome}\"")).await
        }
    };
    let timeouts = calls("timeout").await;
    let r = sys.get(Svc::ITEM, "/", &token).await;
    r.assert_unavailable("alarm service");
    assert!(calls("no_owner").await >= 1.0, "the returned question is counted as no_owner");
    assert_eq!(calls("timeout").await, timeouts, "and not as a timeout");
    let log = sys.log(Svc::ITEM);
    assert!(!log.contains("returned us a message"), "lapin's warning for a returned message is not logged: {log}");
    sys.restart(Svc::ALARM).await;
    eventually(Duration::from_secs(3), "answered once the owner is back", || async {
        sys.get(Svc::ITEM, "/", &token).await.status == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_question_fails_its_own_call_only_when_questions_are_confirmed_together() {
    // The broker confirms several questions at once (`multiple`), and lapin hands a returned
    // question to whichever confirm of them it settles first; the question's correlation id
    // says whose it is (`rpc::returned_to`). Here every request asks the user service (a live
    // owner) and then the alarm service (no queue), many at a time on one channel. The race
    // needs a confirm of several questions with a return among them: this run against the code
    // before the fix failed once (a returned question timed out), and passed five times.
    // Every question to the live owner must be answered here, which is not what the 300 ms
    // default bounds: with 250 first requests at once on 2 cores shared with other builds, the
    // user service's debug build took questions 75-470 ms after they were published and answered
    // one batch in 345 ms (`common::amqp::rpc=debug`), so some asked at 300 ms timed out and
    // their 503 rightly named the user service. The RPC timeout itself is checked at 300 ms by
    // the tests of an owner down (faults::*_crashed_*, documented::*).
    // The owner tier alone (READ_MODELS=0): with complete read models no question would go out.
    let mut sys = System::start_on(Infra::shared(), Seed::Demo, &[("RPC_TIMEOUT_MS", "5000"), ("READ_MODELS", "0")])
        .await
        .expect("the demo seed is part of the repository");
    let users = 20_001..=21_500;
    sys.sql(
        Svc::USER,
        &format!(
            "INSERT INTO \"user\" (id, name, access_token)
             SELECT g, 'u' || g, 'returned-' || g FROM generate_series({}, {}) g",
            users.start(),
            users.end()
        ),
    )
    .await;
    assert_eq!(sys.stop(Svc::ALARM), vec![Some(0)]);
    mgmt(sys.infra.mgmt_port, "DELETE", &format!("/api/queues/{}/alarm.rpc", sys.name), None);
    let calls = |owner: &'static str, outcome: &'static str| {
        let sys = &sys;
        async move {
            let with = format!("owner=\"{owner}\",outcome=\"{outcome}\"");
            sys.counter_sum(Svc::ITEM, "moa_rpc_calls_total", &with).await
        }
    };
    // An epoch probe of the item service's alarm cache sent while the stopped service's queue
    // still existed (before the DELETE) waits out its timeout (the RPC timeout, 5 s here) and
    // counts a timeout: not a question of the requests below, so the count is taken once such a
    // probe has ended.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let timeouts_before = calls("alarm", "timeout").await;
    let tokens: Vec<String> = users.map(|id| format!("returned-{id}")).collect();
    for wave in tokens.chunks(250) {
        let answers = futures_util::future::join_all(wave.iter().map(|t| sys.get(Svc::ITEM, "/", t))).await;
        for r in answers {
            r.assert_unavailable("alarm service");
        }
    }
    // Each 503 above names the alarm service: no request's question to the live owner was
    // failed by another question's return.
    assert!(calls("user", "ok").await >= 1.0, "the user service was asked");
    assert!(calls("alarm", "no_owner").await >= 1.0, "the alarm service's questions came back");
    assert_eq!(calls("alarm", "timeout").await, timeouts_before, "every returned question failed its own call at once");
}
