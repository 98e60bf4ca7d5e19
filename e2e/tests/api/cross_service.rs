//! Changes in one domain reach the others through RabbitMQ within a second.

use std::time::Duration;

use e2e::{eventually, system, Seed, Svc};

const WITHIN: Duration = Duration::from_secs(1);

async fn alarm_flags(seed: Seed) {
    let sys = system!(seed);
    let users = sys.users(2).await;
    let (token, other) = (&users[0].1, &users[1].1);
    // A view, so /visit shows the item whose flag we follow.
    assert_eq!(sys.get(Svc::ITEM, "/30", token).await.status, 200);
    sys.post(Svc::ALARM, "/", token, r#"{"item_id": 30}"#).await.assert_empty(201);
    let took = eventually(WITHIN, "item list shows the alarm", || async {
        sys.get(Svc::ITEM, "/", token).await.alarmed_ids() == vec![30]
    })
    .await;
    eprintln!("alarm set → item list: {took:?}");
    eventually(WITHIN, "item detail shows the alarm", || async {
        sys.get(Svc::ITEM, "/30", token).await.json["payload"]["is_alarm_set"] == true
    })
    .await;
    eventually(WITHIN, "/visit shows the alarm", || async {
        let v = sys.get(Svc::USER, "/visit", token).await;
        v.ids().first() == Some(&30) && v.alarmed_ids() == vec![30]
    })
    .await;
    assert!(sys.get(Svc::ITEM, "/", other).await.alarmed_ids().is_empty(), "flags are the caller's own");

    sys.delete(Svc::ALARM, "/", token, r#"{"item_id": "30"}"#).await.assert_empty(200);
    eventually(WITHIN, "item list shows the alarm cleared", || async {
        sys.get(Svc::ITEM, "/", token).await.alarmed_ids().is_empty()
    })
    .await;
    eventually(WITHIN, "/visit shows the alarm cleared", || async {
        sys.get(Svc::USER, "/visit", token).await.alarmed_ids().is_empty()
    })
    .await;
}
crate::on_both_seeds!(alarm_changes_reach_the_item_and_user_services, alarm_flags);

async fn price_update(seed: Seed) {
    let sys = system!(seed);
    let token = sys.token().await;
    sys.get(Svc::ITEM, "/12", &token).await;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 12}"#).await.assert_empty(201);
    eventually(WITHIN, "view stored", || async { sys.get(Svc::USER, "/visit", &token).await.ids() == vec![12] }).await;
    sys.sql(Svc::ITEM, "UPDATE item SET price = 4242 WHERE id = 12").await;
    let took = eventually(WITHIN, "alarm list shows the new price", || async {
        sys.get(Svc::ALARM, "/", &token).await.json["payload"][0]["price"] == 4242
    })
    .await;
    eprintln!("price update → alarm list: {took:?}");
    eventually(WITHIN, "/visit shows the new price", || async {
        sys.get(Svc::USER, "/visit", &token).await.json["payload"][0]["price"] == 4242
    })
    .await;
    eventually(WITHIN, "item list shows the new price", || async {
        let l = sys.get(Svc::ITEM, "/", &token).await;
        l.json["payload"].as_array().unwrap().iter().any(|i| i["id"] == 12 && i["price"] == 4242)
    })
    .await;
}
crate::on_both_seeds!(a_price_changed_in_psql_reaches_every_service, price_update);

async fn new_user(seed: Seed) {
    let sys = system!(seed);
    sys.sql(Svc::USER, "INSERT INTO \"user\" (id, name, access_token) VALUES (9001, '신입', 'fresh-token-9001')").await;
    let took = eventually(WITHIN, "the new token works on the item service", || async {
        sys.get(Svc::ITEM, "/", "fresh-token-9001").await.status == 200
    })
    .await;
    eprintln!("user insert → item service: {took:?}");
    eventually(WITHIN, "the new token works on the alarm service", || async {
        sys.get(Svc::ALARM, "/", "fresh-token-9001").await.status == 200
    })
    .await;
    sys.post(Svc::ALARM, "/", "fresh-token-9001", r#"{"item_id": 3}"#).await.assert_empty(201);
    let rows = sys.sql(Svc::ALARM, "SELECT count(*) FROM alarm WHERE user_id = 9001 AND item_id = 3").await;
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    // A token changed by an operator stops working everywhere.
    sys.sql(Svc::USER, "UPDATE \"user\" SET access_token = 'rotated-9001' WHERE id = 9001").await;
    eventually(WITHIN, "the old token is refused", || async {
        sys.get(Svc::ITEM, "/", "fresh-token-9001").await.status == 401
            && sys.get(Svc::ALARM, "/", "fresh-token-9001").await.status == 401
    })
    .await;
    assert_eq!(sys.get(Svc::ALARM, "/", "rotated-9001").await.ids(), vec![3]);
}
crate::on_both_seeds!(a_user_inserted_in_psql_can_use_every_service, new_user);

async fn new_item(seed: Seed) {
    let sys = system!(seed);
    let token = sys.token().await;
    sys.sql(
        Svc::ITEM,
        "INSERT INTO item (id, name, broadcaster, category, price) VALUES (777, '새 상품', 'gsshop', NULL, 1000)",
    )
    .await;
    // Right away: the alarm service may not have the event yet and asks the item service.
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 777}"#).await.assert_empty(201);
    let list = sys.get(Svc::ALARM, "/", &token).await;
    assert_eq!(list.ids(), vec![777]);
    assert_eq!(list.json["payload"][0]["name"], "새 상품");
    eventually(WITHIN, "the item list has it, flagged", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids() == vec![777]
    })
    .await;
    // Deleted by an operator: it leaves the lists, and cannot get new alarms.
    sys.sql(Svc::ITEM, "DELETE FROM item WHERE id = 777").await;
    eventually(WITHIN, "the deleted item leaves the alarm list", || async {
        sys.get(Svc::ALARM, "/", &token).await.ids().is_empty()
    })
    .await;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 777}"#).await.assert_empty(404);
    // The item service's catalog follows item_db through item.events too: within the bound.
    eventually(WITHIN, "the deleted item's detail is 404", || async {
        sys.get(Svc::ITEM, "/777", &token).await.status == 404
    })
    .await;
    sys.get(Svc::ITEM, "/777", &token).await.assert_empty(404);
}
crate::on_both_seeds!(an_item_inserted_in_psql_can_get_an_alarm, new_item);

async fn alarm_sql(seed: Seed) {
    let sys = system!(seed);
    let users = sys.users(1).await;
    let (user_id, token) = (&users[0].0, &users[0].1);
    sys.sql(Svc::ALARM, &format!("INSERT INTO alarm (item_id, user_id, created) VALUES (44, {user_id}, now())")).await;
    // Each service hears of it through its own queue: each within the bound.
    eventually(WITHIN, "an alarm inserted in psql shows in the item list and the alarm list", || async {
        sys.get(Svc::ITEM, "/", token).await.alarmed_ids() == vec![44]
            && sys.get(Svc::ALARM, "/", token).await.ids() == vec![44]
    })
    .await;
}
crate::on_both_seeds!(an_alarm_inserted_in_psql_shows_everywhere, alarm_sql);

/// Many users' first requests at once: their cache misses are asked together (of the read
/// models, or the owners while those are built)
/// (`replica::misses`), and each user still gets exactly their own alarm flags and a 401 stays
/// a 401 (the answer to a merged question is split by the owner's own tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_requests_of_many_users_at_once_are_asked_together_and_each_gets_its_own_flags() {
    let sys = system!(Seed::Demo);
    let users = sys.users(40).await;
    assert_eq!(users.len(), 40, "the demo seed has 40 users at least");
    // User k has alarms on items k % 10 + 1 and k % 7 + 20 (written in alarm_db, as an operator
    // would: no request of theirs has reached the item service yet, so nothing is cached).
    let values: Vec<String> = users
        .iter()
        .enumerate()
        .flat_map(|(k, (id, _))| [k % 10 + 1, k % 7 + 20].map(|item| format!("({item}, {id}, now())")))
        .collect();
    sys.sql(Svc::ALARM, &format!("INSERT INTO alarm (item_id, user_id, created) VALUES {}", values.join(", "))).await;
    let expected = |k: usize| vec![(k % 10 + 1) as i64, (k % 7 + 20) as i64];
    // The misses are read from the item service's read models once they are current: a read
    // model is as fresh as its events, so the alarms written above are waited for (as a cached
    // user's would be). Each merged read is one lookup of a tier (disk, or the owner).
    eventually(Duration::from_secs(20), "the item service's read models are current and hold the alarms", || async {
        let r = sys.request(e2e::Method::GET, sys.port(Svc::ITEM), "/ready", None, None).await;
        let models = &r.json["checks"]["read_models"];
        let held: i64 =
            sys.sql(Svc::ITEM, "SELECT count(*) FROM moa_read_model WHERE kind = 'alarm' AND NOT deleted").await[0]
                .get(0);
        models["user"] == "complete" && models["alarm"] == "complete" && held == 80
    })
    .await;
    let rpcs = |entity: &'static str| {
        let sys = &sys;
        async move { sys.counter_sum(Svc::ITEM, "moa_read_model_lookups_total", &format!("entity=\"{entity}\"")).await }
    };
    let (users_before, alarms_before) = (rpcs("user").await, rpcs("alarm").await);

    let firsts = users.iter().map(|(_, token)| sys.get(Svc::ITEM, "/", token));
    let strangers: Vec<String> = (0..10).map(|i| format!("no-such-token-{i}")).collect();
    let unknown = strangers.iter().map(|t| sys.get(Svc::ITEM, "/", t));
    let (firsts, unknown) =
        tokio::join!(futures_util::future::join_all(firsts), futures_util::future::join_all(unknown));
    for (k, r) in firsts.iter().enumerate() {
        assert_eq!(r.status, 200, "user {k}: {}", r.text);
        let mut flags = r.alarmed_ids();
        flags.sort();
        assert_eq!(flags, expected(k), "user {k} sees their own alarms");
    }
    assert!(unknown.iter().all(|r| r.status == 401), "unknown tokens stay unknown");

    let user_rpcs = rpcs("user").await - users_before;
    let alarm_rpcs = rpcs("alarm").await - alarms_before;
    eprintln!("50 first requests at once: {user_rpcs} reads of the user read model, {alarm_rpcs} of the alarm one");
    assert!(user_rpcs < 50.0, "50 token misses were asked together, not one by one ({user_rpcs} questions)");
    assert!(alarm_rpcs < 40.0, "40 alarm misses were asked together, not one by one ({alarm_rpcs} questions)");
}
