//! Documented behaviours that had no test of their own (issue 25): each test checks one row of
//! docs/decisions.md, docs/failures.md or docs/operations.md as the row states it, and fails when
//! the behaviour is gone (each was seen failing against a build without it: docs/operations.md,
//! "Tests").

use std::time::{Duration, Instant};

use e2e::{eventually, Infra, Method, Resp, Seed, Svc, System};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Scheduling margin on top of a documented timeout (the same as faults.rs's).
const MARGIN: Duration = Duration::from_millis(100);
const BACK: Duration = Duration::from_secs(10);

async fn demo(infra: Infra, extra_env: &[(&str, &str)]) -> System {
    System::start_on(infra, Seed::Demo, extra_env).await.expect("the demo seed is part of the repository")
}

/// Sends raw bytes to `port` (a write the server cuts short is fine: it may answer and close
/// before reading everything) and reads until it closes the connection or `within` passes.
async fn raw(port: u16, request: &[u8], within: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let _ = s.write_all(request).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// docs/decisions.md, "A dependency down": `503` with the error body naming it and
/// `Retry-After: 1`, for each kind of dependency a request can miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_503_says_retry_after_1() {
    // The owner tier alone (READ_MODELS=0, as while a read model is being built): a complete
    // read model would tell the never-seen token below without the user service.
    let mut sys = demo(Infra::shared().with_own_pg(&[Svc::ITEM]), &[("READ_MODELS", "0")]).await;
    let token = sys.token().await;
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.status, 200);
    // an owner down: a token never seen
    sys.stop(Svc::USER);
    sys.get(Svc::ITEM, "/", "never-seen-retry-after").await.assert_unavailable("user service");
    // the own database down: a view cannot be recorded
    sys.infra.stop_pg(Svc::ITEM);
    sys.get(Svc::ITEM, "/5", &token).await.assert_unavailable("database");
    // /ready's 503 is not a request's dependency failure: documented without Retry-After
    // (the OpenAPI document of /ready)
    let ready = sys.request(Method::GET, sys.port(Svc::ITEM), "/ready", None, None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.header("retry-after"), "", "{ready:?}");
    sys.infra.start_pg(Svc::ITEM);
    sys.restart(Svc::USER).await;
}

/// docs/failures.md, "Limits we accept": a header block larger than actix-web's limit is
/// refused by the HTTP parser itself with `431`; a token longer than 128 characters (well
/// inside that limit) gets our `401` body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_over_the_parsers_limit_is_431_and_a_long_token_our_401() {
    let sys = demo(Infra::shared(), &[]).await;
    let token = sys.token().await;
    for svc in Svc::all() {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUSER-TOKEN: {token}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(200 * 1024)
        );
        let answer = raw(sys.port(svc), req.as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{svc:?}: a 200 KiB header block: {answer:.200}");
        let r = sys.get(svc, if svc == Svc::USER { "/visit" } else { "/" }, &"t".repeat(129)).await;
        r.assert_error(401, "Unauthorized");
        // refused for its length, without a lookup
        assert_eq!(r.json["hint"], "USER-TOKEN is not a valid access token", "{svc:?}: {r:?}");
        // and the service is fine afterwards
        assert_eq!(sys.get(svc, "/", &token).await.status, 200, "{svc:?} after the 431");
    }
}

/// docs/decisions.md, "What counts as missing / invalid?": a token sent twice is `401` (even
/// twice the same valid token), with a hint saying so, on every service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sent_twice_is_401_even_when_both_are_valid() {
    let sys = demo(Infra::shared(), &[]).await;
    let users = sys.users(2).await;
    let (token, other) = (&users[0].1, &users[1].1);
    for svc in Svc::all() {
        let url = format!("http://127.0.0.1:{}/", sys.port(svc));
        for second in [token, other] {
            // reqwest's header() appends: two USER-TOKEN fields
            let r = Resp::send(sys.http.get(&url).header("USER-TOKEN", token).header("USER-TOKEN", second)).await;
            r.assert_error(401, "Unauthorized");
            assert!(r.json["hint"].as_str().unwrap().contains("exactly one"), "{svc:?}: {r:?}");
        }
        assert_eq!(sys.get(svc, "/", token).await.status, 200, "{svc:?}: the same token once");
    }
}

/// docs/decisions.md, "Request ids": every response carries `X-Request-Id`: the client's when
/// printable and at most 64 characters, else one made by the service (and different each time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_request_id_is_the_clients_or_generated_when_absent_or_unusable() {
    let sys = demo(Infra::shared(), &[]).await;
    let token = sys.token().await;
    for svc in Svc::all() {
        let url = format!("http://127.0.0.1:{}/", sys.port(svc));
        let id = |rid: Option<&str>| {
            let mut req = sys.http.get(&url).header("USER-TOKEN", &token);
            if let Some(rid) = rid {
                req = req.header("X-Request-Id", rid);
            }
            async move {
                let r = Resp::send(req).await;
                assert_eq!(r.status, 200, "{r:?}");
                r.header("x-request-id").to_string()
            }
        };
        let exactly_64 = "r".repeat(64);
        assert_eq!(id(Some(&exactly_64)).await, exactly_64, "{svc:?}: 64 printable characters are kept");
        assert_eq!(id(Some("client-id-1")).await, "client-id-1", "{svc:?}");
        let (a, b) = (id(None).await, id(None).await);
        for unusable in ["r".repeat(65), "has space".to_string(), String::new()] {
            let made = id(Some(&unusable)).await;
            assert!(!made.is_empty() && made != unusable, "{svc:?}: {unusable:?} is replaced, got {made:?}");
            assert!(made.len() <= 64 && made.bytes().all(|b| b.is_ascii_graphic()), "{svc:?}: {made:?}");
        }
        assert!(!a.is_empty() && !b.is_empty() && a != b, "{svc:?}: generated when absent, one per request: {a} {b}");
        assert!(a.len() <= 64 && a.bytes().all(|b| b.is_ascii_graphic()), "{svc:?}: {a:?}");
    }
}

/// docs/decisions.md, "Content-Type of alarm bodies": `application/json` (any parameters),
/// `*/*+json`, no Content-Type, and `application/x-www-form-urlencoded` are read as JSON;
/// anything else is `415` and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_bodies_are_read_with_each_accepted_content_type_and_415_otherwise() {
    let sys = demo(Infra::shared(), &[]).await;
    let token = sys.token().await;
    let url = format!("http://127.0.0.1:{}/", sys.port(Svc::ALARM));
    let accepted = [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        Some("application/vnd.api+json"),
        Some("application/x-www-form-urlencoded"),
        None,
    ];
    for (i, ct) in accepted.into_iter().enumerate() {
        let item = 10 + i as i64;
        let mut req = sys.http.post(&url).header("USER-TOKEN", &token).body(format!(r#"{{"item_id": {item}}}"#));
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        Resp::send(req).await.assert_empty(201);
    }
    for ct in ["text/plain", "multipart/form-data; boundary=x", "application/xml", "json"] {
        let req =
            sys.http.post(&url).header("USER-TOKEN", &token).header("content-type", ct).body(r#"{"item_id": 30}"#);
        let r = Resp::send(req).await;
        r.assert_error(415, "Unsupported Media Type");
    }
    assert_eq!(
        sys.get(Svc::ALARM, "/", &token).await.ids(),
        vec![15, 14, 13, 12, 11, 10],
        "one alarm per accepted type"
    );
}

/// docs/decisions.md, "Body size": at most `BODY_LIMIT_BYTES` (16 KiB); a streamed (chunked)
/// body is refused with `413` as soon as it crosses the limit, and one of exactly 16 KiB is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_crossing_16_kib_is_413_and_one_of_16_kib_is_read() {
    let sys = demo(Infra::shared(), &[]).await;
    let token = sys.token().await;
    let port = sys.port(Svc::ALARM);
    // {"item_id": 5, "pad": "xxx..."}, exactly `len` bytes
    let body_of = |len: usize| {
        let head = r#"{"item_id": 5, "pad": ""#;
        format!("{head}{}\"}}", "x".repeat(len - head.len() - 2))
    };
    let chunked = |body: &str| {
        let mut req = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nUSER-TOKEN: {token}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        for chunk in body.as_bytes().chunks(1000) {
            req.push_str(&format!("{:x}\r\n{}\r\n", chunk.len(), std::str::from_utf8(chunk).unwrap()));
        }
        req.push_str("0\r\n\r\n");
        req
    };
    let answer = raw(port, chunked(&body_of(16 * 1024 + 1)).as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "16 KiB + 1 byte, chunked: {answer:.300}");
    assert!(answer.contains(r#""result":"Payload Too Large""#), "the error body: {answer:.300}");
    assert!(sys.get(Svc::ALARM, "/", &token).await.ids().is_empty(), "nothing written");
    let answer = raw(port, chunked(&body_of(16 * 1024)).as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "exactly 16 KiB, chunked: {answer:.300}");
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![5]);
}

/// docs/operations.md, "Configuration": `CACHE_ENTRIES` is the most entries each of the user
/// and alarm caches holds; the least used are evicted, and an evicted user is asked again
/// (a miss: from the read model on disk, or the owner while it is being built).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caches_hold_at_most_cache_entries_and_an_evicted_user_is_asked_again() {
    const ENTRIES: usize = 3;
    let sys = demo(Infra::shared(), &[("CACHE_ENTRIES", "3")]).await;
    let users = sys.users(12).await;
    let misses = |entity: &'static str| {
        let sys = &sys;
        async move { sys.counter_sum(Svc::ITEM, "moa_cache_misses_total", &format!("entity=\"{entity}\"")).await }
    };
    for (_, token) in &users {
        assert_eq!(sys.get(Svc::ITEM, "/", token).await.status, 200);
    }
    for entity in ["user", "alarm"] {
        let held = sys.counter_sum(Svc::ITEM, "moa_cache_entries", &format!("entity=\"{entity}\"")).await;
        assert!(
            held >= 1.0 && held <= ENTRIES as f64,
            "{entity} cache holds at most CACHE_ENTRIES = {ENTRIES} after 12 users: {held}"
        );
    }
    // The first user was evicted long ago: its next request misses and asks again.
    let asked = misses("user").await;
    assert_eq!(sys.get(Svc::ITEM, "/", &users[0].1).await.status, 200);
    assert!(misses("user").await > asked, "an evicted token is asked again");
}

/// docs/architecture.md, "Graceful stop" (and docs/failures.md): after SIGTERM the relay
/// flushes the outbox before the service exits. The row here is one the relay's wake-up never
/// announced (an operator's change made as a service makes it: with a request id, so without
/// NOTIFY) and its poll never reaches (`OUTBOX_POLL_MS` 10 minutes): only the flush sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_flushes_the_outbox_before_exit() {
    let mut sys = demo(Infra::shared(), &[("OUTBOX_POLL_MS", "600000")]).await;
    let token = sys.token().await;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 8}"#).await.assert_empty(201);
    // The change: a price the alarm service's replica of the catalog will show.
    let before = alarm_list_price(&sys, &token).await;
    assert!(before.is_i64() && before != 4242, "{before}");
    sys.sql(
        Svc::ITEM,
        "WITH s AS (SELECT set_config('moa.request_id', 'flush-test', true))
         UPDATE item SET price = 4242 FROM s WHERE id = 8",
    )
    .await;
    let backlog = "SELECT count(*) FROM moa_outbox";
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = sys.sql(Svc::ITEM, backlog).await[0].get::<_, i64>(0);
    assert_eq!(waiting, 1, "the row waits in item_db's outbox (nothing woke the relay)");
    assert_eq!(alarm_list_price(&sys, &token).await, before, "and was not sent");
    assert_eq!(sys.stop(Svc::ITEM), vec![Some(0)], "SIGTERM is a clean exit");
    let waiting = sys.sql(Svc::ITEM, backlog).await[0].get::<_, i64>(0);
    assert_eq!(waiting, 0, "the outbox was flushed before the exit");
    let log = sys.log(Svc::ITEM);
    assert!(log.contains("outbox relay: flushed 1 events before exit"), "{log}");
    eventually(BACK, "the flushed change reaches the alarm service", || async {
        alarm_list_price(&sys, &token).await == 4242
    })
    .await;
    sys.restart(Svc::ITEM).await;
}

/// docs/operations.md's drill `scripts/down rabbitmq` with a graceful stop (SIGTERM) of the
/// broker: every GET of a cached user answers 200, alarm writes answer 201 and wait in the
/// outbox, which `moa_outbox_backlog` counts; `/ready` is 503; once the broker is back the
/// backlog is published (the gauge returns to 0) and the change reaches the other services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_stopped_gracefully_writes_wait_in_the_counted_backlog_and_arrive_after() {
    let sys = demo(Infra::shared().with_own_rabbit(), &[]).await;
    let token = sys.token().await;
    for (svc, path) in [(Svc::ITEM, "/"), (Svc::ALARM, "/"), (Svc::USER, "/visit")] {
        assert_eq!(sys.get(svc, path, &token).await.status, 200);
    }
    let backlog = |svc: Svc| {
        let sys = &sys;
        async move { sys.counter_sum(svc, "moa_outbox_backlog", "").await }
    };
    assert_eq!(backlog(Svc::ALARM).await, 0.0, "nothing waits before the stop");
    // The item service's read models (every user, every alarm set) are complete before the stop.
    eventually(BACK, "the item service's read models are complete", || async {
        let r = sys.request(Method::GET, sys.port(Svc::ITEM), "/ready", None, None).await;
        let models = &r.json["checks"]["read_models"];
        models["user"] == "complete" && models["alarm"] == "complete"
    })
    .await;
    let (_, never_seen) = sys.users(9).await.remove(8);
    sys.infra.stop_rabbit();
    for (svc, path) in [(Svc::ITEM, "/"), (Svc::ITEM, "/5"), (Svc::ALARM, "/"), (Svc::USER, "/visit")] {
        assert_eq!(sys.get(svc, path, &token).await.status, 200, "{svc:?} {path} with the broker stopped");
    }
    for item in [6, 7] {
        sys.post(Svc::ALARM, "/", &token, &format!(r#"{{"item_id": {item}}}"#)).await.assert_empty(201);
    }
    assert_eq!(backlog(Svc::ALARM).await, 2.0, "the two alarm changes wait in alarm_db's outbox");
    assert!(backlog(Svc::ITEM).await >= 1.0, "the view waits in item_db's outbox");
    let ready = sys.request(Method::GET, sys.port(Svc::ALARM), "/ready", None, None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    never_seen_token_while_rabbitmq_is_down(&sys, &never_seen).await;
    sys.infra.start_rabbit();
    eventually(BACK, "the backlog is published", || async {
        backlog(Svc::ALARM).await == 0.0 && backlog(Svc::ITEM).await == 0.0
    })
    .await;
    eventually(BACK, "the alarms set meanwhile reach the item list", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids() == vec![7, 6]
    })
    .await;
}

/// With RabbitMQ down, a token no cache holds is answered from the complete read model of
/// every user in the service's own database (docs/failures.md, rule 2): a made-up token is `401`
/// and a real user the service never saw is `200`, at once (no RPC is waited for: well under
/// `RPC_TIMEOUT_MS`). Without a complete read model it would be `503` naming RabbitMQ.
async fn never_seen_token_while_rabbitmq_is_down(sys: &System, real: &str) {
    for attempt in 0..3 {
        let started = Instant::now();
        let r = sys.get(Svc::ITEM, "/", &format!("never-seen-while-rabbitmq-down-{attempt}")).await;
        let took = started.elapsed();
        r.assert_error(401, "Unauthorized");
        assert!(took < e2e::rpc_timeout(), "answered at once from the read model, not after an RPC timeout: {took:?}");
    }
    let started = Instant::now();
    let r = sys.get(Svc::ITEM, "/", real).await;
    assert_eq!(r.status, 200, "a real user never seen, from the read models: {r:?}");
    assert!(started.elapsed() < e2e::rpc_timeout() + MARGIN, "at once: {:?}", started.elapsed());
}

/// A PostgreSQL server stopped gracefully (`pg_ctl -m fast`: sessions terminated, no crash):
/// as docs/failures.md's "own database down": writes get `503` naming the database within
/// `DB_TIMEOUT_MS`, the alarm list is answered from memory, `/ready` says the database is
/// down, and everything works again once it is back, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_stopped_gracefully_is_503_naming_it_and_recovered_without_a_restart() {
    const DB_BOUND: Duration = Duration::from_millis(2000);
    let sys = demo(Infra::shared().with_own_pg(&[Svc::ALARM]), &[]).await;
    let token = sys.token().await;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 3}"#).await.assert_empty(201);
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![3]);
    sys.infra.stop_pg(Svc::ALARM);
    for _ in 0..3 {
        let started = Instant::now();
        let r = sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 4}"#).await;
        let took = started.elapsed();
        r.assert_unavailable("alarm service's database");
        // the stated margin, as in faults.rs: MARGIN plus a tenth of the bound
        assert!(took <= DB_BOUND + MARGIN + DB_BOUND / 10, "503 within DB_TIMEOUT_MS: {took:?}");
    }
    let started = Instant::now();
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![3], "the alarm list from memory");
    assert!(started.elapsed() <= e2e::OWN_READ_TIMEOUT + MARGIN, "within OWN_READ_TIMEOUT_MS: {:?}", started.elapsed());
    let ready = sys.request(Method::GET, sys.port(Svc::ALARM), "/ready", None, None).await;
    assert_eq!((ready.status, ready.json["checks"]["database"].as_str()), (503, Some("down")), "{ready:?}");
    sys.infra.start_pg(Svc::ALARM);
    eventually(BACK, "alarm writes work again", || async {
        sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 4}"#).await.status == 201
    })
    .await;
    eventually(BACK, "the item list shows both", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids() == vec![4, 3]
    })
    .await;
}

/// The price of the first item of the user's alarm list (the alarm service's replica of the
/// catalog, not item_db).
async fn alarm_list_price(sys: &System, token: &str) -> serde_json::Value {
    sys.get(Svc::ALARM, "/", token).await.json["payload"][0]["price"].clone()
}
