//! Publisher identity (docs/security.md, "Who published a message"): every message carries its
//! publisher's login as `user_id`, which the broker checks; consumers apply a domain's messages
//! only from that domain's owner, the dead-letter replay re-publishes only what the named
//! exchange's owner published, `dead-letters` is bounded, and the RPC server answers only a
//! Direct Reply-to address, within size caps. Each forgery is tried with a real service login
//! against the real broker and services, and each ends with the forged token refused (401)
//! and the refusal visible (a dead letter with its reason, a counter, the broker's error).

use std::time::Duration;

use e2e::{eventually, mgmt, Seed, Svc, System};
use futures_util::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties,
};

use crate::privilege::{assert_refused, channel, publish, publish_with};

/// A `user` change event giving user 1 the token `token`, as the user service's relay sends it.
fn forged_user_event(token: &str) -> Vec<u8> {
    format!(
        r#"[{{"event_id":"forged-{token}","entity":"user","key":"1","version":9007199254740000,"deleted":false,"data":{{"id":1,"name":"forged","access_token":"{token}"}}}}]"#
    )
    .into_bytes()
}

/// The name of one of `svc`'s replica queues in `sys`.
fn replica_queue(sys: &System, svc: Svc) -> String {
    let queues = mgmt(sys.infra.mgmt_port, "GET", &format!("/api/queues/{}?columns=name", sys.name), None);
    let queues: serde_json::Value = serde_json::from_str(&queues).expect("queues JSON");
    let prefix = format!("{}.replica.", svc.name());
    queues
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .find(|n| n.starts_with(&prefix))
        .unwrap_or_else(|| panic!("a replica queue of the {} service", svc.name()))
        .to_string()
}

/// `token` is refused by `svc`: 401 (a 503 is "cannot tell yet": the owner did not answer in
/// time on a loaded machine, and is asked again), never 200.
pub async fn assert_unknown_token(sys: &System, svc: Svc, token: &str) {
    eventually(Duration::from_secs(15), &format!("{token} answered 401 by the {} service", svc.name()), || async {
        let status = sys.get(svc, "/", token).await.status;
        assert_ne!(status, 200, "the forged token {token} logged in at the {} service", svc.name());
        status == 401
    })
    .await;
}

fn login(svc: Svc) -> String {
    format!("{}-service", svc.name())
}

fn stamped(svc: Svc) -> BasicProperties {
    BasicProperties::default().with_user_id(login(svc).as_str().into())
}

fn dead_letter_headers(exchange: &str, queue: &str) -> FieldTable {
    let mut h = FieldTable::default();
    h.insert("x-first-death-exchange".into(), AMQPValue::LongString(exchange.into()));
    h.insert("x-first-death-queue".into(), AMQPValue::LongString(queue.into()));
    h.insert("x-first-death-reason".into(), AMQPValue::LongString("rejected".into()));
    h
}

/// The issue's forgery: a `user.events` change with a token of the forger's choosing, planted in
/// `dead-letters` with alarm-service's login and replayed as the operations doc says. The
/// replay re-publishes only what `user.events`' owner published, so it stays a dead letter
/// with the reason, and the token never logs in. (That the owner's own dead letters are
/// replayed is `outages::dead_lettered_views_are_put_back_by_scripts_dead_letters_replay`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_event_planted_in_dead_letters_is_not_replayed_and_its_token_stays_unknown() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let item_replica = replica_queue(&sys, Svc::ITEM);
    let headers = dead_letter_headers("user.events", &item_replica);
    // With the forger's own user_id (the only one the broker lets it set), and with none.
    publish_with(
        &sys,
        Svc::ALARM,
        "dead-letters",
        "",
        &forged_user_event("forged-a"),
        stamped(Svc::ALARM).with_headers(headers.clone()),
    )
    .await
    .expect("every service may dead-letter");
    publish_with(
        &sys,
        Svc::ALARM,
        "",
        "dead-letters",
        &forged_user_event("forged-b"),
        BasicProperties::default().with_headers(headers),
    )
    .await
    .expect("the default exchange takes it");
    eventually(Duration::from_secs(10), "2 dead letters", || async { sys.dead_letters_now().await == 2 }).await;

    let out = sys.dead_letters_script(&["replay"]);
    assert!(out.starts_with("replayed 0 message(s), left 2 in dead-letters (2 not their exchange's owner's"), "{out}");
    let listed = sys.dead_letters_script(&["list"]);
    assert!(
        listed.contains("by 'alarm-service' [x-moa-refused: replay: published by 'alarm-service', not by 'user-service', the owner of user.events]"),
        "{listed}"
    );
    assert!(listed.contains("by None [x-moa-refused: replay: published by None, not by 'user-service'"), "{listed}");
    // Replayed again: still refused, still two (the reason is kept, not stacked).
    let again = sys.dead_letters_script(&["replay"]);
    assert!(again.starts_with("replayed 0 message(s), left 2"), "{again}");
    for token in ["forged-a", "forged-b"] {
        for svc in [Svc::ITEM, Svc::ALARM] {
            assert_unknown_token(&sys, svc, token).await;
        }
    }
}

/// The broker's half: a login may not publish to another domain's exchange, nor name another
/// login as `user_id`, not even on its own exchange or into `dead-letters`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_refuses_another_services_exchange_and_a_forged_user_id() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let forged = forged_user_event("forged-direct");
    assert_refused(
        "alarm-service publishing to user.events",
        publish(&sys, Svc::ALARM, "user.events", "", &forged).await,
    );
    for (exchange, key) in [("alarm.events", ""), ("dead-letters", ""), ("", "user.rpc")] {
        let outcome = publish_with(&sys, Svc::ALARM, exchange, key, &forged, stamped(Svc::USER)).await;
        let err = outcome.expect_err("a user_id that is not the login must be refused");
        assert!(err.contains("PRECONDITION_FAILED") && err.contains("user_id"), "{exchange:?}: {err}");
    }
    // Its own exchange with its own login, carrying another domain's entity: the replicas
    // dead-letter it (a `user` event speaks for user-service only), and apply nothing of it.
    publish(&sys, Svc::ALARM, "alarm.events", "", &forged).await.expect("alarm-service publishes alarm.events");
    eventually(Duration::from_secs(10), "the three services' replicas dead-letter it", || async {
        sys.dead_letters_now().await == 3
    })
    .await;
    for svc in [Svc::ITEM, Svc::ALARM] {
        assert_unknown_token(&sys, svc, "forged-direct").await;
    }
}

/// A view put straight into `user.views` by alarm-service's login (the default exchange reaches
/// any queue by name) is refused and dead-lettered with its reason; a view without the item
/// service's user_id, though through `item.views` (the operator publishing), is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_not_published_by_the_item_service_is_refused_and_dead_lettered_with_the_reason() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let users = sys.users(1).await;
    let (user, token) = &users[0];
    let view = format!(
        r#"{{"event_id":"0b6f6c1e-8a47-4f0e-9d1a-2f4c7f1e9a01","user_id":{user},"item_id":3,"viewed_at_us":1700000000000000,"seq":1}}"#
    );
    publish(&sys, Svc::ALARM, "", "user.views", view.as_bytes()).await.expect("the default exchange takes it");
    let body = serde_json::json!({"properties": {}, "routing_key": "", "payload": view, "payload_encoding": "string"});
    mgmt(
        sys.infra.mgmt_port,
        "POST",
        &format!("/api/exchanges/{}/item.views/publish", sys.name),
        Some(&body.to_string()),
    );
    eventually(Duration::from_secs(10), "both are refused", || async {
        sys.counter_sum(Svc::USER, "moa_amqp_refused_total", "consumer=\"view recorder\"").await == 2.0
    })
    .await;
    assert_eq!(sys.counter_sum(Svc::USER, "moa_amqp_refused_total", "reason=\"exchange\"").await, 1.0);
    assert_eq!(sys.counter_sum(Svc::USER, "moa_amqp_refused_total", "reason=\"publisher\"").await, 1.0);
    eventually(Duration::from_secs(10), "both are dead-lettered", || async { sys.dead_letters_now().await == 2 }).await;
    let listed = sys.dead_letters_script(&["list"]);
    assert!(
        listed.contains("published by 'alarm-service' [x-moa-refused: came through \"\", not item.views]"),
        "{listed}"
    );
    assert!(listed.contains("published by '-' [x-moa-refused: item.views message without a user_id"), "{listed}");
    assert!(sys.get(Svc::USER, "/visit", token).await.ids().is_empty(), "a forged view was stored");
    // Refused dead letters are never replayed, whoever refused them.
    let out = sys.dead_letters_script(&["replay"]);
    assert!(out.starts_with("replayed 0 message(s), left 2"), "{out}");
}

/// An RPC question as `svc`: its answer (a JSON object), or None when none comes within 5 s.
async fn ask(sys: &System, svc: Svc, owner: &str, question: &serde_json::Value) -> Option<serde_json::Value> {
    let (conn, ch) = channel(sys, svc).await;
    let reply_to = "amq.rabbitmq.reply-to";
    let opts = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut replies =
        ch.basic_consume(reply_to.into(), "ask".into(), opts, FieldTable::default()).await.expect("reply-to");
    let props = stamped(svc).with_reply_to(reply_to.into()).with_correlation_id("q-1".into());
    let body = question.to_string();
    let queue = format!("{owner}.rpc");
    ch.basic_publish("".into(), queue.as_str().into(), BasicPublishOptions::default(), body.as_bytes(), props)
        .await
        .expect("the question is published");
    let answer = tokio::time::timeout(Duration::from_secs(5), replies.next()).await.ok().flatten().map(|d| {
        let d = d.expect("a reply");
        assert_eq!(d.properties.user_id().as_ref().map(|u| u.as_str()), Some(login_of(owner)).as_deref());
        serde_json::from_slice(&d.data).expect("a JSON answer")
    });
    let _ = conn.close(200, "done".into()).await;
    answer
}

fn login_of(owner: &str) -> String {
    format!("{owner}-service")
}

/// A question whose reply address is a queue rather than Direct Reply-to would have the owner
/// publish its answer (tokens) wherever the asker chose: the owner does not answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_server_answers_only_a_direct_reply_to_address() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let (conn, ch) = channel(&sys, Svc::ALARM).await;
    let drop_box = "alarm.replica.drop-box";
    let opts = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    ch.queue_declare(drop_box.into(), opts, FieldTable::default()).await.expect("alarm-service declares its own queue");
    let question = serde_json::json!({"method": "snapshot", "entity": "user", "after": null, "limit": 10});
    let props = stamped(Svc::ALARM).with_reply_to(drop_box.into()).with_correlation_id("q-1".into());
    ch.basic_publish(
        "".into(),
        "user.rpc".into(),
        BasicPublishOptions::default(),
        question.to_string().as_bytes(),
        props,
    )
    .await
    .expect("the question is published");
    eventually(Duration::from_secs(10), "the user service refuses the question", || async {
        sys.counter_sum(Svc::USER, "moa_amqp_refused_total", "reason=\"reply_to\"").await == 1.0
    })
    .await;
    let depth = ch
        .queue_declare(
            drop_box.into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("the drop box")
        .message_count();
    assert_eq!(depth, 0, "the owner answered into a queue of the asker's choosing");
    let _ = conn.close(200, "done".into()).await;
    // The same question with Direct Reply-to is answered.
    let answer = ask(&sys, Svc::ALARM, "user", &question).await.expect("an answer");
    assert_eq!(answer["ok"], true, "{answer}");
}

/// Questions past the caps (a page, a key list, a digest width, an empty prefix) get an error
/// answer at once, counted; a page within them, as the backfills ask, is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_rpc_question_gets_an_error_answer_and_pages_within_the_cap_are_answered() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let many: Vec<String> = (0..10_001).map(|i| format!("t{i}")).collect();
    let oversized = [
        serde_json::json!({"method": "snapshot", "entity": "user", "after": null, "limit": 100_001}),
        serde_json::json!({"method": "lookup", "entity": "user", "keys": many}),
        serde_json::json!({"method": "prefix", "entity": "user", "prefixes": [""]}),
        serde_json::json!({"method": "digest", "entity": "user", "width": 1}),
        serde_json::json!({"method": "buckets", "entity": "user", "width": 1024, "buckets": [0], "after": 0, "limit": 1_000_000}),
    ];
    for (i, question) in oversized.iter().enumerate() {
        let answer = ask(&sys, Svc::ALARM, "user", question).await.expect("an answer");
        assert_eq!(answer["ok"], false, "{question}: {answer}");
        assert!(answer["error"].as_str().unwrap_or_default().starts_with("question too large"), "{answer}");
        assert_eq!(
            sys.counter_sum(Svc::USER, "moa_amqp_refused_total", "reason=\"oversized\"").await,
            (i + 1) as f64,
            "{question}"
        );
    }
    // Keyset pages within the cap: the second starts after the first's last key.
    let page = |after: serde_json::Value| serde_json::json!({"method": "snapshot", "entity": "user", "after": after, "limit": 2});
    let first = ask(&sys, Svc::ALARM, "user", &page(serde_json::Value::Null)).await.expect("a first page");
    let rows = first["rows"].as_array().expect("rows").clone();
    assert_eq!(rows.len(), 2, "{first}");
    let second = ask(&sys, Svc::ALARM, "user", &page(rows[1]["key"].clone())).await.expect("a second page");
    assert_eq!(second["ok"], true, "{second}");
    assert_ne!(second["rows"][0]["key"], rows[0]["key"]);
}

/// `dead-letters` is bounded (rabbitmq/definitions.json.in: max-length, reject-publish); past its
/// bound the broker nacks, and the service whose refusal could not be dead-lettered counts it.
/// The bound is lowered here by a policy of higher priority, with the same overflow behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_refuse_messages_past_their_bound_and_the_refusing_service_counts_it() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let queue_path = format!("/api/queues/{}/dead-letters", sys.name);
    let effective = |key: &'static str| {
        let q: serde_json::Value =
            serde_json::from_str(&mgmt(sys.infra.mgmt_port, "GET", &queue_path, None)).expect("queue");
        q["effective_policy_definition"][key].clone()
    };
    eventually(Duration::from_secs(15), "the definitions' bound applies to dead-letters", || async {
        effective("overflow") == "reject-publish" && effective("max-length") == 100_000
    })
    .await;
    let policy = format!("/api/policies/{}/dead-letters-small", sys.name);
    let small = r#"{"pattern": "^dead-letters$", "definition": {"max-length": 2, "overflow": "reject-publish"}, "apply-to": "queues", "priority": 9}"#;
    mgmt(sys.infra.mgmt_port, "PUT", &policy, Some(small));
    eventually(Duration::from_secs(15), "the lowered bound applies", || async { effective("max-length") == 2 }).await;
    let item_replica = replica_queue(&sys, Svc::ITEM);
    let forgeries = 6;
    for n in 0..forgeries {
        publish(&sys, Svc::ALARM, "", &item_replica, &forged_user_event(&format!("overflow-{n}")))
            .await
            .expect("the default exchange takes it");
    }
    eventually(Duration::from_secs(20), "the item service refused every forgery", || async {
        sys.counter_sum(Svc::ITEM, "moa_amqp_refused_total", "").await == forgeries as f64
    })
    .await;
    // A quorum queue enforces its bound once it has reached it (a publish racing that may
    // still go in): what matters is that past the bound refusals are nacked, and counted by
    // the service that could not dead-letter them, which drops them.
    let kept = sys.dead_letters_now().await;
    let not_taken = sys.counter_sum(Svc::ITEM, "moa_dead_letters_refused_total", "").await;
    assert!(not_taken >= 1.0, "dead-letters took all {forgeries} refusals past a bound of 2 ({kept} kept)");
    assert_eq!(kept as f64 + not_taken, forgeries as f64, "each refusal is kept, or counted as not taken");
    assert_unknown_token(&sys, Svc::ITEM, "overflow-5").await;
    mgmt(sys.infra.mgmt_port, "DELETE", &policy, None);
}
