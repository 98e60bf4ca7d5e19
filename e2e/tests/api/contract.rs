//! Every endpoint and status code of the contract.

use std::time::Duration;

use e2e::{eventually, system, Method, Seed, Svc};

const JSON: &str = "application/json; charset=utf-8";

async fn user_list(seed: Seed) {
    let sys = system!(seed.clone());
    let token = sys.token().await;
    for method in [Method::GET, Method::POST] {
        let r = sys.request(method.clone(), sys.port(Svc::USER), "/", Some(&token), None).await;
        assert_eq!(r.status, 200, "{method} /: {r:?}");
        assert_eq!(r.content_type, JSON);
        let ids = r.ids();
        assert_eq!(r.json["count"].as_u64(), Some(ids.len() as u64));
        assert_eq!(ids.len(), 50);
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "ids descending: {ids:?}");
        let first = &r.json["payload"][0];
        let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3, "id, name, access_token: {first}");
        assert!(first["access_token"].is_string() && first["name"].is_string());
        assert!(!r.text.contains("\\u"), "UTF-8 written as is");
    }
    let page = sys.get(Svc::USER, "/?limit=5&offset=10", &token).await;
    assert_eq!(page.ids(), vec![40, 39, 38, 37, 36], "optional paging");
    sys.get(Svc::USER, "/?limit=x", &token).await.assert_error(400, "Bad Request");
    if matches!(seed, Seed::Provided) {
        let r = sys.get(Svc::USER, "/", "ae0d863d-6963-41a2-919e-66e0695be7d7").await;
        assert!(r.text.contains("박규경"), "{}", r.text);
    }
}
crate::on_both_seeds!(user_list_is_every_user_id_descending, user_list);

async fn item_list(seed: Seed) {
    let sys = system!(seed);
    let token = sys.token().await;
    let r = sys.get(Svc::ITEM, "/", &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, JSON);
    let ids = r.ids();
    assert_eq!(r.json["count"], 100);
    assert_eq!(ids, (1..=100).rev().collect::<Vec<i64>>());
    let items = r.json["payload"].as_array().unwrap();
    for item in items {
        let obj = item.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["broadcaster", "category", "id", "is_alarm_set", "name", "price"]);
        assert_eq!(item["is_alarm_set"], false);
        assert!(item["price"].is_i64() && item["name"].is_string() && item["broadcaster"].is_string());
    }
    assert!(items.iter().any(|i| i["category"].is_null()), "NULL categories are null");
    assert!(items.iter().any(|i| i["price"] == 0), "price 0 is kept");
    // The same item, the same bytes as the detail endpoint (minus the envelope).
    let d = sys.get(Svc::ITEM, "/1", &token).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.json["payload"], items[99]);
    assert_eq!(d.json.as_object().unwrap().len(), 1, "single envelope");
    // Optional paging; without it the full list, as the contract asks.
    let p = sys.get(Svc::ITEM, "/?limit=2&offset=1", &token).await;
    assert_eq!(p.ids(), vec![99, 98]);
    assert_eq!(p.json["count"], 2);
    sys.get(Svc::ITEM, "/?limit=-1", &token).await.assert_error(400, "Bad Request");
    sys.get(Svc::ITEM, "/?offset=x", &token).await.assert_error(400, "Bad Request");
}
crate::on_both_seeds!(item_list_is_every_item_id_descending_with_flags, item_list);

async fn item_detail_errors(seed: Seed) {
    let sys = system!(seed);
    let token = sys.token().await;
    sys.get(Svc::ITEM, "/101", &token).await.assert_empty(404);
    sys.get(Svc::ITEM, "/0", &token).await.assert_empty(404);
    sys.get(Svc::ITEM, "/-5", &token).await.assert_empty(404);
    for bad in ["/abc", "/1.5", "/99999999999999999999", "/1e3", "/%20"] {
        sys.get(Svc::ITEM, bad, &token).await.assert_error(400, "Bad Request");
    }
    sys.get(Svc::ITEM, "/1/2", &token).await.assert_error(404, "Not Found");
    let r = sys.request(Method::POST, sys.port(Svc::ITEM), "/1", Some(&token), Some("{}")).await;
    r.assert_error(405, "Method Not Allowed");
}
crate::on_both_seeds!(item_detail_answers_404_and_400, item_detail_errors);

async fn alarms(seed: Seed) {
    let sys = system!(seed);
    let token = sys.token().await;
    let user_id = sys.users(1).await[0].0;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 50}"#).await.assert_empty(201);
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": "50"}"#).await.assert_empty(201);
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": "7"}"#).await.assert_empty(201);
    let rows =
        sys.sql(Svc::ALARM, &format!("SELECT count(*) FROM alarm WHERE user_id = {user_id} AND item_id = 50")).await;
    assert_eq!(rows[0].get::<_, i64>(0), 1, "setting twice leaves one row");
    let list = sys.get(Svc::ALARM, "/", &token).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.content_type, JSON);
    assert_eq!(list.ids(), vec![50, 7]);
    assert_eq!(list.alarmed_ids(), vec![50, 7], "is_alarm_set is true on every alarm");
    assert_eq!(list.json["count"], 2);
    // The item service hears of the alarm through RabbitMQ: within the contract's 1 s.
    e2e::eventually(std::time::Duration::from_secs(1), "an item looks the same everywhere", || async {
        let item = sys.get(Svc::ITEM, "/50", &token).await;
        item.status == 200 && list.json["payload"][0] == item.json["payload"]
    })
    .await;

    sys.delete(Svc::ALARM, "/", &token, r#"{"item_id": 50}"#).await.assert_empty(200);
    sys.delete(Svc::ALARM, "/", &token, r#"{"item_id": "50"}"#).await.assert_empty(200);
    sys.delete(Svc::ALARM, "/", &token, r#"{"item_id": 8}"#).await.assert_empty(200);
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![7]);

    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 1000}"#).await.assert_empty(404);
    sys.delete(Svc::ALARM, "/", &token, r#"{"item_id": "1000"}"#).await.assert_empty(404);
    let rows = sys.sql(Svc::ALARM, "SELECT count(*) FROM alarm WHERE item_id = 1000").await;
    assert_eq!(rows[0].get::<_, i64>(0), 0);
}
crate::on_both_seeds!(alarms_are_set_listed_and_cleared_idempotently, alarms);

async fn bad_alarm_bodies(seed: Seed) {
    let sys = system!(seed);
    let token = sys.token().await;
    let port = sys.port(Svc::ALARM);
    for method in [Method::POST, Method::DELETE] {
        for body in [
            "",
            "   ",
            "{",
            "not json",
            "[]",
            "50",
            "null",
            r#"{}"#,
            r#"{"item":50}"#,
            r#"{"item_id":null}"#,
            r#"{"item_id":1.5}"#,
            r#"{"item_id":"abc"}"#,
            r#"{"item_id":[50]}"#,
            r#"{"item_id":{"id":50}}"#,
            r#"{"item_id":true}"#,
            r#"{"item_id":"50abc"}"#,
            r#"{"item_id":99999999999999999999999}"#,
            r#"{"item_id":"1; DROP TABLE alarm"}"#,
        ] {
            let r = sys.request(method.clone(), port, "/", Some(&token), Some(body)).await;
            r.assert_error(400, "Bad Request");
        }
        let r = sys.request(method.clone(), port, "/", Some(&token), None).await;
        r.assert_error(400, "Bad Request");
    }
    let huge = format!(r#"{{"item_id": 5, "pad": "{}"}}"#, "x".repeat(100_000));
    sys.post(Svc::ALARM, "/", &token, &huge).await.assert_error(413, "Payload Too Large");
    let r = sys
        .http
        .post(format!("http://127.0.0.1:{port}/"))
        .header("USER-TOKEN", &token)
        .header("content-type", "text/xml")
        .body(r#"{"item_id": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let rows = sys.sql(Svc::ALARM, "SELECT count(*) FROM alarm").await;
    assert_eq!(rows[0].get::<_, i64>(0), 0, "no bad request wrote anything");
}
crate::on_both_seeds!(bad_alarm_bodies_are_400_and_write_nothing, bad_alarm_bodies);

async fn tokens(seed: Seed) {
    let sys = system!(seed);
    let endpoints: [(Svc, Method, &str, Option<&str>); 8] = [
        (Svc::ITEM, Method::GET, "/", None),
        (Svc::ITEM, Method::GET, "/5", None),
        (Svc::ITEM, Method::GET, "/abc", None),
        (Svc::ALARM, Method::POST, "/", Some(r#"{"item_id":5}"#)),
        (Svc::ALARM, Method::GET, "/", None),
        (Svc::ALARM, Method::DELETE, "/", Some(r#"{"item_id":5}"#)),
        (Svc::USER, Method::GET, "/", None),
        (Svc::USER, Method::GET, "/visit", None),
    ];
    for (svc, method, path, body) in endpoints {
        let port = sys.port(svc);
        for token in [None, Some(""), Some("   "), Some("no-such-token"), Some("' OR '1'='1")] {
            let r = sys.request(method.clone(), port, path, token, body).await;
            r.assert_error(401, "Unauthorized");
        }
        let long = "x".repeat(5000);
        sys.request(method.clone(), port, path, Some(&long), body).await.assert_error(401, "Unauthorized");
    }
    sys.request(Method::POST, sys.port(Svc::USER), "/", Some("nope"), None).await.assert_error(401, "Unauthorized");
    // Health and readiness need no token.
    for svc in Svc::all() {
        let r = sys.request(Method::GET, sys.port(svc), "/health", None, None).await;
        assert_eq!(r.status, 200);
        let r = sys.request(Method::GET, sys.port(svc), "/ready", None, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json["status"], "ready");
    }
    // No unauthenticated view was recorded: none reaches user_db's visit table. Views travel
    // in outbox order, so an authenticated view made after them is a barrier: once it is
    // stored (and a moment more for any stored beside it), an earlier one would be too.
    let token = sys.token().await;
    assert_eq!(sys.get(Svc::ITEM, "/6", &token).await.status, 200);
    let stored = || async {
        sys.sql(Svc::USER, "SELECT item_id FROM visit ORDER BY item_id")
            .await
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(5), "the authenticated view is stored", || async { !stored().await.is_empty() })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored().await, vec![6], "only the authenticated view is recorded");
}
crate::on_both_seeds!(every_endpoint_checks_the_token, tokens);

async fn unknown_routes(seed: Seed) {
    let sys = system!(seed);
    let token = sys.token().await;
    sys.get(Svc::USER, "/nope", &token).await.assert_error(404, "Not Found");
    sys.get(Svc::ALARM, "/5", &token).await.assert_error(404, "Not Found");
    let r = sys.request(Method::PUT, sys.port(Svc::ALARM), "/", Some(&token), Some("{}")).await;
    r.assert_error(405, "Method Not Allowed");
    let r = sys.request(Method::DELETE, sys.port(Svc::USER), "/visit", Some(&token), None).await;
    r.assert_error(405, "Method Not Allowed");
}
crate::on_both_seeds!(unknown_routes_and_methods_get_the_error_body, unknown_routes);
