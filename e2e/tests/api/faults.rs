//! Keep serving and lose nothing when a service, a database or RabbitMQ dies.

use std::time::{Duration, Instant};

use e2e::{eventually, mgmt, Infra, Method, Seed, Svc, System};

const BACK: Duration = Duration::from_secs(10);

async fn demo(infra: Infra) -> System {
    System::start_on(infra, Seed::Demo, &[]).await.expect("the demo seed is part of the repository")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_service_down_item_list_flags_stay_right() {
    let mut sys = demo(Infra::shared()).await;
    let token = sys.token().await;
    sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 11}"#).await.assert_empty(201);
    eventually(Duration::from_secs(1), "flag visible", || async {
        sys.get(Svc::Item, "/", &token).await.alarmed_ids() == vec![11]
    })
    .await;
    sys.get(Svc::Item, "/11", &token).await;
    assert_eq!(sys.stop(Svc::Alarm), vec![Some(0)], "SIGTERM is a clean exit");
    assert_eq!(sys.get(Svc::Item, "/", &token).await.alarmed_ids(), vec![11]);
    assert_eq!(sys.get(Svc::Item, "/11", &token).await.json["payload"]["is_alarm_set"], true);
    eventually(Duration::from_secs(2), "/visit from caches", || async {
        sys.get(Svc::User, "/visit", &token).await.alarmed_ids() == vec![11]
    })
    .await;
    // The item service restarted while the alarm service is down: persisted replica.
    sys.stop(Svc::Item);
    sys.restart(Svc::Item).await;
    assert_eq!(sys.get(Svc::Item, "/", &token).await.alarmed_ids(), vec![11], "flags right after a restart");
    sys.restart(Svc::Alarm).await;
    sys.delete(Svc::Alarm, "/", &token, r#"{"item_id": 11}"#).await.assert_empty(200);
    eventually(Duration::from_secs(1), "cleared after the alarm service returned", || async {
        sys.get(Svc::Item, "/", &token).await.alarmed_ids().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_service_down_known_tokens_work_and_views_wait() {
    let mut sys = demo(Infra::shared()).await;
    let token = sys.token().await;
    sys.get(Svc::Item, "/", &token).await; // the token is now known to the item service
    sys.get(Svc::Alarm, "/", &token).await;
    sys.stop(Svc::User);
    assert_eq!(sys.get(Svc::Item, "/", &token).await.status, 200);
    assert_eq!(sys.get(Svc::Item, "/2", &token).await.status, 200, "a view while the user service is down");
    sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 2}"#).await.assert_empty(201);
    // A token never seen: cannot be told, so 503 naming the user service, fast.
    let started = Instant::now();
    let r = sys.get(Svc::Item, "/", "never-seen-token").await;
    let took = started.elapsed();
    r.assert_error(503, "Service Unavailable");
    assert!(r.json["hint"].as_str().unwrap().contains("user service"), "{r:?}");
    assert!(took < Duration::from_millis(1500), "answered in {took:?}");
    sys.restart(Svc::User).await;
    eventually(BACK, "the view made meanwhile shows in /visit", || async {
        let v = sys.get(Svc::User, "/visit", &token).await;
        v.ids() == vec![2] && v.alarmed_ids() == vec![2]
    })
    .await;
    sys.get(Svc::Item, "/", "never-seen-token").await.assert_error(401, "Unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_service_down_alarms_on_known_items_still_work() {
    let mut sys = demo(Infra::shared()).await;
    let token = sys.token().await;
    sys.stop(Svc::Item);
    sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 3}"#).await.assert_empty(201);
    assert_eq!(sys.get(Svc::Alarm, "/", &token).await.ids(), vec![3]);
    // Unknown item with its owner down: 503 naming it, not a 404 that may be wrong.
    let r = sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 5000}"#).await;
    r.assert_error(503, "Service Unavailable");
    assert!(r.json["hint"].as_str().unwrap().contains("item service"), "{r:?}");
    // The alarm service restarted while the item service is down still knows the items.
    sys.stop(Svc::Alarm);
    sys.restart(Svc::Alarm).await;
    assert_eq!(sys.get(Svc::Alarm, "/", &token).await.ids(), vec![3]);
    sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 4}"#).await.assert_empty(201);
    sys.restart(Svc::Item).await;
    eventually(Duration::from_secs(1), "item list shows both", || async {
        sys.get(Svc::Item, "/", &token).await.alarmed_ids() == vec![4, 3]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_down_gets_serve_writes_commit_and_everything_arrives_after() {
    let sys = demo(Infra::dedicated(false)).await;
    let token = sys.token().await;
    sys.get(Svc::Item, "/1", &token).await;
    eventually(BACK, "first view stored", || async { sys.get(Svc::User, "/visit", &token).await.ids() == vec![1] })
        .await;
    sys.infra.stop_rabbit();
    for (svc, path) in [(Svc::Item, "/"), (Svc::Item, "/5"), (Svc::Alarm, "/"), (Svc::User, "/"), (Svc::User, "/visit")]
    {
        assert_eq!(sys.get(svc, path, &token).await.status, 200, "{svc:?} {path} while RabbitMQ is down");
    }
    sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 6}"#).await.assert_empty(201);
    assert_eq!(sys.get(Svc::Alarm, "/", &token).await.ids(), vec![6], "own write visible at once");
    let r = sys.request(Method::GET, sys.port(Svc::Item), "/ready", None, None).await;
    assert_eq!(r.status, 503, "/ready reports RabbitMQ: {r:?}");
    sys.infra.start_rabbit();
    eventually(BACK, "the alarm set during the outage reaches the item service", || async {
        sys.get(Svc::Item, "/", &token).await.alarmed_ids() == vec![6]
    })
    .await;
    eventually(BACK, "the view made during the outage reaches /visit", || async {
        sys.get(Svc::User, "/visit", &token).await.ids() == vec![5, 1]
    })
    .await;
    for svc in Svc::ALL {
        sys.wait_ready(svc).await;
    }
    // Consumers, QoS and topology are back: a new change still flows.
    sys.sql(Svc::Item, "UPDATE item SET price = 31337 WHERE id = 6").await;
    eventually(BACK, "a change after recovery flows", || async {
        sys.get(Svc::Alarm, "/", &token).await.json["payload"][0]["price"] == 31337
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_database_down_is_503_fast_and_recovers() {
    let sys = demo(Infra::dedicated(true)).await;
    let token = sys.token().await;
    sys.get(Svc::Item, "/", &token).await;
    sys.infra.stop_pg();
    assert_eq!(sys.get(Svc::Item, "/", &token).await.status, 200, "the list is served from memory");
    let started = Instant::now();
    let r = sys.get(Svc::Item, "/5", &token).await;
    r.assert_error(503, "Service Unavailable");
    assert!(r.json["hint"].as_str().unwrap().contains("database"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded: {:?}", started.elapsed());
    sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 5}"#).await.assert_error(503, "Service Unavailable");
    // /visit is answered from the in-memory visit book.
    assert_eq!(sys.get(Svc::User, "/visit", &token).await.status, 200);
    let ready = sys.request(Method::GET, sys.port(Svc::Alarm), "/ready", None, None).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json["checks"]["database"], "down");
    sys.infra.start_pg();
    eventually(BACK, "pools recover by themselves", || async {
        sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 5}"#).await.status == 201
            && sys.get(Svc::Item, "/5", &token).await.status == 200
    })
    .await;
    eventually(BACK, "the item view and alarm flow again", || async {
        let v = sys.get(Svc::User, "/visit", &token).await;
        v.ids() == vec![5] && v.alarmed_ids() == vec![5]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_and_consumers_go_on() {
    let sys = demo(Infra::shared()).await;
    let token = sys.token().await;
    let vhost = &sys.name;
    let publish = |exchange: &str, payload: &str| {
        let body =
            serde_json::json!({"properties": {}, "routing_key": "", "payload": payload, "payload_encoding": "string"});
        mgmt(
            sys.infra.mgmt_port,
            "POST",
            &format!("/api/exchanges/{vhost}/{exchange}/publish"),
            Some(&body.to_string()),
        );
    };
    publish("item.views", "this is not json");
    publish("item.views", r#"{"event_id":"nope","user_id":1,"item_id":1,"viewed_at_us":1,"seq":1}"#);
    publish("alarm.events", r#"{"garbage": true}"#);
    // Every instance has its own replica queue: 3 copies of the bad event, plus 2 bad views.
    let dead_letters = || {
        let q = mgmt(sys.infra.mgmt_port, "GET", &format!("/api/queues/{vhost}/dead-letters"), None);
        serde_json::from_str::<serde_json::Value>(&q).ok().and_then(|v| v["messages"].as_i64()).unwrap_or(-1)
    };
    let waited =
        eventually(Duration::from_secs(20), "5 messages in the dead-letter queue", || async { dead_letters() >= 5 })
            .await;
    // The management API's counts lag a few seconds; give extra messages time to show up.
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(waited)).await;
    assert_eq!(dead_letters(), 5, "exactly the malformed messages are dead-lettered");
    sys.get(Svc::Item, "/9", &token).await;
    eventually(Duration::from_secs(2), "consumers go on", || async {
        sys.get(Svc::User, "/visit", &token).await.ids() == vec![9]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_logs_hints_or_metrics() {
    let mut sys = demo(Infra::shared()).await;
    let token = sys.token().await;
    sys.get(Svc::Item, "/", &token).await;
    sys.get(Svc::Item, "/3", &token).await;
    sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 3}"#).await;
    let bad = sys.get(Svc::Item, "/", "secret-wrong-token-123").await;
    assert!(!bad.text.contains("secret-wrong-token-123"));
    for svc in Svc::ALL {
        let m = sys.request(Method::GET, sys.port(svc), "/metrics", None, None).await;
        assert_eq!(m.status, 200);
        assert!(m.text.contains("moa_http_requests_total"), "{svc:?} metrics");
        assert!(!m.text.contains(&token) && !m.text.contains("secret-wrong-token"));
    }
    for svc in Svc::ALL {
        sys.stop(svc);
        let log = sys.log(svc);
        assert!(log.contains("GET") || log.contains("POST") || log.contains("consuming"), "{svc:?} logged something");
        assert!(!log.contains(&token), "{svc:?} log leaks a token");
        assert!(!log.contains("secret-wrong-token-123"), "{svc:?} log leaks a token");
        assert!(!log.contains("postgres:postgres@"), "{svc:?} log leaks a password");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_replica_catches_up_by_digest_on_what_it_missed_late_commits_included() {
    let mut sys = demo(Infra::shared()).await;
    let (user, token) = sys.users(1).await.remove(0);
    // Enough alarms of other users for several digest buckets (so that one differing bucket
    // is a minority and the digest path is taken, not the full snapshot).
    let others = sys
        .sql(
            Svc::Alarm,
            &format!(
                "INSERT INTO alarm (item_id, user_id, created)
                 SELECT i, u, now() FROM generate_series(1, 100) i, generate_series({user} + 1, {user} + 40) u
                 RETURNING 1"
            ),
        )
        .await
        .len() as i64;
    assert!(others > 2 * 1024, "{others} alarms of other users");
    for item in [1, 2, 3] {
        sys.post(Svc::Alarm, "/", &token, &format!(r#"{{"item_id": {item}}}"#)).await.assert_empty(201);
    }
    eventually(BACK, "the item service persisted every alarm", || async {
        let rows = sys.sql(Svc::Item, "SELECT count(*) FROM moa_replica WHERE entity = 'alarm'").await;
        rows[0].get::<_, i64>(0) == others + 3
    })
    .await;
    sys.stop(Svc::Item);
    // What a missed event looks like in the persisted copy: the alarm on item 2 as if its
    // change had committed late (a lower version than others the replica saw) and never
    // arrived; item 3 held in an older version (cleared before), as if its set was missed.
    sys.sql(Svc::Item, &format!("DELETE FROM moa_replica WHERE entity = 'alarm' AND key = '{user}:2'")).await;
    sys.sql(
        Svc::Item,
        &format!(
            "UPDATE moa_replica SET version = version - 1, deleted = true WHERE entity = 'alarm' AND key = '{user}:3'"
        ),
    )
    .await;
    // And a change made while the item service is down.
    sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 4}"#).await.assert_empty(201);
    sys.restart(Svc::Item).await;
    eventually(BACK, "the item list shows every alarm", || async {
        sys.get(Svc::Item, "/", &token).await.alarmed_ids() == vec![4, 3, 2, 1]
    })
    .await;
    let log = sys.log(Svc::Item);
    assert!(
        log.lines().any(|l| l.contains("alarm replica synced from alarm") && l.contains("by digest")),
        "the restored replica compared digests instead of reading every row:\n{log}"
    );
}
