//! The alarm write path under concurrency: coalesced set-based batches
//! (alarm migration 12, `moa_write_alarms`) and the delete-on-publish outbox (common 0003).

use std::{collections::BTreeSet, time::Duration};

use e2e::{eventually, system, Seed, Svc, System};
use futures_util::future::join_all;

const WITHIN: Duration = Duration::from_secs(5);

/// One write: (user id, item id, set, request id).
type Write<'a> = (i64, i64, bool, &'a str);

/// (ord, key, version, deleted) of what `moa_write_alarms` answers for a batch.
async fn write_batch(sys: &System, batch: &[Write<'_>]) -> Vec<(i32, String, i64, bool)> {
    let list = |f: &dyn Fn(&Write) -> String| batch.iter().map(f).collect::<Vec<_>>().join(",");
    let sql = format!(
        "SELECT ord, key, version, deleted FROM moa_write_alarms(ARRAY[{}]::int[], ARRAY[{}]::int[], ARRAY[{}]::bool[], ARRAY[{}]::text[])",
        list(&|w| w.0.to_string()),
        list(&|w| w.1.to_string()),
        list(&|w| w.2.to_string()),
        list(&|w| format!("'{}'", w.3)),
    );
    sys.sql(Svc::ALARM, &sql).await.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
}

/// (key, version, deleted, request_id) of every queued change event, in outbox order.
async fn outbox(sys: &System) -> Vec<(String, i64, bool, Option<String>)> {
    sys.sql(
        Svc::ALARM,
        "SELECT payload->>'key', (payload->>'version')::bigint, (payload->>'deleted')::bool, request_id
         FROM moa_outbox ORDER BY id",
    )
    .await
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_records_each_change_once_with_its_own_request_id_and_the_replicas_follow() {
    let mut sys = system!(Seed::Demo);
    let (user, token) = sys.users(1).await.remove(0);
    let key = |item: i64| format!("{user}:{item}");
    // Without the alarm service its relay does not drain the outbox, so what the writes
    // queued can be read. Alarms 3 and 5 exist before, set by an operator in psql.
    sys.stop(Svc::ALARM);
    sys.sql(
        Svc::ALARM,
        &format!("INSERT INTO alarm (item_id, user_id, created) VALUES (3, {user}, now()), (5, {user}, now())"),
    )
    .await;
    let by_operator = outbox(&sys).await;
    assert_eq!(
        by_operator.iter().map(|e| (e.0.clone(), e.2, e.3.clone())).collect::<Vec<_>>(),
        vec![(key(3), false, None), (key(5), false, None)],
        "the capture trigger records an operator's change"
    );

    // Distinct pairs: the set-based path. Set two new, clear one, clear one never set, set one
    // already set: three changes, in request order.
    let answers = write_batch(
        &sys,
        &[
            (user, 1, true, "r1"),
            (user, 2, true, ""),
            (user, 3, false, "r3"),
            (user, 4, false, "r4"),
            (user, 5, true, "r5"),
        ],
    )
    .await;
    let shape: Vec<(i32, String, bool)> = answers.iter().map(|a| (a.0, a.1.clone(), a.3)).collect();
    assert_eq!(
        shape,
        vec![(1, key(1), false), (2, key(2), false), (3, key(3), true), (5, key(5), false)],
        "one answer per request that names an existing row (item 4 never had an alarm)"
    );
    let events: Vec<_> = outbox(&sys).await.into_iter().skip(by_operator.len()).collect();
    assert_eq!(
        events,
        vec![
            (key(1), answers[0].2, false, Some("r1".into())),
            (key(2), answers[1].2, false, Some("-".into())),
            (key(3), answers[2].2, true, Some("r3".into())),
        ],
        "one event per change (none for the no-ops, none twice from the trigger), each with its request's id"
    );
    assert!(answers[0].2 < answers[1].2 && answers[1].2 < answers[2].2, "versions follow the requests: {answers:?}");
    assert_eq!(answers[3].2, by_operator[1].1, "a set on a set alarm changes nothing");

    // One pair twice or more: run request by request, each answer the state after it.
    let before = outbox(&sys).await.len();
    let answers = write_batch(&sys, &[(user, 6, true, "a"), (user, 6, false, "b"), (user, 6, true, "c")]).await;
    assert_eq!(answers.iter().map(|a| (a.0, a.3)).collect::<Vec<_>>(), vec![(1, false), (2, true), (3, false)]);
    let events: Vec<_> = outbox(&sys).await.into_iter().skip(before).collect();
    assert_eq!(
        events.iter().map(|e| (e.1, e.3.clone())).collect::<Vec<_>>(),
        answers.iter().zip(["a", "b", "c"]).map(|(a, r)| (a.2, Some(r.to_string()))).collect::<Vec<_>>()
    );
    let left = sys
        .sql(Svc::ALARM, &format!("SELECT item_id FROM alarm WHERE user_id = {user} ORDER BY item_id"))
        .await
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect::<Vec<_>>();
    assert_eq!(left, vec![1, 2, 5, 6]);

    // The relay publishes the backlog and deletes it; the replicas end where the table is.
    sys.restart(Svc::ALARM).await;
    eventually(WITHIN, "the outbox is drained and emptied", || async { outbox(&sys).await.is_empty() }).await;
    eventually(WITHIN, "the item list shows the batch's alarms", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids().into_iter().collect::<BTreeSet<_>>()
            == BTreeSet::from([1, 2, 5, 6])
    })
    .await;
}

/// Sends every (port, token, item) alarm write at once; the answers in the same order.
async fn all_at_once(
    sys: &System,
    method: e2e::Method,
    writes: impl Iterator<Item = (u16, String, i64)>,
) -> Vec<e2e::Resp> {
    join_all(writes.map(|(port, token, item)| {
        let method = method.clone();
        async move {
            let body = format!(r#"{{"item_id": {item}}}"#);
            sys.request(method, port, "/", Some(&token), Some(&body)).await
        }
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_from_two_alarm_instances_each_get_their_answer_and_all_converge() {
    let mut sys = system!(Seed::Demo);
    // Two instances: two coalescers and two relays sharing one outbox (FOR UPDATE SKIP LOCKED).
    let second = sys.spawn(Svc::ALARM, None);
    sys.wait_ready_port(Svc::ALARM, second).await;
    let ports = sys.ports(Svc::ALARM);
    let users = sys.users(5).await;
    let items: Vec<i64> = (1..=12).collect();

    // Every pair set at once, a third of them twice (so batches also hold one pair twice).
    let sets = users.iter().enumerate().flat_map(|(u, (_, token))| {
        let ports = &ports;
        items.iter().flat_map(move |&item| {
            let times = if item % 3 == 0 { 2 } else { 1 };
            (0..times).map(move |k| (ports[(u + item as usize + k) % ports.len()], token.clone(), item))
        })
    });
    let answers = all_at_once(&sys, e2e::Method::POST, sets).await;
    assert_eq!(answers.len(), 5 * (12 + 4));
    for a in &answers {
        a.assert_empty(201);
    }
    // Then the even items cleared at once, twice each.
    let clears = users.iter().enumerate().flat_map(|(u, (_, token))| {
        let ports = &ports;
        items
            .iter()
            .filter(|i| *i % 2 == 0)
            .flat_map(move |&item| (0..2).map(move |k| (ports[(u + k) % ports.len()], token.clone(), item)))
    });
    let answers = all_at_once(&sys, e2e::Method::DELETE, clears).await;
    assert_eq!(answers.len(), 5 * 6 * 2);
    for a in &answers {
        a.assert_empty(200);
    }

    let odd: BTreeSet<i64> = items.iter().copied().filter(|i| i % 2 == 1).collect();
    for (user, token) in &users {
        let rows = sys.sql(Svc::ALARM, &format!("SELECT item_id FROM alarm WHERE user_id = {user}")).await;
        let stored: BTreeSet<i64> = rows.iter().map(|r| r.get::<_, i32>(0) as i64).collect();
        assert_eq!(stored, odd, "user {user}: one row per alarm left");
        for port in &ports {
            let listed: BTreeSet<i64> =
                sys.request(e2e::Method::GET, *port, "/", Some(token), None).await.ids().into_iter().collect();
            assert_eq!(listed, odd, "user {user}: alarm instance :{port} lists what is stored");
        }
        eventually(WITHIN, &format!("user {user}: the item list shows the odd items"), || async {
            sys.get(Svc::ITEM, "/", token).await.alarmed_ids().into_iter().collect::<BTreeSet<_>>() == odd
        })
        .await;
    }
    eventually(WITHIN, "both relays leave the outbox empty", || async { outbox(&sys).await.is_empty() }).await;
    let versions = sys
        .sql(
            Svc::ALARM,
            "SELECT count(*) FILTER (WHERE NOT v.deleted) FROM moa_entity_version v WHERE v.entity = 'alarm'
               AND NOT EXISTS (SELECT 1 FROM alarm a WHERE a.user_id::text || ':' || a.item_id::text = v.key)",
        )
        .await;
    assert_eq!(versions[0].get::<_, i64>(0), 0, "no live version row without its alarm");
}
