//! Tokens stay with their owner (docs/security.md, "Tokens"): the user service sends a user's
//! token only as its keyed hash, in change events and RPC answers alike, so no other service's
//! database (read model, cache hot copy, anything else) ever holds one; and the user list can
//! leave tokens out (`USER_LIST_TOKENS=0`).

use std::time::Duration;

use e2e::{eventually, mgmt, Svc, System};
use lapin::{
    options::{BasicConsumeOptions, BasicPublishOptions},
    types::FieldTable,
    BasicProperties, Connection, ConnectionProperties,
};

/// Users the services have both looked up (cache, hot copy) and copied (read model).
const SEED: e2e::Seed = e2e::Seed::Generated { users: 200, alarms: 400 };

/// How many (table, token) pairs of `svc`'s database hold one of `tokens` in any column of
/// any row: every table of its schema, read as text.
async fn rows_holding(sys: &System, svc: Svc, tokens: &[String]) -> Vec<String> {
    let tables: Vec<String> = sys
        .sql(svc, "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() > 3, "{} has its tables: {tables:?}", svc.name());
    let list = tokens.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(",");
    let mut found = Vec::new();
    for table in tables {
        let n: i64 = sys
            .sql(
                svc,
                &format!(
                    "SELECT count(*) FROM {table} t, unnest(ARRAY[{list}]::text[]) k WHERE strpos(t::text, k) > 0"
                ),
            )
            .await[0]
            .get(0);
        if n > 0 {
            found.push(format!("{table}: {n}"));
        }
    }
    found
}

async fn read_models_complete(sys: &System, svc: Svc) -> bool {
    let r = sys.request(e2e::Method::GET, sys.port(svc), "/ready", None, None).await;
    r.json["checks"]["read_models"]["user"] == "complete"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_another_services_database() {
    let sys = e2e::system!(SEED);
    let users = sys.users(50).await;
    // Every user looked up by the item and the alarm service: cached.
    for (_, token) in &users {
        assert_eq!(sys.get(Svc::ITEM, "/", token).await.status, 200);
        assert_eq!(sys.get(Svc::ALARM, "/", token).await.status, 200);
    }
    // A token changed after the read models were built travels as an event.
    sys.sql(Svc::USER, &format!("UPDATE \"user\" SET access_token = 'rotated-{0}' WHERE id = {0}", users[0].0)).await;
    let rotated = format!("rotated-{}", users[0].0);
    eventually(Duration::from_secs(10), "the rotated token works at the item service", || async {
        sys.get(Svc::ITEM, "/", &rotated).await.status == 200
    })
    .await;
    for svc in [Svc::ITEM, Svc::ALARM] {
        eventually(Duration::from_secs(60), &format!("{}'s user read model complete", svc.name()), || async {
            read_models_complete(&sys, svc).await
        })
        .await;
    }
    // With a read model the caches keep no hot copy (every user is on disk already): what the
    // services hold of users is the read model, searched below with every other table.
    for svc in [Svc::ITEM, Svc::ALARM] {
        let n: i64 = sys.sql(svc, "SELECT count(*) FROM moa_cache_entry WHERE cache = 'user'").await[0].get(0);
        assert_eq!(n, 0, "{}'s user cache has a read model and keeps no hot copy", svc.name());
    }

    let all: Vec<String> =
        sys.sql(Svc::USER, "SELECT access_token FROM \"user\" ORDER BY id").await.iter().map(|r| r.get(0)).collect();
    // The search can find a token: user_db holds them all.
    assert!(!rows_holding(&sys, Svc::USER, &all).await.is_empty(), "the owner's tables hold the tokens");
    for svc in [Svc::ITEM, Svc::ALARM] {
        let found = rows_holding(&sys, svc, &all).await;
        assert!(found.is_empty(), "{} holds tokens: {found:?}", svc.name());
        // What they hold instead: each user's hash, which the services find them by.
        let hashes: i64 = sys
            .sql(
                svc,
                &format!(
                    "SELECT count(*) FROM moa_read_model WHERE kind = 'user' AND lookup = '{}'",
                    e2e::token_hash(&rotated)
                ),
            )
            .await[0]
            .get(0);
        assert_eq!(hashes, 1, "{}'s read model finds the rotated user by its token's hash", svc.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_rpc_answers_carry_the_hash_not_the_token() {
    let sys = e2e::system!(e2e::Seed::Demo);
    let (id, token) = sys.users(1).await.remove(0);
    let vhost = &sys.name;
    let port = sys.infra.mgmt_port;

    // A queue of our own on user.events, then a change of this user.
    let q = "tokens-test.user-events";
    mgmt(port, "PUT", &format!("/api/queues/{vhost}/{q}"), Some(r#"{"durable":false,"auto_delete":false}"#));
    mgmt(port, "POST", &format!("/api/bindings/{vhost}/e/user.events/q/{q}"), Some(r#"{"routing_key":""}"#));
    sys.sql(Svc::USER, &format!("UPDATE \"user\" SET name = 'renamed' WHERE id = {id}")).await;
    let mut body = String::new();
    eventually(Duration::from_secs(10), "the change is published", || {
        body = mgmt(
            port,
            "POST",
            &format!("/api/queues/{vhost}/{q}/get"),
            Some(r#"{"count":10,"ackmode":"ack_requeue_false","encoding":"auto"}"#),
        );
        let seen = body.contains("renamed");
        async move { seen }
    })
    .await;
    assert!(body.contains(&e2e::token_hash(&token)), "the event carries the token's hash: {body}");
    assert!(!body.contains(&token), "the event carries the token: {body}");
    assert!(!body.contains("access_token"), "the event has an access_token field: {body}");

    // An RPC question by token, as the item service asks it (its login, Direct Reply-to):
    // the answer carries the hash.
    let conn = Connection::connect(&sys.service_amqp_url(Svc::ITEM), ConnectionProperties::default())
        .await
        .expect("the broker");
    let ch = conn.create_channel().await.expect("a channel");
    let mut replies = ch
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "tokens-test".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("consume replies");
    let question = serde_json::json!({"method": "lookup", "entity": "user", "keys": [token]}).to_string();
    ch.basic_publish(
        "".into(),
        "user.rpc".into(),
        BasicPublishOptions::default(),
        question.as_bytes(),
        BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id("tokens-test-1".into()),
    )
    .await
    .expect("the question is sent");
    let reply = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut replies))
        .await
        .expect("the user service answers")
        .expect("a reply")
        .expect("a delivery");
    let reply = String::from_utf8_lossy(&reply.data).to_string();
    assert!(reply.contains(&e2e::token_hash(&token)), "the answer carries the token's hash: {reply}");
    assert!(reply.contains(&format!("\"id\":{id}")), "the answer is this user: {reply}");
    assert!(!reply.contains(&token), "the answer carries the token: {reply}");
    mgmt(port, "DELETE", &format!("/api/queues/{vhost}/{q}"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_list_can_leave_tokens_out() {
    let Some(sys) = System::start_with(e2e::Seed::Demo, &[("USER_LIST_TOKENS", "0")]).await else {
        unreachable!("the demo seed is part of the repository")
    };
    let (id, token) = sys.users(1).await.remove(0);
    let r = sys.get(Svc::USER, "/", &token).await;
    assert_eq!(r.status, 200);
    let payload = r.json["payload"].as_array().expect("a list");
    assert_eq!(payload.len() as i64, r.json["count"].as_i64().expect("a count"));
    let listed = payload.iter().find(|u| u["id"] == id).expect("the user is listed");
    assert!(listed.get("name").is_some());
    assert!(listed.get("access_token").is_none(), "{listed}");
    assert!(!r.text.contains(&token), "the list shows a token");
}

/// A service started with another `TOKEN_HASH_KEY` than the others would find no token in its
/// read model and answer every user 401. It learns the other key's id from the first RPC
/// answer (`x-moa-token-key`), and says so instead: `/ready` is 503 naming the key, a request
/// is a 503 naming it, and the error is logged. Started again with the right key, it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_with_another_token_key_says_so_instead_of_answering_401() {
    let mut sys = e2e::system!(e2e::Seed::Demo);
    let (_, token) = sys.users(1).await.remove(0);
    assert_eq!(sys.get(Svc::ITEM, "/1", &token).await.status, 200);
    sys.kill(Svc::ITEM);
    let port = sys.spawn_env(Svc::ITEM, None, &[("TOKEN_HASH_KEY", "a-key-nobody-else-has")]);
    e2e::eventually(Duration::from_secs(30), "/ready names the other key", || async {
        // Not listening yet at first: a refused connection is "not yet".
        let Ok(r) = sys.http.get(format!("http://127.0.0.1:{port}/ready")).send().await else { return false };
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        status == 503 && body["checks"]["token_key"].as_str().is_some_and(|s| s.contains("user-service"))
    })
    .await;
    let r = sys.request(e2e::Method::GET, port, "/1", Some(&token), None).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.text.contains("TOKEN_HASH_KEY"), "the answer names the cause: {}", r.text);
    assert!(sys.log(Svc::ITEM).contains("another TOKEN_HASH_KEY"), "the mismatch is logged");
    sys.kill(Svc::ITEM);
    let port = sys.spawn(Svc::ITEM, None);
    sys.wait_ready_port(Svc::ITEM, port).await;
    let r = sys.request(e2e::Method::GET, port, "/1", Some(&token), None).await;
    assert_eq!(r.status, 200, "with the deployment's key: {r:?}");
}
