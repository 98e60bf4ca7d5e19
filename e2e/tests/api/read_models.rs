//! Complete read models on disk (common/src/replica/read_model.rs): a user no service has
//! been asked about is answered while the owner, its database or RabbitMQ is down; a read
//! model follows a re-created owner database, resumes a backfill killed half way, and never
//! lets a late event overwrite a newer row.

use std::time::Duration;

use e2e::{eventually, Infra, Seed, Svc, System};
use serde_json::Value;

/// Enough users that a backfill of a few rows a page takes a while; alarms loaded as a dump
/// is (unversioned), so the alarm backfill reads them through the alarm domain's page function.
const SEED: Seed = Seed::Generated { users: 300, alarms: 900 };

/// Where `svc`'s read models stand, as `/ready` shows them (`{"user": "complete", ...}`).
async fn read_models(sys: &System, svc: Svc) -> Value {
    let r = sys.request(e2e::Method::GET, sys.port(svc), "/ready", None, None).await;
    r.json["checks"]["read_models"].clone()
}

/// The kinds of the three domains these tests address by name (`Svc::ITEM`, ...).
const TODAYS_KINDS: [&str; 3] = ["item", "alarm", "user"];

/// The read models each service keeps of today's kinds: of every other domain's kind it caches
/// (never the items, a catalog kept whole in memory). A kind added later (say a new domain's
/// reviews, cached by the item service) adds its own beside them.
fn kinds(svc: Svc) -> &'static [&'static str] {
    match svc {
        Svc::ITEM => &["alarm", "user"],
        Svc::ALARM => &["user"],
        Svc::USER => &["alarm"],
        // Another domain keeps none until it declares some (the check below then says which).
        _ => &[],
    }
}

async fn wait_complete(sys: &System, svc: Svc) {
    eventually(Duration::from_secs(60), &format!("{}'s read models complete and current", svc.name()), || async {
        let m = read_models(sys, svc).await;
        let all_complete = m.as_object().is_some_and(|o| o.values().all(|v| v == "complete"));
        all_complete && kinds(svc).iter().all(|k| m[*k] == "complete")
    })
    .await;
}

async fn wait_all_complete(sys: &System) {
    for svc in Svc::all() {
        let m = read_models(sys, svc).await;
        let shown: Vec<&str> = m.as_object().map(|o| o.keys().map(|k| k.as_str()).collect()).unwrap_or_default();
        // Of today's kinds exactly those (none of the items, none of its own); a later
        // domain's kinds may come beside them, never one of the service's own domain.
        let mut of_today: Vec<&str> = shown.iter().copied().filter(|k| TODAYS_KINDS.contains(k)).collect();
        of_today.sort_unstable();
        assert_eq!(of_today, kinds(svc), "{} keeps a read model of exactly these of today's kinds: {m}", svc.name());
        assert!(!shown.contains(&svc.name()), "{} keeps no read model of its own kind: {m}", svc.name());
        wait_complete(sys, svc).await;
    }
}

/// The items `user` has alarms on, from alarm_db itself.
async fn alarmed(sys: &System, user: i64) -> Vec<i64> {
    let mut items: Vec<i64> = sys
        .sql(Svc::ALARM, &format!("SELECT item_id::bigint FROM alarm WHERE user_id = {user} AND item_id IS NOT NULL"))
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    items.sort_unstable();
    items
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

/// Users no service has been asked about: the system just started and nothing asked for them.
async fn never_seen(sys: &System, from: usize, n: usize) -> Vec<(i64, String)> {
    let users = sys.users((from + n) as i64).await;
    users[from..].to_vec()
}

/// An item the user has no alarm on.
async fn unalarmed_item(sys: &System, user: i64) -> i64 {
    let have = alarmed(sys, user).await;
    (1..=100).find(|i| !have.contains(i)).expect("a user without an alarm on every item")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_seen_user_is_answered_by_every_consumer_while_the_user_or_the_alarm_service_is_down() {
    let mut sys = e2e::system!(SEED);
    wait_all_complete(&sys).await;
    let users = never_seen(&sys, 100, 10).await;

    // The user service is down: the item and alarm services tell tokens from their read models.
    sys.stop(Svc::USER);
    for (id, token) in &users[..5] {
        let list = sys.get(Svc::ITEM, "/", token).await;
        assert_eq!(list.status, 200, "item list of never-seen user {id} with the user service down: {list:?}");
        assert_eq!(sorted(list.alarmed_ids()), alarmed(&sys, *id).await, "user {id}'s alarm flags");
        let detail = sys.get(Svc::ITEM, "/7", token).await;
        assert_eq!(detail.status, 200, "item detail (a view) of user {id}: {detail:?}");
        let item = unalarmed_item(&sys, *id).await;
        let set = sys.post(Svc::ALARM, "/", token, &format!(r#"{{"item_id": {item}}}"#)).await;
        assert_eq!(set.status, 201, "alarm set by user {id}: {set:?}");
    }
    assert_eq!(sys.get(Svc::ITEM, "/", "no-such-token").await.status, 401, "an unknown token is still told");
    let from_disk = sys.counter_sum(Svc::ITEM, "moa_read_model_lookups_total", "tier=\"disk").await;
    assert!(from_disk >= 10.0, "the item service's misses were read from its read models ({from_disk})");

    // The views made meanwhile reach /visit once the user service is back.
    sys.restart(Svc::USER).await;
    for (id, token) in &users[..5] {
        eventually(Duration::from_secs(10), &format!("user {id}'s view reaches /visit"), || async {
            sys.get(Svc::USER, "/visit", token).await.ids() == vec![7]
        })
        .await;
    }

    // The alarm service is down: the user service reads alarm sets from its read model, and the
    // item service has both kinds on disk.
    sys.stop(Svc::ALARM);
    for (id, token) in &users[5..] {
        let visits = sys.get(Svc::USER, "/visit", token).await;
        assert_eq!(visits.status, 200, "/visit of never-seen user {id} with the alarm service down: {visits:?}");
        let list = sys.get(Svc::ITEM, "/", token).await;
        assert_eq!(list.status, 200, "item list of user {id} with the alarm service down: {list:?}");
        assert_eq!(sorted(list.alarmed_ids()), alarmed(&sys, *id).await, "user {id}'s alarm flags");
    }
    // (disk, or disk_while_owner_down: restarted above, its read model may still be catching up)
    let from_disk = sys.counter_sum(Svc::USER, "moa_read_model_lookups_total", "tier=\"disk").await;
    assert!(from_disk >= 5.0, "the user service's alarm misses were read from its read model ({from_disk})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_seen_user_is_answered_while_user_db_is_down() {
    let Some(sys) = System::start_on(Infra::shared().with_own_pg(&[Svc::USER]), SEED, &[]).await else { return };
    wait_all_complete(&sys).await;
    let users = never_seen(&sys, 120, 4).await;
    sys.infra.crash_pg(Svc::USER);
    for (id, token) in &users {
        let detail = sys.get(Svc::ITEM, "/3", token).await;
        assert_eq!(detail.status, 200, "item detail of never-seen user {id} with user_db down: {detail:?}");
        let list = sys.get(Svc::ITEM, "/", token).await;
        assert_eq!(list.status, 200, "item list of user {id} with user_db down: {list:?}");
        assert_eq!(sorted(list.alarmed_ids()), alarmed(&sys, *id).await);
        let mine = sys.get(Svc::ALARM, "/", token).await;
        assert_eq!(mine.status, 200, "alarm list of user {id} with user_db down: {mine:?}");
    }
    sys.infra.start_pg(Svc::USER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_seen_user_is_answered_while_rabbitmq_is_down_and_changes_made_meanwhile_arrive_after() {
    let Some(sys) = System::start_on(Infra::shared().with_own_rabbit(), SEED, &[]).await else { return };
    wait_all_complete(&sys).await;
    let users = never_seen(&sys, 140, 4).await;
    sys.infra.stop_rabbit();
    let (first, token0) = users[0].clone();
    let item = unalarmed_item(&sys, first).await;
    for (id, token) in &users {
        let list = sys.get(Svc::ITEM, "/", token).await;
        assert_eq!(list.status, 200, "item list of never-seen user {id} with RabbitMQ down: {list:?}");
        assert_eq!(sorted(list.alarmed_ids()), alarmed(&sys, *id).await);
        let detail = sys.get(Svc::ITEM, "/5", token).await;
        assert_eq!(detail.status, 200, "item detail of user {id} with RabbitMQ down: {detail:?}");
        let mine = sys.get(Svc::ALARM, "/", token).await;
        assert_eq!(mine.status, 200, "alarm list of user {id} with RabbitMQ down: {mine:?}");
        let visits = sys.get(Svc::USER, "/visit", token).await;
        assert_eq!(visits.status, 200, "/visit of user {id} with RabbitMQ down: {visits:?}");
    }
    // A write during the outage commits; its event waits in alarm_db's outbox.
    let set = sys.post(Svc::ALARM, "/", &token0, &format!(r#"{{"item_id": {item}}}"#)).await;
    assert_eq!(set.status, 201, "{set:?}");
    sys.infra.start_rabbit();
    for svc in [Svc::ITEM, Svc::USER] {
        eventually(Duration::from_secs(30), &format!("the alarm set during the outage reaches {}'s read model", svc.name()), || async {
            let rows = sys
                .sql(svc, &format!("SELECT deleted FROM moa_read_model WHERE kind = 'alarm' AND grp = {first} AND member = {item}"))
                .await;
            rows.first().is_some_and(|r| !r.get::<_, bool>(0))
        })
        .await;
        wait_complete(&sys, svc).await;
    }
}

/// (epoch, complete, copied) of `kind`'s read model in `svc`'s database.
async fn state(sys: &System, svc: Svc, kind: &str) -> Option<(String, bool, i64)> {
    sys.sql(svc, &format!("SELECT epoch, complete, copied FROM moa_read_model_state WHERE kind = '{kind}'"))
        .await
        .first()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// `(grp, member, version, deleted, kept)` of every row of `kind` in `svc`'s read model.
async fn rows(sys: &System, svc: Svc, kind: &str) -> Vec<(i64, i64, i64, bool, Option<String>)> {
    sys.sql(
        svc,
        &format!(
            "SELECT grp, member, version, deleted, kept FROM moa_read_model WHERE kind = '{kind}' ORDER BY grp, member"
        ),
    )
    .await
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

/// The live users of user_db as a read model keeps them: (id, name, the token's hash).
async fn owner_users(sys: &System) -> Vec<(i64, String, String)> {
    sys.sql(Svc::USER, "SELECT id::bigint, name, access_token FROM \"user\" ORDER BY id")
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1), e2e::token_hash(r.get(2))))
        .collect()
}

async fn user_row(sys: &System, svc: Svc, id: i64) -> (i64, i64, i64, bool, Option<String>) {
    rows(sys, svc, "user").await.into_iter().find(|r| r.0 == id).expect("the user's row")
}

async fn kept_users(sys: &System, svc: Svc) -> Vec<(i64, String, String)> {
    rows(sys, svc, "user")
        .await
        .into_iter()
        .filter(|r| !r.3)
        .map(|(grp, _, _, _, kept)| {
            let v: Value = serde_json::from_str(kept.as_deref().expect("a live user keeps its data")).expect("json");
            assert_eq!(v["id"].as_i64(), Some(grp));
            assert!(v.get("access_token").is_none(), "no token is kept: {v}");
            (grp, v["name"].as_str().expect("name").to_string(), v["token_hash"].as_str().expect("hash").to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_is_rebuilt_after_its_owners_database_is_recreated() {
    let mut sys = e2e::system!(SEED);
    wait_all_complete(&sys).await;
    let (before, complete, _) = state(&sys, Svc::ITEM, "user").await.expect("a read model of users");
    assert!(complete);
    assert_eq!(kept_users(&sys, Svc::ITEM).await, owner_users(&sys).await, "every user, as the owner has it");

    sys.stop(Svc::USER);
    sys.recreate_db(Svc::USER, SEED).await;
    sys.restart(Svc::USER).await;
    let epoch: String = sys.sql(Svc::USER, "SELECT moa_epoch()").await[0].get(0);
    assert_ne!(epoch, before, "a re-created database is a new owner epoch");
    for svc in [Svc::ITEM, Svc::ALARM] {
        eventually(
            Duration::from_secs(30),
            &format!("{}'s user read model rebuilt for epoch {epoch}", svc.name()),
            || async { state(&sys, svc, "user").await.is_some_and(|(e, complete, _)| e == epoch && complete) },
        )
        .await;
        assert_eq!(
            kept_users(&sys, svc).await,
            owner_users(&sys).await,
            "{}: every user of the new database",
            svc.name()
        );
        assert!(sys.log(svc).contains("read model user: rebuilt from user"), "{} says why it rebuilt", svc.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_half_way_resumes_after_its_last_page_and_completes() {
    // 300 users, 10 a page, a page every 150 ms: about 5 s of backfill to kill into.
    let slow = [("READ_MODEL_PAGE_ROWS", "10"), ("READ_MODEL_PAGE_PAUSE_MS", "150")];
    let Some(mut sys) = System::start_on(Infra::shared(), SEED, &slow).await else { return };
    eventually(Duration::from_secs(30), "the item service's user backfill is under way", || async {
        state(&sys, Svc::ITEM, "user").await.is_some_and(|(_, complete, copied)| !complete && copied >= 50)
    })
    .await;
    sys.kill(Svc::ITEM);
    let (_, complete, copied) = state(&sys, Svc::ITEM, "user").await.expect("state");
    assert!(!complete && (50..300).contains(&copied), "killed half way: {copied} rows copied");

    sys.restart(Svc::ITEM).await;
    eventually(Duration::from_secs(60), "the resumed backfill completes", || async {
        state(&sys, Svc::ITEM, "user").await.is_some_and(|(_, complete, _)| complete)
    })
    .await;
    let (_, _, total) = state(&sys, Svc::ITEM, "user").await.expect("state");
    assert_eq!(total, 300, "each page copied once: the resumed backfill started after the last page written");
    let log = sys.log(Svc::ITEM);
    assert!(log.contains(&format!("backfill resumes after {copied} rows")), "the second start resumed:\n{log}");
    assert!(!log.contains("read model user: rebuilt"), "not rebuilt from scratch");
    wait_complete(&sys, Svc::ITEM).await;
    assert_eq!(kept_users(&sys, Svc::ITEM).await, owner_users(&sys).await, "every user, once");
    let alarms = rows(&sys, Svc::ITEM, "alarm").await;
    let owner: i64 = sys.sql(Svc::ALARM, "SELECT count(*) FROM alarm WHERE item_id IS NOT NULL").await[0].get(0);
    assert_eq!(
        alarms.iter().filter(|r| !r.3).count() as i64,
        owner,
        "every alarm of the dump (unversioned: version 0)"
    );
    assert!(alarms.iter().all(|r| r.2 == 0 && r.4.is_none()), "a dump's alarms are version 0 and keep no data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_never_overwrites_a_newer_row() {
    let sys = e2e::system!(Seed::Demo);
    wait_all_complete(&sys).await;
    let (id, token) = sys.users(3).await.remove(2);
    // A real change: the trigger versions it and the relay publishes it.
    sys.sql(Svc::USER, &format!("UPDATE \"user\" SET name = 'Newer Name' WHERE id = {id}")).await;
    let version: i64 = sys
        .sql(Svc::USER, &format!("SELECT version FROM moa_entity_version WHERE entity = 'user' AND key = '{id}'"))
        .await[0]
        .get(0);
    eventually(Duration::from_secs(10), "the change reaches the item service's read model", || async {
        user_row(&sys, Svc::ITEM, id).await.2 == version
    })
    .await;

    // The same user one version older, as a late redelivery would bring it: published to
    // user.events by hand, with the owner's epoch.
    let epoch: String = sys.sql(Svc::USER, "SELECT moa_epoch()").await[0].get(0);
    let late = serde_json::json!({
        "event_id": "late-1", "entity": "user", "key": id.to_string(), "version": version - 1, "deleted": false,
        "data": {"id": id, "name": "Older Name", "token_hash": e2e::token_hash("late-token")}, "epoch": epoch,
    });
    // As the user service published it (the operator may impersonate it): what a redelivery is.
    let publish = serde_json::json!({
        "properties": {"user_id": "user-service"}, "routing_key": "", "payload": late.to_string(),
        "payload_encoding": "string",
    });
    let routed = e2e::mgmt(
        sys.infra.mgmt_port,
        "POST",
        &format!("/api/exchanges/{}/user.events/publish", sys.name),
        Some(&publish.to_string()),
    );
    assert!(routed.contains("\"routed\":true"), "published: {routed}");
    // A later real change, of another user, behind it in the same queue: once it is in the read
    // model, the late event was handled before it.
    let (other, _) = sys.users(4).await.remove(3);
    sys.sql(Svc::USER, &format!("UPDATE \"user\" SET name = 'Marker' WHERE id = {other}")).await;
    eventually(Duration::from_secs(10), "the marker change reaches the item service's read model", || async {
        rows(&sys, Svc::ITEM, "user")
            .await
            .iter()
            .any(|r| r.0 == other && r.4.as_deref().is_some_and(|k| k.contains("Marker")))
    })
    .await;
    let row = user_row(&sys, Svc::ITEM, id).await;
    assert_eq!(row.2, version, "the newer version stays");
    assert!(row.4.as_deref().is_some_and(|k| k.contains("Newer Name")), "the newer data stays: {row:?}");
    assert_eq!(sys.get(Svc::ITEM, "/", "late-token").await.status, 401, "the late event's token is not a login");
    assert_eq!(sys.get(Svc::ITEM, "/", &token).await.status, 200, "the user's token still is");
}
