//! Alarms loaded before capture existed (a dump restored into alarm_db, then the first start):
//! the capture migration writes no version row for them (at 10M alarms that took minutes), and
//! every reader takes such an alarm as version 0 until it first changes
//! (alarm/sql/functions/moa_alarm_rows.sql, moa_write_alarms.sql; docs/decisions.md).

use std::{collections::BTreeSet, time::Duration};

use e2e::{eventually, system, Seed, Svc, System};

/// How soon a service notices an owner's re-created database (`epochs::*`'s bound).
const RESTORE_NOTICED: Duration = Duration::from_secs(5);

const WITHIN: Duration = Duration::from_secs(10);

/// `(key, version, deleted)` of the alarm version rows, keys ascending.
async fn version_rows(sys: &System) -> Vec<(String, i64, bool)> {
    sys.sql(Svc::ALARM, "SELECT key, version, deleted FROM moa_entity_version WHERE entity = 'alarm' ORDER BY key")
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// `(key, version, deleted)` of what `moa_alarm_rows(prefixes)` answers, keys ascending.
async fn alarm_rows_of(sys: &System, prefixes: &[&str]) -> Vec<(String, i64, bool)> {
    let array = prefixes.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ");
    let q = format!("SELECT key, version, deleted FROM moa_alarm_rows(ARRAY[{array}]::text[]) ORDER BY key");
    sys.sql(Svc::ALARM, &q).await.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

async fn alarm_rows(sys: &System, prefix: &str) -> Vec<(String, i64, bool)> {
    alarm_rows_of(sys, &[prefix]).await
}

async fn item_list_alarms(sys: &System, token: &str) -> BTreeSet<i64> {
    sys.get(Svc::ITEM, "/", token).await.alarmed_ids().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_alarms_get_no_version_rows_at_the_first_start_and_read_and_change_as_version_0() {
    let mut sys = system!(Seed::Demo);
    let users = sys.users(2).await;
    let ((user, token), (other, other_token)) = (users[0].clone(), users[1].clone());

    // A dump with alarms, loaded into a database no service has migrated yet: the rows come
    // without version rows (as `scripts/up --reset` with a seedgen seed has them). One row
    // names no item: no reader lists it.
    sys.stop(Svc::ALARM);
    sys.recreate_db(Svc::ALARM, Seed::Demo).await;
    sys.sql(
        Svc::ALARM,
        &format!(
            "INSERT INTO alarm (id, item_id, user_id, created) VALUES
                 (1, 3, {user}, '2020-01-01'), (2, 5, {user}, '2020-01-02'), (3, 7, {user}, '2020-01-03'),
                 (4, 3, {other}, '2020-01-04'), (5, NULL, {other}, '2020-01-05')"
        ),
    )
    .await;
    sys.sql(Svc::ALARM, "SELECT setval('alarm_id_seq', 5)").await;
    sys.restart(Svc::ALARM).await;
    assert!(sys.log(Svc::ALARM).contains("applying migration 10"), "the capture migration ran at this start");
    assert_eq!(version_rows(&sys).await, vec![], "the first start wrote no version row for the loaded alarms");

    // Read as version 0, with no data (the key says it all): by the owner's own list (its
    // store's prefix read) and by the item service (an RPC to the owner, the same read).
    let key = |item: i64| format!("{user}:{item}");
    assert_eq!(
        alarm_rows(&sys, &format!("{user}:")).await,
        vec![(key(3), 0, false), (key(5), 0, false), (key(7), 0, false)]
    );
    let data: Option<serde_json::Value> = sys
        .sql(Svc::ALARM, &format!("SELECT data FROM moa_alarm_rows(ARRAY['{user}:']) WHERE key = '{}'", key(5)))
        .await[0]
        .get(0);
    assert_eq!(data, None, "an unversioned alarm has no data, its key says it all (no jsonb built per alarm)");
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![7, 5, 3]);
    assert_eq!(sys.get(Svc::ALARM, "/", &other_token).await.ids(), vec![3]);
    // The item service answers from the old state until it notices alarm_db's new epoch (its
    // epoch watch, every EPOCH_PROBE_MS: docs/failures.md, "within ~1-2 s"; the epochs tests'
    // bound, 5 s): then from the owner's rows, as version 0.
    eventually(RESTORE_NOTICED, "the item service noticed the re-created alarm_db", || async {
        item_list_alarms(&sys, &token).await == BTreeSet::from([3, 5, 7])
    })
    .await;
    assert_eq!(item_list_alarms(&sys, &other_token).await, BTreeSet::from([3]));
    // Any other prefix gets the version rows only (none here), and no cast error.
    let odd = [format!("0{user}:"), format!("+{user}:"), user.to_string()];
    for prefix in ["", "x:", "99999999999:", "-1:"].into_iter().chain(odd.iter().map(String::as_str)) {
        assert_eq!(alarm_rows(&sys, prefix).await, vec![], "prefix {prefix:?}");
    }
    // Several prefixes (the misses of many requests asked together): the union of their own
    // answers, each row once, whatever else is in the batch (odd prefixes, a prefix twice).
    let (mine, theirs) = (format!("{user}:"), format!("{other}:"));
    let together = alarm_rows_of(&sys, &[&theirs, "x:", &mine, &odd[0], &theirs]).await;
    let mut apart = [alarm_rows(&sys, &mine).await, alarm_rows(&sys, &theirs).await].concat();
    apart.sort();
    assert_eq!(together, apart);
    assert_eq!(together.len(), 4);

    // A set of an alarm already set changes nothing, and its answer is the version-0 row (both
    // paths of moa_write_alarms: distinct pairs, and a pair named twice).
    let answer = sys
        .sql(
            Svc::ALARM,
            &format!(
                "SELECT ord, key, version, deleted FROM moa_write_alarms(ARRAY[{user}]::int[], ARRAY[7]::int[],
                     ARRAY[true]::bool[], ARRAY['seed-1']::text[])"
            ),
        )
        .await;
    let answer: Vec<(i32, String, i64, bool)> =
        answer.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(answer, vec![(1, key(7), 0, false)]);
    let answer = sys
        .sql(
            Svc::ALARM,
            &format!(
                "SELECT ord, key, version, deleted FROM moa_write_alarms(ARRAY[{user}, {user}]::int[],
                     ARRAY[7, 7]::int[], ARRAY[true, true]::bool[], ARRAY['seed-2', 'seed-3']::text[])"
            ),
        )
        .await;
    let answer: Vec<(i32, String, i64, bool)> =
        answer.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(answer, vec![(1, key(7), 0, false), (2, key(7), 0, false)]);
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 3}"#).await.assert_empty(201);
    assert_eq!(version_rows(&sys).await, vec![], "setting an alarm already set changes nothing");
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![7, 5, 3]);

    // A clear writes a tombstone (version > 0), which beats the version-0 row everywhere.
    sys.delete(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#).await.assert_empty(200);
    let rows = version_rows(&sys).await;
    assert!(matches!(&rows[..], [(k, v, true)] if *k == key(5) && *v > 0), "one tombstone: {rows:?}");
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![7, 3]);
    eventually(WITHIN, "the item list shows the seed alarm cleared", || async {
        item_list_alarms(&sys, &token).await == BTreeSet::from([3, 7])
    })
    .await;
    let read = alarm_rows(&sys, &format!("{user}:")).await;
    assert_eq!(read.len(), 3, "the tombstone, and the two alarms still unversioned: {read:?}");

    // Set again: a new row with its own version.
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#).await.assert_empty(201);
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![7, 5, 3]);
    eventually(WITHIN, "the item list shows the alarm set again", || async {
        item_list_alarms(&sys, &token).await == BTreeSet::from([3, 5, 7])
    })
    .await;

    // An operator's change of a seed alarm goes through the capture trigger like any other.
    sys.sql(Svc::ALARM, &format!("DELETE FROM alarm WHERE user_id = {user} AND item_id = 7")).await;
    eventually(WITHIN, "the item list shows the operator's clear", || async {
        item_list_alarms(&sys, &token).await == BTreeSet::from([3, 5])
    })
    .await;
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![5, 3]);
    assert_eq!(
        alarm_rows(&sys, &format!("{user}:")).await.iter().map(|(k, v, d)| (k.clone(), *v > 0, *d)).collect::<Vec<_>>(),
        vec![(key(3), false, false), (key(5), true, false), (key(7), true, true)],
        "3 still unversioned, 5 set again, 7 a tombstone"
    );

    // A restarted alarm service (and its cache's hot copy) reads the same.
    sys.stop(Svc::ALARM);
    sys.restart(Svc::ALARM).await;
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![5, 3]);
    assert_eq!(sys.get(Svc::ALARM, "/", &other_token).await.ids(), vec![3]);
}
