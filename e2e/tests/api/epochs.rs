//! Owner epochs: a database re-created or restored (its versions start again) is noticed by
//! every replica and cache of its rows, which forget what they held and re-read it, within seconds,
//! whether the other services keep running or restart; a forged event with a version the
//! owner never handed out is corrected; unknown tokens cost the owner one lookup, not one each.

use std::time::Duration;

use e2e::{eventually, mgmt, Infra, Seed, Svc, System};

/// The integrity issue's bound: converged within 5 s after a reset or restore.
const CONVERGE: Duration = Duration::from_secs(5);

async fn demo() -> System {
    System::start_on(Infra::shared(), Seed::Demo, &[]).await.expect("the demo seed is part of the repository")
}

async fn alarm_flags(sys: &System, svc: Svc, path: &str, token: &str) -> Option<Vec<i64>> {
    let r = sys.get(svc, path, token).await;
    (r.status == 200).then(|| r.alarmed_ids())
}

/// The owner epochs of the alarm entries the item service's hot copy holds.
async fn persisted_epochs(sys: &System) -> Vec<String> {
    let rows = sys.sql(Svc::ITEM, "SELECT DISTINCT epoch FROM moa_cache_entry WHERE cache = 'alarm'").await;
    rows.iter().map(|r| r.get(0)).collect()
}

async fn epoch_of(sys: &System, svc: Svc) -> String {
    sys.sql(svc, "SELECT moa_epoch()").await[0].get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_alarm_database_is_noticed_by_the_item_and_user_services() {
    // The caches' hot copy, whose epochs this checks, is kept only without read models (a read
    // model re-created with its owner: read_models.rs).
    let mut sys = System::start_on(Infra::shared(), Seed::Demo, &[("READ_MODELS", "0")])
        .await
        .expect("the demo seed is part of the repository");
    let (_, token) = sys.users(1).await.remove(0);
    // Churn, so that the old history's versions are well above what the new one will use.
    for _ in 0..5 {
        for item in [20, 21, 22] {
            sys.post(Svc::ALARM, "/", &token, &format!(r#"{{"item_id": {item}}}"#)).await.assert_empty(201);
            sys.delete(Svc::ALARM, "/", &token, &format!(r#"{{"item_id": {item}}}"#)).await.assert_empty(200);
        }
    }
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 77}"#).await.assert_empty(201);
    sys.get(Svc::ITEM, "/77", &token).await;
    eventually(Duration::from_secs(2), "the flag on 77 everywhere", || async {
        alarm_flags(&sys, Svc::ITEM, "/", &token).await == Some(vec![77])
            && alarm_flags(&sys, Svc::USER, "/visit", &token).await == Some(vec![77])
    })
    .await;
    let old_epoch = epoch_of(&sys, Svc::ALARM).await;

    sys.stop(Svc::ALARM);
    sys.recreate_db(Svc::ALARM, Seed::Demo).await;
    sys.restart(Svc::ALARM).await;
    assert_ne!(epoch_of(&sys, Svc::ALARM).await, old_epoch, "a re-created database has a new epoch");
    // Without any write: the epoch watch alone brings the flags back to the database's truth.
    let took = eventually(CONVERGE, "the item service forgot the alarm on 77", || async {
        alarm_flags(&sys, Svc::ITEM, "/", &token).await == Some(vec![])
            && alarm_flags(&sys, Svc::USER, "/visit", &token).await == Some(vec![])
    })
    .await;
    eprintln!("converged {took:?} after the alarm service was ready on the re-created database");

    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#).await.assert_empty(201);
    let rows = sys.sql(Svc::ALARM, "SELECT item_id FROM alarm").await;
    assert_eq!(rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(), vec![5]);
    eventually(CONVERGE, "the new alarm on 5, and only it, everywhere", || async {
        alarm_flags(&sys, Svc::ITEM, "/", &token).await == Some(vec![5])
            && alarm_flags(&sys, Svc::ALARM, "/", &token).await.map(|v| v.len()) == Some(1)
    })
    .await;
    // The persisted copies are of the new epoch (a graceful stop writes the last changes, so
    // the copy holds them at once): a restart keeps the right answer.
    sys.stop(Svc::ITEM);
    let new_epoch = epoch_of(&sys, Svc::ALARM).await;
    assert_eq!(persisted_epochs(&sys).await, vec![new_epoch.clone()], "only the new epoch's rows, written at the stop");
    sys.restart(Svc::ITEM).await;
    assert_eq!(alarm_flags(&sys, Svc::ITEM, "/", &token).await, Some(vec![5]), "flags right after a restart");
    assert_eq!(persisted_epochs(&sys).await, vec![new_epoch], "only the new epoch's rows are persisted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_item_database_is_noticed_and_operator_changes_reach_the_alarm_list() {
    let mut sys = demo().await;
    let (_, token) = sys.users(1).await.remove(0);
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 9}"#).await.assert_empty(201);
    // Price churn by an operator: item_db's versions climb.
    for p in 1..=20 {
        sys.sql(Svc::ITEM, &format!("UPDATE item SET price = {p} WHERE id = 9")).await;
    }
    eventually(Duration::from_secs(2), "the alarm list shows the last price", || async {
        let r = sys.get(Svc::ALARM, "/", &token).await;
        r.status == 200 && r.json["payload"][0]["price"] == 20
    })
    .await;
    sys.stop(Svc::ITEM);
    sys.recreate_db(Svc::ITEM, Seed::Demo).await;
    sys.restart(Svc::ITEM).await;
    let seeded: i32 = sys.sql(Svc::ITEM, "SELECT price FROM item WHERE id = 9").await[0].get(0);
    eventually(CONVERGE, "the alarm list shows the re-created database's price", || async {
        let r = sys.get(Svc::ALARM, "/", &token).await;
        r.status == 200 && r.json["payload"][0]["price"] == seeded
    })
    .await;
    // An operator's change after the reset has a low version in the new epoch: it must arrive.
    sys.sql(Svc::ITEM, "UPDATE item SET price = 4321 WHERE id = 9").await;
    let took = eventually(CONVERGE, "the operator's price change reaches the alarm list", || async {
        let r = sys.get(Svc::ALARM, "/", &token).await;
        r.status == 200 && r.json["payload"][0]["price"] == 4321
    })
    .await;
    eprintln!("price change visible after {took:?}");
    sys.stop(Svc::ALARM);
    sys.restart(Svc::ALARM).await;
    let r = sys.get(Svc::ALARM, "/", &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["payload"][0]["price"], 4321, "after a restart of the alarm service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_event_with_a_version_the_owner_never_handed_out_is_corrected() {
    let sys = demo().await;
    let mut users = sys.users(2).await;
    let (other, other_token) = users.remove(1);
    let (id, token) = users.remove(0);
    let name: String = sys.sql(Svc::USER, &format!("SELECT name FROM \"user\" WHERE id = {id}")).await[0].get(0);
    let epoch = epoch_of(&sys, Svc::USER).await;
    // The item service has this user cached, and another one.
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.status, 200);
    assert_eq!(sys.get(Svc::ITEM, "/", &other_token).await.status, 200);
    // Someone who can publish on user.events as the user service (its credentials, or the
    // operator impersonating it) gives this user another token, at a version far above
    // anything user_db has handed out (same epoch: the worst case).
    let forged = serde_json::json!([{
        "event_id": "forged-1", "entity": "user", "key": id.to_string(), "version": 1_000_000_000_000i64,
        "deleted": false, "epoch": epoch,
        "data": {"id": id, "name": name, "token_hash": e2e::token_hash("forged-token-0000")}
    }]);
    let body = serde_json::json!({
        "properties": {"user_id": "user-service"}, "routing_key": "", "payload": forged.to_string(),
        "payload_encoding": "string"
    });
    mgmt(
        sys.infra.mgmt_port,
        "POST",
        &format!("/api/exchanges/{}/user.events/publish", sys.name),
        Some(&body.to_string()),
    );
    // Seen at first (it looks legitimate), then corrected by the epoch watch: the owner's
    // newest version is below it, so the entry holding it is dropped and asked again (owner
    // wins), and the read model's digest check puts the owner's row back. The publish is
    // asynchronous: before the forged event arrives the tokens answer as after the repair, so
    // the repair is waited for too (its counter), not the answers alone.
    let repaired = || sys.counter_sum(Svc::ITEM, "moa_cache_repaired_total", "entity=\"user\"");
    let took =
        eventually(CONVERGE, "the forged entry repaired, the real token works, the forged one does not", || async {
            let real = sys.get(Svc::ITEM, "/", &token).await.status;
            let fake = sys.get(Svc::ITEM, "/", "forged-token-0000").await.status;
            repaired().await >= 1.0 && real == 200 && fake == 401
        })
        .await;
    eprintln!("forged row corrected after {took:?}");
    let repaired = repaired().await;
    assert!(repaired >= 1.0, "the dropped entry is counted: {repaired}");
    // Only that entry: the cache was not emptied, the other user is still answered from memory.
    assert_eq!(sys.counter_sum(Svc::ITEM, "moa_cache_resets_total", "entity=\"user\"").await, 0.0, "no reset");
    let hits = || sys.counter_sum(Svc::ITEM, "moa_cache_hits_total", "entity=\"user\"");
    let before = hits().await;
    assert_eq!(sys.get(Svc::ITEM, "/", &other_token).await.status, 200, "user {other}");
    assert_eq!(hits().await, before + 1.0, "user {other} is still cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_with_one_unknown_token_cost_the_owner_a_handful_of_lookups() {
    let sys = demo().await;
    let misses = || sys.counter_sum(Svc::ITEM, "moa_cache_misses_total", "entity=\"user\"");
    let before = misses().await;
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        // 50 at once: concurrent misses of one token share one lookup.
        let wave = (0..50).map(|_| sys.get(Svc::ITEM, "/", "no-such-token-anywhere-1234"));
        statuses.extend(futures_util::future::join_all(wave).await.into_iter().map(|r| r.status));
    }
    assert_eq!(statuses.len(), 1000);
    assert!(statuses.iter().all(|s| *s == 401), "every request is 401");
    let lookups = misses().await - before;
    eprintln!("1000 requests with one unknown token: {lookups} lookups of the user service");
    // One per NEGATIVE_CACHE_MS (2 s) at most while the requests run (and one more for the
    // window a wave straddles): not one per request.
    let bound = (started.elapsed().as_secs_f64() / 2.0).ceil() + 1.0;
    assert!((1.0..=bound).contains(&lookups), "{lookups} owner lookups for 1000 requests in {:?}", started.elapsed());
}
