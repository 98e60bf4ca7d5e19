//! Several instances of a service: per-instance replica queues, a shared views queue.

use std::time::Duration;

use e2e::{eventually, system, Seed, Svc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_item_instances_both_reflect_an_alarm_change() {
    let mut sys = system!(Seed::Demo);
    let second = sys.spawn(Svc::ITEM, None);
    sys.wait_ready_port(Svc::ITEM, second).await;
    let token = sys.token().await;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#).await.assert_empty(201);
    for port in sys.ports(Svc::ITEM) {
        eventually(Duration::from_secs(1), &format!("item instance :{port} shows the alarm"), || async {
            let r = sys.request(e2e::Method::GET, port, "/", Some(&token), None).await;
            r.alarmed_ids() == vec![5]
        })
        .await;
    }
    sys.delete(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#).await.assert_empty(200);
    for port in sys.ports(Svc::ITEM) {
        eventually(Duration::from_secs(1), &format!("item instance :{port} shows it cleared"), || async {
            let r = sys.request(e2e::Method::GET, port, "/", Some(&token), None).await;
            r.alarmed_ids().is_empty()
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_user_instances_share_the_views_without_storing_one_twice() {
    let mut sys = system!(Seed::Demo);
    let second = sys.spawn(Svc::USER, None);
    sys.wait_ready_port(Svc::USER, second).await;
    let users = sys.users(5).await;
    let mut sent = 0i64;
    for (_, token) in &users {
        for id in 1..=8 {
            assert_eq!(sys.get(Svc::ITEM, &format!("/{id}"), token).await.status, 200);
            sent += 1;
        }
    }
    eventually(Duration::from_secs(3), "every view stored exactly once", || async {
        sys.sql(Svc::USER, "SELECT count(*), count(DISTINCT event_id) FROM visit").await[0].get::<_, i64>(0) == sent
    })
    .await;
    let row = &sys.sql(Svc::USER, "SELECT count(*), count(DISTINCT event_id) FROM visit").await[0];
    assert_eq!(row.get::<_, i64>(0), row.get::<_, i64>(1));
    // Each instance's visit book follows user.visits, which the instance that stored a view
    // publishes after its commit: both books reach the stored order, whoever stored what.
    for port in sys.ports(Svc::USER) {
        eventually(Duration::from_secs(2), &format!("instance :{port} shows 8, 7, 6"), || async {
            let r = sys.request(e2e::Method::GET, port, "/visit", Some(&users[0].1), None).await;
            r.ids() == vec![8, 7, 6]
        })
        .await;
    }
}

/// The local TCP port of each connection to `pg_port` that process `pid` holds open.
fn connections_to(pid: u32, pg_port: u16) -> Vec<u16> {
    // Socket inodes the process holds: /proc/<pid>/fd/* -> "socket:[<inode>]".
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter_map(|link| {
                    let l = link.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    tcp.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
            let (local, remote, inode) = (port(f.get(1)?)?, port(f.get(2)?)?, f.get(9)?);
            (remote == pg_port && inodes.iter().any(|i| i == inode)).then_some(local)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_database_is_only_ever_connected_to_by_its_own_service() {
    // One server per domain, so a connection to the wrong server is visible too.
    let sys = e2e::System::start_on(e2e::Infra::shared().with_own_pg(&Svc::all()), Seed::Demo, &[])
        .await
        .expect("the demo seed is part of the repository");
    let token = sys.token().await;
    // Some traffic that needs each database: a view (item_db, then user_db), an alarm.
    assert_eq!(sys.get(Svc::ITEM, "/4", &token).await.status, 200);
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 4}"#).await.assert_empty(201);
    eventually(Duration::from_secs(3), "the view is stored", || async {
        sys.get(Svc::USER, "/visit", &token).await.ids() == vec![4]
    })
    .await;
    // A connection the test itself just closed may linger in pg_stat_activity for a moment:
    // look again for a few seconds before calling anything a violation.
    let mut violations = Vec::new();
    for _ in 0..10 {
        violations = database_violations(&sys).await;
        if violations.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("connections that break the rule: {violations:#?}");
}

/// Every connection that breaks the rule "a service connects to its own database only".
async fn database_violations(sys: &e2e::System) -> Vec<String> {
    let mut violations = Vec::new();
    for server in Svc::all() {
        let pg_port = sys.infra.pg_port(server);
        // What the server sees: every client connection to any database on it.
        let admin = e2e::pg(pg_port, "postgres").await;
        let seen: Vec<(String, i32)> = admin
            .query(
                "SELECT datname::text, client_port FROM pg_stat_activity
                 WHERE client_port IS NOT NULL AND pid <> pg_backend_pid() AND datname IS NOT NULL",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let own: Vec<u16> = sys.pids(server).into_iter().flat_map(|pid| connections_to(pid, pg_port)).collect();
        if own.is_empty() {
            violations.push(format!("the {} service holds no connection to its server", server.name()));
        }
        for (db, port) in &seen {
            if db != &sys.db_name(server) || !own.contains(&(*port as u16)) {
                violations.push(format!("{db} on the {} server, from port {port}", server.name()));
            }
        }
        for other in Svc::all().into_iter().filter(|s| *s != server) {
            for pid in sys.pids(other) {
                if !connections_to(pid, pg_port).is_empty() {
                    violations.push(format!(
                        "the {} service is connected to the {} server",
                        other.name(),
                        server.name()
                    ));
                }
            }
        }
    }
    violations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_given_several_rabbitmq_nodes_connects_to_the_one_that_answers() {
    let mut sys = system!(Seed::Demo);
    // Two nodes that refuse (nothing listens there) around the live one: whichever it tries
    // first, the instance must end up on the live node, with its queues and consumers.
    let dead = |port: u16| format!("amqp://item-service:x@127.0.0.1:{port}/{}", sys.name);
    let nodes = format!("{},{},{}", dead(e2e::free_port()), sys.service_amqp_url(Svc::ITEM), dead(e2e::free_port()));
    let port = sys.spawn_env(Svc::ITEM, None, &[("AMQP_URL", &nodes)]);
    sys.wait_ready_port(Svc::ITEM, port).await;
    let token = sys.token().await;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 7}"#).await.assert_empty(201);
    eventually(Duration::from_secs(1), "the instance hears of the alarm through the live node", || async {
        sys.request(e2e::Method::GET, port, "/", Some(&token), None).await.alarmed_ids() == vec![7]
    })
    .await;
    // Its views reach the user service through the same node.
    assert_eq!(sys.request(e2e::Method::GET, port, "/7", Some(&token), None).await.status, 200);
    eventually(Duration::from_secs(5), "the view is stored", || async {
        sys.get(Svc::USER, "/visit", &token).await.ids() == vec![7]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_instance_is_not_ready_but_serves_through_its_drain_then_exits_cleanly() {
    let mut sys = system!(Seed::Demo);
    let port = sys.spawn_env(Svc::ALARM, None, &[("SHUTDOWN_DRAIN_MS", "1500")]);
    sys.wait_ready_port(Svc::ALARM, port).await;
    let token = sys.token().await;
    let ready = |sys: &e2e::System| {
        let url = format!("http://127.0.0.1:{port}/ready");
        let http = sys.http.clone();
        async move { http.get(url).send().await.map(|r| r.status().as_u16()).ok() }
    };
    assert_eq!(ready(&sys).await, Some(200));
    sys.terminate(port);
    eventually(Duration::from_millis(500), "/ready turns 503 at SIGTERM", || async { ready(&sys).await == Some(503) })
        .await;
    let r = sys.request(e2e::Method::GET, port, "/ready", None, None).await;
    assert!(r.json["hint"].as_str().unwrap_or_default().contains("shutting down"), "{r:?}");
    // Still serving during the drain: a load balancer's requests already on their way succeed.
    sys.request(e2e::Method::POST, port, "/", Some(&token), Some(r#"{"item_id": 3}"#)).await.assert_empty(201);
    assert_eq!(sys.request(e2e::Method::GET, port, "/", Some(&token), None).await.ids(), vec![3]);
    assert_eq!(sys.reap(port, Duration::from_secs(15)).await, Some(0), "a clean exit after the drain");
}
