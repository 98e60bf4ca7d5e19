//! A steady mixed load while each service and RabbitMQ is restarted once: afterwards every
//! view answered 200 is stored exactly once and every alarm change is reflected everywhere.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use e2e::{eventually, Infra, Seed, Svc, System};

#[derive(Default, Debug)]
struct Tally {
    views_ok: i64,
    requests: u64,
    failed: u64,
    /// (user id, item id) → whether the alarm is set, after the last acknowledged change.
    alarms: BTreeMap<(i64, i64), bool>,
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
            match (svc, status) {
                (Svc::Item, 200) if path != "/" => t.views_ok += 1,
                (Svc::Alarm, 201) => {
                    t.alarms.insert((*user_id, item % 10 + 1), true);
                }
                (Svc::Alarm, 200) => {
                    t.alarms.insert((*user_id, item % 10 + 1), false);
                }
                (_, 200) => {}
                _ => t.failed += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_load_survives_restarts_of_every_service_and_rabbitmq() {
    let mut sys = System::start_on(Infra::dedicated(false), Seed::Demo, &[]).await.expect("demo seed");
    let users = sys.users(10).await;
    let ports: BTreeMap<Svc, u16> = Svc::ALL.iter().map(|s| (*s, sys.port(*s))).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = Instant::now() + Duration::from_secs(40);
    let load_task = tokio::spawn(load(http, ports, users.clone(), until, tally.clone()));

    for svc in Svc::ALL {
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(sys.stop(svc), vec![Some(0)], "{svc:?} exits cleanly on SIGTERM");
        tokio::time::sleep(Duration::from_secs(1)).await;
        sys.restart(svc).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    sys.infra.stop_rabbit();
    tokio::time::sleep(Duration::from_secs(2)).await;
    sys.infra.start_rabbit();
    load_task.await.unwrap();

    let tally = Arc::try_unwrap(tally).unwrap().into_inner().unwrap();
    eprintln!(
        "soak: {} requests, {} failed during restarts, {} views answered 200, {} alarm pairs touched",
        tally.requests,
        tally.failed,
        tally.views_ok,
        tally.alarms.len()
    );
    assert!(tally.views_ok > 100 && !tally.alarms.is_empty(), "the load ran: {tally:?}");

    let expected = tally.views_ok;
    eventually(Duration::from_secs(30), "every view stored", || async {
        sys.sql(Svc::User, "SELECT count(*) FROM visit").await[0].get::<_, i64>(0) >= expected
    })
    .await;
    let row = &sys.sql(Svc::User, "SELECT count(*), count(DISTINCT event_id) FROM visit").await[0];
    let (stored, distinct): (i64, i64) = (row.get(0), row.get(1));
    eprintln!("soak: views sent {expected}, stored {stored}, distinct {distinct}");
    assert_eq!(stored, expected, "every view stored exactly once");
    assert_eq!(distinct, stored);

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
