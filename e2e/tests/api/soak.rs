//! A steady mixed load while each service and RabbitMQ crash (SIGKILL) and are restarted
//! once: the only failed requests are those to a service while it is down, and afterwards
//! every view answered 200 is stored exactly once and every alarm change is reflected everywhere.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use e2e::{eventually, Infra, Seed, Svc, System};

#[derive(Default, Debug)]
struct Tally {
    views_ok: i64,
    /// Views whose answer was lost (the item service died under them): recorded or not.
    views_unknown: i64,
    requests: u64,
    /// (when, service, status, path) of every request not answered as expected; status 0:
    /// no answer at all (connection refused or reset).
    failed: Vec<(Instant, Svc, u16, String)>,
    /// (user id, item id) → whether the alarm is set, after the last acknowledged change.
    alarms: BTreeMap<(i64, i64), bool>,
    /// Pairs whose last change got no answer (the alarm service died under it): either state.
    unknown: std::collections::BTreeSet<(i64, i64)>,
}

async fn load(
    http: reqwest::Client,
    ports: BTreeMap<Svc, u16>,
    users: Vec<(i64, String)>,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut n: u64 = 0;
    while Instant::now() < until {
        n += 1;
        let (user_id, token) = &users[(n as usize / 4) % users.len()];
        let item = ((n / 4) * 7 % 100 + 1) as i64;
        let (svc, method, path, body) = match n % 4 {
            0 => (Svc::Item, reqwest::Method::GET, format!("/{item}"), None),
            1 => (Svc::Item, reqwest::Method::GET, "/".to_string(), None),
            2 => {
                let set = n % 8 == 2;
                let m = if set { reqwest::Method::POST } else { reqwest::Method::DELETE };
                (Svc::Alarm, m, "/".to_string(), Some(format!(r#"{{"item_id": {}}}"#, item % 10 + 1)))
            }
            _ => (Svc::User, reqwest::Method::GET, "/visit".to_string(), None),
        };
        let mut req =
            http.request(method.clone(), format!("http://127.0.0.1:{}{path}", ports[&svc])).header("USER-TOKEN", token);
        if let Some(b) = &body {
            req = req.header("content-type", "application/json").body(b.clone());
        }
        let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        {
            let mut t = tally.lock().unwrap();
            t.requests += 1;
            let pair = (*user_id, item % 10 + 1);
            match (svc, status) {
                (Svc::Item, 200) if path != "/" => t.views_ok += 1,
                (Svc::Alarm, 201) => {
                    t.alarms.insert(pair, true);
                    t.unknown.remove(&pair);
                }
                (Svc::Alarm, 200) => {
                    t.alarms.insert(pair, false);
                    t.unknown.remove(&pair);
                }
                (_, 200) => {}
                _ => {
                    if status == 0 && svc == Svc::Item && path != "/" {
                        t.views_unknown += 1;
                    }
                    if status == 0 && svc == Svc::Alarm {
                        t.alarms.remove(&pair);
                        t.unknown.insert(pair);
                    }
                    t.failed.push((Instant::now(), svc, status, path.clone()));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_load_survives_crashes_of_every_service_and_rabbitmq() {
    let mut sys = System::start_on(Infra::shared().with_own_rabbit(), Seed::Demo, &[]).await.expect("demo seed");
    let users = sys.users(10).await;
    let ports: BTreeMap<Svc, u16> = Svc::ALL.iter().map(|s| (*s, sys.port(*s))).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = Instant::now() + Duration::from_secs(40);
    let load_task = tokio::spawn(load(http, ports, users.clone(), until, tally.clone()));

    // (service, from, to): when each service was down, from its kill until it was ready again.
    let mut down: Vec<(Svc, Instant, Instant)> = Vec::new();
    for svc in Svc::ALL {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let from = Instant::now();
        sys.kill(svc);
        tokio::time::sleep(Duration::from_secs(1)).await;
        sys.restart(svc).await;
        down.push((svc, from, Instant::now()));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    sys.infra.kill_rabbit();
    tokio::time::sleep(Duration::from_secs(2)).await;
    sys.infra.start_rabbit();
    load_task.await.unwrap();

    let tally = Arc::try_unwrap(tally).unwrap().into_inner().unwrap();
    eprintln!(
        "soak: {} requests, {} failed while their service was down, {} views answered 200 ({} unanswered), \
         {} alarm pairs touched ({} with an unanswered last change)",
        tally.requests,
        tally.failed.len(),
        tally.views_ok,
        tally.views_unknown,
        tally.alarms.len(),
        tally.unknown.len()
    );
    assert!(tally.views_ok > 100 && !tally.alarms.is_empty(), "the load ran: {tally:?}");
    // A request fails only when it went to a service that was down (no answer at all), or
    // that had just started and was not ready yet (503); RabbitMQ down fails nothing.
    let grace = Duration::from_secs(1);
    let unexpected: Vec<_> = tally
        .failed
        .iter()
        .filter(|(at, svc, status, _)| {
            !((*status == 0 || *status == 503)
                && down.iter().any(|(s, from, to)| s == svc && *from <= *at && *at <= *to + grace))
        })
        .collect();
    assert!(unexpected.is_empty(), "requests that failed although their service was up: {unexpected:?}");

    let (sent, unknown) = (tally.views_ok, tally.views_unknown);
    eventually(Duration::from_secs(30), "every view stored", || async {
        sys.sql(Svc::User, "SELECT count(*) FROM visit").await[0].get::<_, i64>(0) >= sent
    })
    .await;
    // A moment more for views stored beside the last counted one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let row = &sys.sql(Svc::User, "SELECT count(*), count(DISTINCT event_id) FROM visit").await[0];
    let (stored, distinct): (i64, i64) = (row.get(0), row.get(1));
    eprintln!("soak: views answered 200 {sent} (+{unknown} unanswered), stored {stored}, distinct {distinct}");
    assert!(
        (sent..=sent + unknown).contains(&stored),
        "every view answered 200 stored, and nothing else but unanswered ones: {stored} stored"
    );
    assert_eq!(distinct, stored, "each view stored once");
    assert_eq!(sys.dead_letters_now().await, 0, "nothing dead-lettered");

    let rows = sys.sql(Svc::Alarm, "SELECT user_id::int8, item_id::int8 FROM alarm").await;
    let in_db: std::collections::BTreeSet<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for ((user, item), set) in &tally.alarms {
        assert_eq!(in_db.contains(&(*user, *item)), *set, "alarm ({user}, {item}) in alarm_db");
    }
    for (user_id, token) in &users {
        let want: Vec<i64> = in_db.iter().filter(|(u, _)| u == user_id).map(|(_, i)| *i).rev().collect();
        eventually(Duration::from_secs(10), &format!("user {user_id}'s alarms everywhere"), || async {
            sys.get(Svc::Item, "/", token).await.alarmed_ids() == want
                && sys.get(Svc::Alarm, "/", token).await.ids() == want
        })
        .await;
    }
}
