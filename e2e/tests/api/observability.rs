//! Metrics and request ids: what an operator uses to follow the system.

use std::time::Duration;

use e2e::{eventually, system, Method, Seed, Svc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_a_view_from_the_item_service_to_the_user_service() {
    let mut sys = system!(Seed::Demo);
    let token = sys.token().await;
    let r = sys
        .http
        .get(format!("http://127.0.0.1:{}/5", sys.port(Svc::ITEM)))
        .header("USER-TOKEN", &token)
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123", "echoed to the caller");
    let own = sys.get(Svc::ITEM, "/", &token).await;
    assert_eq!(own.status, 200);
    eventually(Duration::from_secs(2), "view stored", || async {
        sys.get(Svc::USER, "/visit", &token).await.ids() == vec![5]
    })
    .await;
    sys.stop(Svc::ITEM);
    sys.stop(Svc::USER);
    let item_log = sys.log(Svc::ITEM);
    let user_log = sys.log(Svc::USER);
    assert!(item_log.contains("[trace-abc-123] GET /5 -> 200"), "item access log:\n{item_log}");
    assert!(user_log.contains("[trace-abc-123] view of item 5"), "user log:\n{user_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_requests_caches_rpc_outbox_events_and_replicas() {
    let sys = system!(Seed::Demo);
    let token = sys.token().await;
    sys.get(Svc::ITEM, "/", &token).await;
    sys.get(Svc::ITEM, "/3", &token).await;
    sys.get(Svc::ITEM, "/", "unknown-token").await; // a miss: RPC to the user service
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 3}"#).await.assert_empty(201);
    eventually(Duration::from_secs(1), "alarm applied", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids() == vec![3]
    })
    .await;
    let sys = &sys;
    let text = |svc| async move { sys.request(Method::GET, sys.port(svc), "/metrics", None, None).await };
    // The view of item 3 is published by the item service's relay and stored by the user
    // service a moment after its 200: wait for both to show.
    eventually(Duration::from_secs(5), "the view published and stored", || async {
        text(Svc::ITEM).await.text.contains("moa_outbox_publish_seconds_count ")
            && text(Svc::USER).await.text.contains("moa_views_total{outcome=\"stored\"} 1")
    })
    .await;
    let item = text(Svc::ITEM).await;
    assert_eq!(item.status, 200);
    assert!(item.content_type.starts_with("text/plain"));
    for needle in [
        "moa_http_requests_total{route=\"/\",method=\"GET\",status=\"200\"}",
        "moa_http_requests_total{route=\"/\",method=\"GET\",status=\"401\"}",
        "moa_http_request_seconds_bucket{route=\"/{item_id}\",le=",
        "moa_cache_hits_total{entity=\"user\"}",
        "moa_cache_misses_total{entity=\"user\"}",
        "moa_rpc_calls_total{owner=\"user\",outcome=\"ok\"}",
        "moa_events_applied_total{entity=\"alarm\"}",
        "moa_replica_version{entity=\"alarm\"}",
        "moa_replica_warm{entity=\"user\"} 1",
        "moa_outbox_backlog ",
        "moa_outbox_publish_seconds_count ",
    ] {
        assert!(item.text.contains(needle), "item /metrics lacks {needle}:\n{}", item.text);
    }
    // The cache counters are registered at start (at 0): the requests above moved them.
    for counter in ["moa_cache_hits_total", "moa_cache_misses_total"] {
        let n = sys.counter_sum(Svc::ITEM, counter, "entity=\"user\"").await;
        assert!(n >= 1.0, "{counter}{{entity=\"user\"}} is {n}");
    }
    let alarm = text(Svc::ALARM).await;
    assert!(alarm.text.contains("moa_outbox_published_total "), "{}", alarm.text);
    let user = text(Svc::USER).await;
    assert!(user.text.contains("moa_views_total{outcome=\"stored\"} 1"), "{}", user.text);
}

/// RabbitMQ's `drop_unroutable` (the dashboard's overview, here this system's vhost) counts the
/// RPC replies and nothing else: a reply goes to the default exchange with a
/// `amq.rabbitmq.reply-to.…` routing key, which no binding matches, so RabbitMQ counts it as
/// unroutable although it hands it straight to the waiting channel (docs/operations.md). Every
/// other publish routes, or (the relay's and the RPC questions, mandatory) counts as
/// `return_unroutable`: only questions asked while the services started together, before
/// their owner declared its queue (each counted by its asker as `no_owner`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_unroutable_on_the_dashboard_counts_the_rpc_replies_and_nothing_else() {
    let sys = system!(Seed::Demo);
    let token = sys.token().await;
    // Traffic of every kind: misses answered over RPC, a view, an alarm set and cleared.
    for _ in 0..3 {
        sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 100000}"#).await.assert_empty(404);
    }
    sys.get(Svc::ITEM, "/", "unknown-token").await.assert_error(401, "Unauthorized");
    sys.get(Svc::ITEM, "/5", &token).await;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#).await.assert_empty(201);
    sys.delete(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#).await.assert_empty(200);
    eventually(Duration::from_secs(2), "view stored", || async {
        sys.get(Svc::USER, "/visit", &token).await.ids() == vec![5]
    })
    .await;
    // Answered calls each had a reply; a call that timed out (a busy test machine) may or may
    // not have had one, late: the count lies between the two, and is exact without timeouts.
    // The replicas' epoch watch keeps asking (every EPOCH_PROBE_MS), so the calls are counted
    // again after each read of the dashboard, whose statistics lag: answered before it, all after.
    let rpc_calls = || async {
        let (mut answered, mut all) = (0.0, 0.0);
        for svc in Svc::all() {
            answered += sys.counter_sum(svc, "moa_rpc_calls_total", "outcome=\"ok\"").await;
            answered += sys.counter_sum(svc, "moa_rpc_calls_total", "outcome=\"error\"").await;
            all += sys.counter_sum(svc, "moa_rpc_calls_total", "").await;
        }
        (answered, all)
    };
    let (answered, _) = rpc_calls().await;
    assert!(answered >= 7.0, "the snapshots and the 4 misses went over RPC: {answered}");
    // The management API refreshes its statistics every 5 s.
    let path = format!("/api/vhosts/{}", sys.name);
    let mut last = serde_json::Value::Null;
    let mut all = 0.0;
    for _ in 0..40 {
        let v: serde_json::Value = serde_json::from_str(&e2e::mgmt(sys.infra.mgmt_port, "GET", &path, None)).unwrap();
        all = rpc_calls().await.1;
        let stats = &v["message_stats"];
        let dropped = stats["drop_unroutable"].as_f64().unwrap_or(-1.0);
        if answered <= dropped && dropped <= all {
            let mut no_owner = 0.0;
            for svc in Svc::all() {
                no_owner += sys.counter_sum(svc, "moa_rpc_calls_total", "outcome=\"no_owner\"").await;
            }
            let returned = stats["return_unroutable"].as_f64().unwrap_or(0.0);
            assert!(returned <= no_owner, "{returned} returned, {no_owner} questions counted as no_owner: {stats}");
            return;
        }
        last = stats.clone();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("drop_unroutable is not the RPC replies ({answered} answered calls of {all}): {last}");
}

/// A clean start on a healthy machine logs no warning (a warning must mean something is
/// wrong), no PostgreSQL notice, and counts no failed RPC call. The services start together,
/// so one may ask an owner that has not declared its RPC queue yet: the broker returns that
/// question at once (`no_owner`, see faults.rs), which is the start, not a failure; before
/// questions were published mandatory, such a question was lost and counted as a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_start_logs_no_warning_and_counts_no_error() {
    let sys = system!(Seed::Demo);
    for svc in Svc::all() {
        let log = sys.log(svc);
        let noisy: Vec<&str> =
            log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("NOTICE")).collect();
        assert!(noisy.is_empty(), "{svc:?} logged at start:\n{}", noisy.join("\n"));
        assert!(!log.contains("io_loop"), "{svc:?} logged lapin's tracing spans");
        for outcome in ["error", "timeout", "bus_down"] {
            let failed = sys.counter_sum(svc, "moa_rpc_calls_total", &format!("outcome=\"{outcome}\"")).await;
            assert_eq!(failed, 0.0, "{svc:?} counted RPC calls that ended in {outcome}");
        }
    }
}
