//! `/visit`: the 3 most recent items, each once at its latest view, per user.

use std::time::Duration;

use e2e::{eventually, system, Seed, Svc, System};

async fn view_all(sys: &System, token: &str, ids: &[i64]) {
    for id in ids {
        let r = sys.get(Svc::ITEM, &format!("/{id}"), token).await;
        assert_eq!(r.status, 200, "view {id}: {r:?}");
    }
}

async fn expect_visits(sys: &System, token: &str, expected: &[i64]) {
    let expected = expected.to_vec();
    eventually(Duration::from_secs(2), &format!("/visit = {expected:?}"), || async {
        sys.get(Svc::USER, "/visit", token).await.ids() == expected
    })
    .await;
}

async fn orderings(seed: Seed) {
    let sys = system!(seed);
    let users = sys.users(4).await;
    let [a, b, c, d] = [&users[0].1, &users[1].1, &users[2].1, &users[3].1];
    let empty = sys.get(Svc::USER, "/visit", a).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json, serde_json::json!({"count": 0, "payload": []}));

    view_all(&sys, a, &[1, 2, 3, 4, 5, 5]).await; // A, B, C, D, E, E → E, D, C
    view_all(&sys, b, &[1, 2, 1]).await; // A, B, A → A, B
    view_all(&sys, c, &[1, 2, 3, 1]).await; // A, B, C, A → A, C, B
    view_all(&sys, d, &[9]).await;
    expect_visits(&sys, a, &[5, 4, 3]).await;
    expect_visits(&sys, b, &[1, 2]).await;
    expect_visits(&sys, c, &[1, 3, 2]).await;
    expect_visits(&sys, d, &[9]).await;

    let v = sys.get(Svc::USER, "/visit", a).await;
    assert_eq!(v.json["count"], 3);
    assert_eq!(v.content_type, "application/json; charset=utf-8");
    let item = sys.get(Svc::ITEM, "/5", a).await;
    assert_eq!(v.json["payload"][0], item.json["payload"], "an item looks the same everywhere");
}
crate::on_both_seeds!(visits_follow_the_contracts_orderings_per_user, orderings);

async fn not_recorded(seed: Seed) {
    let sys = system!(seed);
    let token = sys.token().await;
    for path in ["/1000", "/abc", "/-1", "/0", "/1.0"] {
        let r = sys.get(Svc::ITEM, path, &token).await;
        assert!(r.status == 404 || r.status == 400, "{path}: {r:?}");
    }
    view_all(&sys, &token, &[8]).await;
    expect_visits(&sys, &token, &[8]).await;
    let rows = sys.sql(Svc::USER, "SELECT count(*) FROM visit").await;
    assert_eq!(rows[0].get::<_, i64>(0), 1, "only the existing item's view is stored");
}
crate::on_both_seeds!(unknown_and_non_integer_ids_are_not_recorded, not_recorded);

async fn many_views(seed: Seed) {
    let sys = system!(seed);
    let token = sys.token().await;
    let ids: Vec<i64> = (1..=20).collect();
    view_all(&sys, &token, &ids).await;
    expect_visits(&sys, &token, &[20, 19, 18]).await;
    eventually(Duration::from_secs(2), "all 20 views stored once", || async {
        sys.sql(Svc::USER, "SELECT count(*) FROM visit").await[0].get::<_, i64>(0) == 20
    })
    .await;
}
crate::on_both_seeds!(visits_show_at_most_three, many_views);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_views_are_batched_and_each_is_stored_once() {
    let sys = system!(Seed::Demo);
    let users = sys.users(4).await;
    // 4 users x 12 items at once: the item service records them in shared batches.
    let answers = futures_util::future::join_all(users.iter().flat_map(|(_, token)| {
        let sys = &sys;
        (1..=12).map(move |id| async move { sys.get(Svc::ITEM, &format!("/{id}"), token).await })
    }))
    .await;
    let refused: Vec<String> =
        answers.iter().filter(|r| r.status != 200).map(|r| format!("{} {}", r.status, r.text)).collect();
    assert!(refused.is_empty(), "{} of 48 views not answered 200: {refused:?}", refused.len());
    eventually(Duration::from_secs(5), "all 48 views stored once", || async {
        sys.sql(Svc::USER, "SELECT count(*) FROM visit").await[0].get::<_, i64>(0) == 48
    })
    .await;
    let per_user = sys.sql(Svc::USER, "SELECT count(DISTINCT (user_id, item_id)) FROM visit").await;
    assert_eq!(per_user[0].get::<_, i64>(0), 48, "each view under its own user and item");
    for (_, token) in &users {
        let visit = sys.get(Svc::USER, "/visit", token).await;
        assert_eq!(visit.ids().len(), 3, "{visit:?}");
        assert!(visit.ids().iter().all(|id| (1..=12).contains(id)), "{visit:?}");
    }
}

/// A view sent again with the same `Idempotency-Key` (what the load balancer does when an
/// instance dies under a request: docs/deployment.md) is one view; other keys, and views
/// without a key, are views of their own; a malformed key is ignored (the view still counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_retried_with_its_idempotency_key_is_stored_once() {
    let sys = system!(Seed::Demo);
    let (user, token) = sys.users(1).await.remove(0);
    let port = sys.port(Svc::ITEM);
    let view = |key: Option<&'static str>| {
        let mut req = sys.http.get(format!("http://127.0.0.1:{port}/5")).header("USER-TOKEN", &token);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        async move { req.send().await.map(|r| r.status().as_u16()).ok() }
    };
    // The same key three times (the retries may reach the item service before or after the
    // first event was published: both are one view), another key, two without one, a bad one.
    for key in [Some("req-1"), Some("req-1"), Some("req-2"), None, None, Some("req-1"), Some("not ascii é")] {
        assert_eq!(view(key).await, Some(200), "{key:?}");
    }
    let stored = || async {
        sys.sql(Svc::USER, &format!("SELECT count(*) FROM visit WHERE user_id = {user} AND item_id = 5")).await[0]
            .get::<_, i64>(0)
    };
    eventually(Duration::from_secs(5), "req-1 once, req-2, two without a key, the bad key's", || async {
        stored().await == 5
    })
    .await;
    // And it stays at 5: nothing else was in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored().await, 5);
    assert_eq!(sys.get(Svc::USER, "/visit", &token).await.ids(), vec![5]);
}
