//! Hostile and unlucky input: made-up methods, slow clients, a stuck database, an owner that
//! answers with an error, an outbox row the broker refuses, and tokens kept out of the logs.

use std::time::{Duration, Instant};

use e2e::{eventually, Method, Seed, Svc, System};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn start(extra_env: &[(&str, &str)]) -> Option<System> {
    System::start_with(Seed::Demo, extra_env).await
}

/// Sends raw bytes to `port` and reads until the server closes the connection or `within`
/// passes. Returns what was read and whether the server closed the connection.
async fn raw(port: u16, request: &[u8], within: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    let closed = loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break true, // reset: closed too
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// A pseudo-random method token of `len` letters (methods are tokens: letters are safe).
fn made_up_method(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'A' + (x % 26) as u8) as char
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_do_not_grow_the_metrics() {
    let Some(sys) = start(&[]).await else { return };
    let port = sys.port(Svc::ITEM);
    let metrics = || async { sys.request(Method::GET, port, "/metrics", None, None).await.text };
    // Every series that normal traffic makes, so that only the hostile requests could add more.
    let token = sys.token().await;
    sys.get(Svc::ITEM, "/", &token).await;
    sys.get(Svc::ITEM, "/nope/nope", &token).await;
    for path in ["/", "/no/such/route"] {
        let req = format!("BREW {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        raw(port, req.as_bytes(), Duration::from_secs(5)).await;
    }
    metrics().await; // the series of /metrics itself
    let before = metrics().await;
    let mut methods = Vec::new();
    for i in 0..300u64 {
        let method = made_up_method(i + 1, 2048);
        let path = if i % 2 == 0 { "/" } else { "/no/such/route" };
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (answer, _) = raw(port, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 4"), "a made-up method is a client error: {answer:.200}");
        methods.push(method);
    }
    let after = metrics().await;
    assert!(
        after.len() < before.len() + 2048,
        "/metrics grew from {} to {} bytes after 300 made-up methods",
        before.len(),
        after.len()
    );
    assert!(!methods.iter().any(|m| after.contains(&m[..64])), "a method name reached /metrics");
    assert!(after.contains("method=\"other\""), "made-up methods are counted as \"other\":\n{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_a_408_and_the_connection_is_closed() {
    let Some(sys) = start(&[("BODY_TIMEOUT_MS", "500")]).await else { return };
    let token = sys.token().await;
    let port = sys.port(Svc::ALARM);
    let started = Instant::now();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nUSER-TOKEN: {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    let (answer, closed) = raw(port, req.as_bytes(), Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""result":"Request Timeout""#), "the error body: {answer}");
    assert!(closed, "the connection is closed after the 408: {answer}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "answered after {took:?}");
    // The service is fine afterwards.
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 4}"#).await.assert_empty(201);

    // A handler that reads no body (the item list) answers, and the connection, whose
    // declared body never comes, is not kept for ever either.
    let started = Instant::now();
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\nUSER-TOKEN: {token}\r\nContent-Length: 100\r\n\r\n{{");
    let (answer, closed) = raw(sys.port(Svc::ITEM), req.as_bytes(), Duration::from_secs(8)).await;
    eprintln!("GET with a missing body: closed {closed} after {:?}: {:.100}", started.elapsed(), answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.300}");
    assert!(closed, "the connection is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_a_408_and_the_connection_is_closed() {
    let Some(sys) = start(&[("HEADER_TIMEOUT_MS", "500")]).await else { return };
    let started = Instant::now();
    let (answer, closed) =
        raw(sys.port(Svc::ITEM), b"GET / HTTP/1.1\r\nHost: x\r\nUSER-TOK", Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(closed, "closed after the 408");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
}

/// Holds an exclusive lock on `table` of `svc`'s database until the returned client is dropped
/// or rolls back: every write to it waits, like behind a stuck batch or an operator's open
/// transaction.
async fn lock(sys: &System, svc: Svc, table: &str) -> tokio_postgres::Client {
    let client = e2e::pg(sys.infra.pg_port(svc), &sys.db_name(svc)).await;
    client.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE")).await.expect("lock");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_stuck_on_a_lock_is_cancelled_and_answered_503_naming_the_database() {
    let Some(sys) = start(&[("DB_STATEMENT_TIMEOUT_MS", "400"), ("WRITE_TIMEOUT_MS", "10000")]).await else {
        return;
    };
    let token = sys.token().await;
    let held = lock(&sys, Svc::ALARM, "alarm").await;
    let started = Instant::now();
    let r = sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 7}"#).await;
    let took = started.elapsed();
    r.assert_error(503, "Service Unavailable");
    let hint = r.json["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("alarm service's database") && hint.contains("statement timeout"), "{hint}");
    assert!(took < Duration::from_secs(3), "cancelled by the 400 ms statement timeout, took {took:?}");
    // Writes queued behind the stuck one are not stalled for ever either.
    let again = sys.delete(Svc::ALARM, "/", &token, r#"{"item_id": 7}"#).await;
    again.assert_error(503, "Service Unavailable");
    held.batch_execute("ROLLBACK").await.expect("unlock");
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 7}"#).await.assert_empty(201);
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_their_deadline_are_503_naming_the_database() {
    let Some(sys) = start(&[("WRITE_TIMEOUT_MS", "300"), ("DB_STATEMENT_TIMEOUT_MS", "20000")]).await else {
        return;
    };
    let token = sys.token().await;
    // An alarm write.
    let held = lock(&sys, Svc::ALARM, "alarm").await;
    let started = Instant::now();
    let r = sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 8}"#).await;
    let took = started.elapsed();
    r.assert_error(503, "Service Unavailable");
    let hint = r.json["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("alarm service's database") && hint.contains("within 300 ms"), "{hint}");
    assert!(took >= Duration::from_millis(280) && took < Duration::from_secs(2), "took {took:?}");
    held.batch_execute("ROLLBACK").await.expect("unlock");
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 9}"#).await.assert_empty(201);

    // A view: GET /{id} records it in item_db's outbox before answering.
    let held = lock(&sys, Svc::ITEM, "moa_outbox").await;
    let started = Instant::now();
    let r = sys.get(Svc::ITEM, "/5", &token).await;
    let took = started.elapsed();
    r.assert_error(503, "Service Unavailable");
    let hint = r.json["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("item service's database") && hint.contains("within 300 ms"), "{hint}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    held.batch_execute("ROLLBACK").await.expect("unlock");
    assert_eq!(sys.get(Svc::ITEM, "/6", &token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_answers_with_an_error_is_a_503_naming_it() {
    // The owner tier alone (as while a read model is being built): a complete read model
    // would answer this token without asking (e2e/tests/api/read_models.rs).
    let Some(sys) = start(&[("READ_MODELS", "0")]).await else { return };
    // The user service's lookups fail in its database (the table it reads is gone for a moment):
    // it answers the RPC with an error instead of rows.
    sys.sql(Svc::USER, "ALTER TABLE moa_entity_version RENAME TO moa_entity_version_away").await;
    let r = sys.get(Svc::ITEM, "/", "a-token-nobody-has").await;
    sys.sql(Svc::USER, "ALTER TABLE moa_entity_version_away RENAME TO moa_entity_version").await;
    r.assert_error(503, "Service Unavailable");
    let hint = r.json["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("user service"), "{hint}");
    sys.get(Svc::ITEM, "/", "a-token-nobody-has").await.assert_error(401, "Unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_row_the_broker_refuses_does_not_hold_back_later_changes() {
    let Some(sys) = start(&[]).await else { return };
    let token = sys.token().await;
    // The services have this user cached: the refused publish below takes the item service's
    // connection down for a moment, and with it the RPC a first request would need.
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.status, 200);
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.status, 200);
    // At the head of the outbox: an event for an exchange that does not exist. Publishing it
    // makes the broker close the relay's channel, every time.
    sys.sql(
        Svc::ITEM,
        r#"INSERT INTO moa_outbox (exchange, payload)
           VALUES ('no.such.exchange', '{"entity":"item","key":"1","version":1,"deleted":false,"data":{}}')"#,
    )
    .await;
    // Then ordinary changes behind it: a price change, and a view.
    sys.sql(Svc::ITEM, "UPDATE item SET price = 4343 WHERE id = 12").await;
    assert_eq!(sys.get(Svc::ITEM, "/12", &token).await.status, 200);
    eventually(Duration::from_secs(10), "the price change reaches the alarm service", || async {
        sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 12}"#).await.status == 201
            && sys.get(Svc::ALARM, "/", &token).await.json["payload"][0]["price"] == 4343
    })
    .await;
    eventually(Duration::from_secs(10), "the view reaches /visit", || async {
        sys.get(Svc::USER, "/visit", &token).await.ids() == vec![12]
    })
    .await;
    // The refused row is kept, backing off, not lost.
    let rows =
        sys.sql(Svc::ITEM, "SELECT attempts, last_error FROM moa_outbox WHERE exchange = 'no.such.exchange'").await;
    assert_eq!(rows.len(), 1, "the refused row stays in the outbox");
    let (attempts, last_error): (i32, Option<String>) = (rows[0].get(0), rows[0].get(1));
    assert!(attempts >= 1, "attempts {attempts}");
    assert!(last_error.unwrap_or_default().contains("no.such.exchange"), "last_error names the exchange");
    // And more changes keep flowing after the retries.
    sys.sql(Svc::ITEM, "UPDATE item SET price = 4444 WHERE id = 12").await;
    eventually(Duration::from_secs(10), "a later price change arrives too", || async {
        sys.get(Svc::ALARM, "/", &token).await.json["payload"][0]["price"] == 4444
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_logs_even_at_trace_level() {
    let Some(mut sys) = start(&[("RUST_LOG", "trace")]).await else { return };
    let token = sys.token().await;
    let unknown = "0b5e55ed-7e57-4a11-8c0d-70c3e11e5a1d";
    // Known tokens, an unknown one (an RPC to the user service and a query with it as a
    // parameter), a write, a view, and a miss of every service.
    for svc in Svc::all() {
        sys.get(svc, "/", &token).await;
        sys.get(svc, "/", unknown).await.assert_error(401, "Unauthorized");
    }
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 3}"#).await.assert_empty(201);
    assert_eq!(sys.get(Svc::ITEM, "/3", &token).await.status, 200);
    eventually(Duration::from_secs(5), "view stored", || async {
        sys.get(Svc::USER, "/visit", &token).await.ids() == vec![3]
    })
    .await;
    for svc in Svc::all() {
        sys.stop(svc);
    }
    for svc in Svc::all() {
        let log = sys.log(svc);
        // The test would be empty if nothing logged at debug: our own code does.
        assert!(log.contains(" DEBUG ") || log.contains(" TRACE "), "{} logged nothing below info", svc.name());
        for t in [token.as_str(), unknown] {
            assert!(!log.contains(t), "{} logged a token ({t})", svc.name());
        }
    }
}
