//! A database behind dropped packets (no reset): the service's own deadlines answer 503 naming
//! it within the documented bound, and the connections it holds carry TCP keepalive (so a
//! partition is noticed by the socket too, not after the kernel's two hours). The partition is
//! a black-hole proxy (e2e::blackhole: why, and what it cannot show).

use std::time::{Duration, Instant};

use e2e::{blackhole::BlackHoleProxy, eventually, Infra, Seed, Svc, System};

/// `DB_TIMEOUT_MS`'s documented default: the user list's first page and the `/visit` fallback
/// wait this long for user_db.
const DB_BOUND: Duration = Duration::from_millis(2000);
/// The stated margin: 300 ms plus a tenth of the bound (debug services on 2 loaded cores).
fn assert_within(took: Duration, bound: Duration, what: &str) {
    let margin = Duration::from_millis(300) + bound / 10;
    eprintln!("{what}: answered in {took:?} (bound {bound:?} + {margin:?})");
    assert!(took <= bound + margin, "{what} answered in {took:?}; the documented bound is {bound:?} (+{margin:?})");
}

/// The keepalive timer `ss -o` shows on a line (`timer:(keepalive,3.940ms,0)` is 3 s 940 ms,
/// `119min` two hours' worth), in seconds: None for a timer of minutes; no line: not kept alive.
fn keepalive_secs(line: &str) -> Option<Option<f64>> {
    let value = line.split("timer:(keepalive,").nth(1)?.split(',').next()?;
    Some(if value.contains("min") {
        None
    } else if let Some((secs, _)) = value.split_once('.') {
        secs.parse().ok()
    } else if let Some(secs) = value.strip_suffix("sec") {
        secs.parse().ok()
    } else {
        Some(0.0) // milliseconds only
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_behind_dropped_packets_is_503_within_the_deadline_and_answers_again_after() {
    let mut sys =
        System::start_on(Infra::shared(), Seed::Demo, &[]).await.expect("the demo seed is part of the repository");
    let token = sys.token().await;
    // The user service again, its runtime login through the proxy.
    let proxy = BlackHoleProxy::start(sys.infra.pg_port(Svc::USER)).await;
    let url = sys
        .database_url(Svc::USER, e2e::DbRole::Service)
        .replace(&format!("127.0.0.1:{}/", sys.infra.pg_port(Svc::USER)), &format!("127.0.0.1:{}/", proxy.port));
    sys.stop(Svc::USER);
    let port = sys.spawn_env(Svc::USER, None, &[("USER_DATABASE_URL", &url)]);
    sys.wait_ready_port(Svc::USER, port).await;
    eventually(Duration::from_secs(20), "the user list through the proxy", || async {
        sys.get(Svc::USER, "/", &token).await.status == 200
    })
    .await;

    // Its idle connections to user_db carry a keepalive timer of at most db::KEEPALIVE_IDLE
    // (5 s; tokio-postgres's default would show ~120 min): `ss -o` shows it on an idle socket
    // (one with data in flight shows its retransmission timer instead, and is not counted).
    let out = std::process::Command::new("ss")
        .args(["-tno", "state", "established", "dst", &format!("127.0.0.1:{}", proxy.port)])
        .output()
        .expect("ss runs");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let timers: Vec<Option<f64>> = listing.lines().filter_map(keepalive_secs).collect();
    assert!(!timers.is_empty(), "idle connections to user_db with a keepalive timer:\n{listing}");
    assert!(timers.iter().all(|t| t.is_some_and(|s| s <= 5.0)), "keepalive within 5 s:\n{listing}");

    proxy.set_silent(true);
    // `/visit` answers from memory once the visit book is loaded, from user_db before that
    // (a fresh start under load may not have loaded it yet): 200, or 503 within the deadline.
    let started = Instant::now();
    let r = sys.get(Svc::USER, "/visit", &token).await;
    let took = started.elapsed();
    if r.status != 200 {
        r.assert_unavailable("database");
        assert_within(took, DB_BOUND, "/visit (the visit book not loaded yet) with user_db behind dropped packets");
    }
    for _ in 0..2 {
        let started = Instant::now();
        let r = sys.get(Svc::USER, "/", &token).await;
        let took = started.elapsed();
        r.assert_unavailable("database");
        assert_within(took, DB_BOUND, "the user list with user_db behind dropped packets");
    }
    proxy.set_silent(false);
    eventually(Duration::from_secs(30), "the user list answers again once packets flow", || async {
        sys.get(Svc::USER, "/", &token).await.status == 200
    })
    .await;
}
