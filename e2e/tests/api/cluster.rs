//! The cluster topology, started the operator's way (`scripts/up --rabbitmq-nodes 3 --instances
//! 2`, docs/deployment.md): a RabbitMQ cluster of three nodes, two instances of each service and
//! HAProxy in front of them on the service ports.
//!
//! - every request of the contract works through the load balancer, and the balancer spreads
//!   them over both instances of each service;
//! - every quorum queue (views, RPC, dead letters) has a replica on each of the three nodes;
//! - `scripts/status` shows every node (3/3 running), every instance (UP in the balancer) and
//!   the balancer;
//! - a node and an instance killed with SIGKILL: requests through the balancer still work,
//!   `scripts/status` says `crashed`, and `scripts/up NAME` brings each back into the cluster
//!   and into the balancer's rotation.

use std::time::Duration;

use e2e::{
    eventually,
    stack::{Component, Stack},
    Resp,
};
use serde_json::Value;

const NODES: u16 = 3;
const INSTANCES: u16 = 2;

async fn send(http: &reqwest::Client, method: reqwest::Method, url: String, token: &str, body: Option<&str>) -> Resp {
    let mut req = http.request(method, url).header("USER-TOKEN", token);
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body.to_string());
    }
    Resp::send(req).await
}

/// HAProxy's statistics (CSV): (backend, server) -> the total of requests it was sent.
fn lb_totals(stack: &Stack) -> Vec<(String, String, u64)> {
    let url = format!("http://127.0.0.1:{}/stats;csv", stack.port_var("LB_STATS_PORT"));
    let out = std::process::Command::new("curl").args(["-s", "--max-time", "2", &url]).output().expect("curl runs");
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    csv.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            // columns: pxname, svname, ..., 7: stot (sessions in total)
            let total = f.get(7)?.parse().ok()?;
            Some((f[0].to_string(), f[1].to_string(), total))
        })
        .filter(|(_, server, _)| server.contains('-'))
        .collect()
}

/// `scripts/status`'s line for component `name`.
fn status_line(status: &str, name: &str) -> String {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("scripts/status lists {name}:\n{status}"))
        .to_string()
}

/// Every request of the contract through the load balancer: the item list and a detail (a
/// view), an alarm set, listed and cleared, the user list (GET and POST) and the recent views.
async fn contract_through_the_balancer(http: &reqwest::Client, stack: &Stack, token: &str, item: u64) {
    let item_url = format!("http://127.0.0.1:{}", stack.port(Component::Item));
    let alarm_url = format!("http://127.0.0.1:{}", stack.port(Component::Alarm));
    let user_url = format!("http://127.0.0.1:{}", stack.port(Component::User));
    let get = reqwest::Method::GET;

    assert!(!send(http, get.clone(), format!("{item_url}/"), token, None).await.ids().is_empty(), "the item list");
    let detail = send(http, get.clone(), format!("{item_url}/{item}"), token, None).await;
    assert_eq!(detail.status, 200, "an item's detail: {detail:?}");
    let body = format!(r#"{{"item_id": {item}}}"#);
    send(http, reqwest::Method::POST, format!("{alarm_url}/"), token, Some(&body)).await.assert_empty(201);
    let alarms = send(http, get.clone(), format!("{alarm_url}/"), token, None).await;
    assert!(alarms.ids().contains(&(item as i64)), "the alarm list shows the alarm just set: {alarms:?}");
    send(http, reqwest::Method::DELETE, format!("{alarm_url}/"), token, Some(&body)).await.assert_empty(200);
    assert!(!send(http, get.clone(), format!("{user_url}/"), token, None).await.payload().is_empty(), "the user list");
    let by_post = send(http, reqwest::Method::POST, format!("{user_url}/"), token, Some("{}")).await;
    assert_eq!(by_post.status, 200, "the user list by POST: {by_post:?}");
    let visit = send(http, get, format!("{user_url}/visit"), token, None).await;
    assert_eq!(visit.status, 200, "the recent views: {visit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_and_two_instances_behind_the_balancer() {
    let stack = tokio::task::spawn_blocking(|| Stack::up_cluster(NODES, INSTANCES)).await.expect("scripts/up");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client");
    let user_db = stack.db(Component::UserDb).await;
    let token: String =
        user_db.query_one(r#"SELECT access_token FROM "user" ORDER BY id LIMIT 1"#, &[]).await.expect("a user").get(0);

    // Every request works through the balancer, and both instances of each service get some.
    for item in 1..=4 {
        contract_through_the_balancer(&http, &stack, &token, item).await;
    }
    let totals = lb_totals(&stack);
    for domain in ["item", "alarm", "user"] {
        for k in 1..=INSTANCES {
            let server = format!("{domain}-{k}");
            let sent = totals.iter().find(|(b, s, _)| b == domain && *s == server).map(|(_, _, t)| *t);
            assert!(sent.is_some_and(|t| t > 0), "the balancer sent requests to {server}: {totals:?}");
        }
    }

    // Every quorum queue has a replica on each node.
    let queues = stack.rabbit_ctl(1, &["rabbitmqctl", "list_queues", "name", "type", "members", "--formatter", "json"]);
    let json_start = queues.find('[').unwrap_or_else(|| panic!("rabbitmqctl list_queues answers JSON:\n{queues}"));
    let queues: Vec<Value> = serde_json::from_str(queues[json_start..].trim()).expect("list_queues JSON");
    let quorum: Vec<&Value> = queues.iter().filter(|q| q["type"] == "quorum").collect();
    let mut names: Vec<&str> = quorum.iter().filter_map(|q| q["name"].as_str()).collect();
    names.sort_unstable();
    assert!(names.contains(&"user.views"), "user.views is a quorum queue: {queues:?}");
    for q in &quorum {
        let members = q["members"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(members, usize::from(NODES), "{} has a replica on every node: {q}", q["name"]);
    }
    eprintln!("cluster: quorum queues on {NODES} nodes: {names:?}");

    // scripts/status: every node, instance and the balancer.
    let (ok, status) = stack.run_script("status", &[]);
    assert!(ok, "scripts/status:\n{status}");
    for name in stack.components() {
        let line = status_line(&status, &name);
        assert!(line.contains(" running "), "{name} runs: {line}");
        if name.starts_with("rabbitmq-") {
            assert!(line.contains(&format!("cluster: {NODES}/{NODES} nodes running")), "{line}");
        } else if ["item-", "alarm-", "user-"].iter().any(|p| name.starts_with(p)) && !name.ends_with("-db") {
            assert!(line.contains("/ready: 200") && line.contains("lb: UP"), "{line}");
        }
    }

    // A node and an instance die: requests through the balancer go on.
    stack.kill9_named("rabbitmq-2");
    stack.kill9_named("item-1");
    eventually(Duration::from_secs(5), "scripts/status shows rabbitmq-2 and item-1 crashed", || async {
        let status = stack.run_script("status", &[]).1;
        status_line(&status, "rabbitmq-2").contains(" crashed ") && status_line(&status, "item-1").contains(" crashed ")
    })
    .await;
    for item in 5..=8 {
        contract_through_the_balancer(&http, &stack, &token, item).await;
    }

    // Both come back with scripts/up NAME: the node rejoins, the instance takes requests again.
    let node_took = tokio::task::block_in_place(|| stack.up_named("rabbitmq-2")).unwrap_or_else(|e| panic!("{e}"));
    let instance_took = tokio::task::block_in_place(|| stack.up_named("item-1")).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "cluster: rabbitmq-2 back in {:.1} s, item-1 in {:.1} s",
        node_took.as_secs_f64(),
        instance_took.as_secs_f64()
    );
    let status = stack.run_script("status", &[]).1;
    assert!(
        status_line(&status, "rabbitmq-2").contains(&format!("cluster: {NODES}/{NODES} nodes running")),
        "{status}"
    );
    assert!(status_line(&status, "item-1").contains("lb: UP"), "{status}");
    let before = lb_totals(&stack);
    for item in 9..=12 {
        contract_through_the_balancer(&http, &stack, &token, item).await;
    }
    let sent_to = |totals: &[(String, String, u64)]| {
        totals.iter().find(|(b, s, _)| b == "item" && s == "item-1").map(|(_, _, t)| *t).unwrap_or(0)
    };
    assert!(sent_to(&lb_totals(&stack)) > sent_to(&before), "item-1 takes requests again: {:?}", lb_totals(&stack));
}
