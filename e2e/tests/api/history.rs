//! Nothing grows with history without bound: tombstones are collected after a retention
//! (`common/sql/0022_collect_tombstones.sql`), and a copy that was away since before a
//! collection still converges: the item catalog (a full replica) rebuilds from its owner
//! instead of catching up by digest, which cannot show a deletion whose tombstone is gone;
//! a cache asks again for every restored entry before using it.

use std::time::Duration;

use e2e::{eventually, Infra, Seed, Svc, System};

const CONVERGE: Duration = Duration::from_secs(5);
const REBUILD_LINE: &str = "older than the owner's collected tombstones";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_away_while_tombstones_were_collected_forgets_the_deleted_rows() {
    // The caches' hot copy (below) is kept only without read models.
    let mut sys = System::start_on(Infra::shared(), Seed::Demo, &[("EPOCH_PROBE_MS", "200"), ("READ_MODELS", "0")])
        .await
        .expect("the demo seed is part of the repository");
    let users = sys.users(3).await;
    let (gone, gone_token) = users[2].clone();
    let token = users[0].1.clone();
    assert_eq!(sys.get(Svc::ITEM, "/", &gone_token).await.status, 200);
    // The item service's hot copy holds the user and the user's alarms, which it restores at
    // its restart: with the alarm service down then, the restored alarm entry is what makes
    // it ready (each cache writes its copy on its own timer, so both are waited for).
    eventually(CONVERGE, "the item service persisted the user and the user's alarms", || async {
        let q = format!("SELECT count(*) FROM moa_cache_entry WHERE cache IN ('user', 'alarm') AND grp = {gone}");
        sys.sql(Svc::ITEM, &q).await[0].get::<_, i64>(0) == 2
    })
    .await;
    // An item the alarm service's catalog holds and persisted.
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 30}"#).await.assert_empty(201);

    // Away: the item and the user are deleted, newer ones added, and the tombstones collected
    // (a retention of 0 stands for "away longer than the retention"). The alarm service is
    // away while the items change; the item service (whose relay publishes them) after.
    sys.stop(Svc::ALARM);
    sys.sql(Svc::ALARM, "DELETE FROM alarm WHERE item_id = 30").await;
    sys.sql(Svc::ITEM, "DELETE FROM item WHERE id = 30").await;
    sys.sql(Svc::ITEM, "INSERT INTO item (id, name, broadcaster, category, price) VALUES (9001, 'n', 'b', NULL, 1)")
        .await;
    // The user service stays up: it sees the item changes as events before the collection.
    let newest: i64 = sys.sql(Svc::ITEM, "SELECT moa_max_version()").await[0].get(0);
    eventually(CONVERGE, "the user service saw the item changes", || async {
        let m = sys.request(e2e::Method::GET, sys.port(Svc::USER), "/metrics", None, None).await.text;
        m.lines()
            .find(|l| l.starts_with("moa_replica_version{entity=\"item\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .is_some_and(|v| v as i64 >= newest)
    })
    .await;
    sys.stop(Svc::ITEM);
    sys.sql(Svc::USER, &format!(r#"DELETE FROM "user" WHERE id = {gone}"#)).await;
    sys.sql(Svc::USER, r#"INSERT INTO "user" (id, name, access_token) VALUES (9001, '새 사용자', 'newer-token')"#)
        .await;
    for svc in [Svc::USER, Svc::ITEM] {
        let collected: i64 = sys.sql(svc, "SELECT moa_collect_tombstones(interval '0')").await[0].get(0);
        assert!(collected >= 1, "collected {collected}");
    }
    let left = sys.sql(Svc::USER, &format!("SELECT count(*) FROM moa_entity_version WHERE key = '{gone}'")).await;
    assert_eq!(left[0].get::<_, i64>(0), 0, "the tombstone is gone");
    // A second collection finds nothing more, and the newest row of an entity is kept even
    // when it is a tombstone (so a rebuilt replica is never below the horizon).
    let again: i64 = sys.sql(Svc::USER, "SELECT moa_collect_tombstones(interval '0')").await[0].get(0);
    assert_eq!(again, 0);

    sys.restart(Svc::ITEM).await;
    sys.restart(Svc::ALARM).await;
    // The cache: the restored entry is asked again at its first use. It is served as it is
    // only when the owner does not answer in time (a just-restarted service on a loaded
    // machine can miss the RPC timeout once): then that is counted, and the next use asks again.
    let first = sys.get(Svc::ITEM, "/", &gone_token).await.status;
    if first != 401 {
        assert_eq!(first, 200, "the deleted user's token");
        let stale = sys.counter_sum(Svc::ITEM, "moa_cache_stale_served_total", "entity=\"user\"").await;
        assert!(stale >= 1.0, "a restored entry answered 200 without the owner failing to answer");
        eventually(CONVERGE, "the deleted user's token is refused once the owner answers", || async {
            sys.get(Svc::ITEM, "/", &gone_token).await.status == 401
        })
        .await;
    }
    assert_eq!(sys.get(Svc::ITEM, "/", "newer-token").await.status, 200);
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.status, 200);
    // The catalog: rebuilt at the restart.
    eventually(CONVERGE, "the deleted item is gone from the alarm service's catalog", || async {
        sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 30}"#).await.status == 404
    })
    .await;
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 9001}"#).await.assert_empty(201);
    // Rebuilt at the restart (by its sync and perhaps by its epoch watch at the same moment),
    // not on every epoch probe after (the probe runs every 200 ms here).
    let rebuilds = || sys.log(Svc::ALARM).lines().filter(|l| l.contains(REBUILD_LINE)).count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_restart = rebuilds();
    assert!((1..=2).contains(&at_restart), "{at_restart} rebuilds:\n{}", sys.log(Svc::ALARM));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rebuilds(), at_restart, "no rebuild after the first:\n{}", sys.log(Svc::ALARM));
    // The user service's catalog stayed up and saw the deletion as an event: no rebuild there.
    assert!(!sys.log(Svc::USER).contains(REBUILD_LINE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_younger_than_the_retention_are_kept() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    sys.sql(Svc::USER, r#"DELETE FROM "user" WHERE id = 5"#).await;
    sys.sql(Svc::USER, r#"INSERT INTO "user" (id, name, access_token) VALUES (9002, 'n', 'tok-9002')"#).await;
    let collected: i64 = sys.sql(Svc::USER, "SELECT moa_collect_tombstones(interval '1 day')").await[0].get(0);
    assert_eq!(collected, 0);
    let kept = sys.sql(Svc::USER, "SELECT count(*) FROM moa_entity_version WHERE entity = 'user' AND deleted").await;
    assert_eq!(kept[0].get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_visit_book_keeps_what_visit_needs_and_views_within_the_retention() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let (user, token) = sys.users(1).await.remove(0);
    for item in [11, 12, 13, 14, 15] {
        assert_eq!(sys.get(Svc::ITEM, &format!("/{item}"), &token).await.status, 200);
    }
    let visit = || async { sys.get(Svc::USER, "/visit", &token).await.ids() };
    eventually(CONVERGE, "every view stored", || async { visit().await == vec![15, 14, 13] }).await;
    // A view received long ago (as if stored 40 days back), of another user.
    sys.sql(
        Svc::USER,
        "INSERT INTO visit (event_id, user_id, item_id, viewed_at, seq, received_at)
         VALUES (gen_random_uuid(), 2, 1, now() - interval '40 days', 1, now() - interval '40 days')",
    )
    .await;
    let sys = &sys;
    let count = |sql: &'static str| async move { sys.sql(Svc::USER, sql).await[0].get::<_, i64>(0) };
    assert_eq!(count("SELECT count(*) FROM visit").await, 6);
    let trimmed = sys.sql(Svc::USER, "SELECT visits, recent FROM moa_trim_visits(interval '30 days', 3)").await;
    assert_eq!((trimmed[0].get::<_, i64>(0), trimmed[0].get::<_, i64>(1)), (1, 2));
    // Every view answered 200 within the retention is still stored; /visit is unchanged.
    assert_eq!(count("SELECT count(*) FROM visit").await, 5);
    let q = format!("SELECT item_id FROM recent_visit WHERE user_id = {user} ORDER BY item_id");
    let kept: Vec<i64> = sys.sql(Svc::USER, &q).await.iter().map(|r| r.get(0)).collect();
    assert_eq!(kept, vec![13, 14, 15]);
    assert_eq!(visit().await, vec![15, 14, 13]);
    // A trimmed item viewed again comes back on top, in this instance's book too.
    assert_eq!(sys.get(Svc::ITEM, "/11", &token).await.status, 200);
    eventually(CONVERGE, "the new view shows", || async { visit().await == vec![11, 15, 14] }).await;
}
