//! The user list is streamed from user_db page by page (`user/src/list.rs`): byte for byte
//! what the contract's body is, over several pages, and what user_db holds at the moment of
//! the request (a user added or deleted with psql shows at once, not when the event arrives).

use e2e::{Seed, Svc, System};

/// The contract's body for these users, as serializing the whole list at once writes it.
fn expected_body(users: &[(i64, String, String)]) -> String {
    let entries: Vec<String> = users
        .iter()
        .map(|(id, name, token)| {
            format!(
                r#"{{"id":{id},"name":{},"access_token":{}}}"#,
                serde_json::to_string(name).unwrap(),
                serde_json::to_string(token).unwrap()
            )
        })
        .collect();
    format!(r#"{{"count":{},"payload":[{}]}}"#, users.len(), entries.join(","))
}

async fn users_in_db(sys: &System) -> Vec<(i64, String, String)> {
    sys.sql(Svc::USER, r#"SELECT id, name, access_token FROM "user" ORDER BY id DESC"#)
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_list_is_what_user_db_holds_byte_for_byte_over_several_pages() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let token = sys.token().await;
    // More users than three pages of 2,000, with names JSON must escape, added and one seed
    // user deleted by an operator: the list shows both at once (it reads user_db).
    sys.sql(
        Svc::USER,
        r#"INSERT INTO "user" (id, name, access_token)
           SELECT g, '이름 "' || g || E'"\\\t', 'token-' || g FROM generate_series(1000, 7499) g"#,
    )
    .await;
    sys.sql(Svc::USER, r#"DELETE FROM "user" WHERE id = 7"#).await;
    let users = users_in_db(&sys).await;
    assert_eq!(users.len(), 50 - 1 + 6500);
    let r = sys.get(Svc::USER, "/", &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json; charset=utf-8");
    assert!(r.text == expected_body(&users), "the streamed body is not the list user_db holds");
    // A page of the list that spans pages of the stream, and pages past the end.
    for (limit, offset) in [(2500, 1000), (3, 6540), (10, 6549), (10, 9000), (0, 0)] {
        let r = sys.get(Svc::USER, &format!("/?limit={limit}&offset={offset}"), &token).await;
        let end = (offset + limit).min(users.len());
        let want = expected_body(&users[offset.min(end)..end]);
        assert!(r.text == want, "?limit={limit}&offset={offset}: {:.200}", r.text);
    }
    // The deleted user and a new one, at once: no replica in between.
    sys.sql(Svc::USER, r#"INSERT INTO "user" (id, name, access_token) VALUES (9000, '새 사용자', 'new-token')"#).await;
    sys.sql(Svc::USER, r#"DELETE FROM "user" WHERE id = 1000"#).await;
    let r = sys.get(Svc::USER, "/", &token).await;
    assert!(r.text == expected_body(&users_in_db(&sys).await), "a change made with psql shows at once");
    assert_eq!(r.ids()[0], 9000);

    // Clients that go away after the first bytes leave no stream (nor its connection) behind:
    // more of them than lists may stream at once (a slot held by a dead stream would make
    // the next list wait DB_TIMEOUT_MS and answer 503), then a whole list is still answered.
    for _ in 0..24 {
        let url = format!("http://127.0.0.1:{}/", sys.port(Svc::USER));
        let response = sys.http.get(url).header("USER-TOKEN", &token).send().await.expect("request sent");
        if response.status() != 200 {
            panic!(
                "a list opened after abandoned ones: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        drop(response);
    }
    let r = sys.get(Svc::USER, "/", &token).await;
    assert_eq!(r.ids().len(), users.len(), "{:.200}", r.text);
}
