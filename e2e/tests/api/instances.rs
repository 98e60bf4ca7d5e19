//! Several instances of a service: per-instance replica queues, a shared views queue.

use std::time::Duration;

use e2e::{eventually, system, Seed, Svc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_item_instances_both_reflect_an_alarm_change() {
    let mut sys = system!(Seed::Demo);
    let second = sys.spawn(Svc::Item, None);
    sys.wait_ready_port(Svc::Item, second).await;
    let token = sys.token().await;
    sys.post(Svc::Alarm, "/", &token, r#"{"item_id": 5}"#).await.assert_empty(201);
    for port in sys.ports(Svc::Item) {
        eventually(Duration::from_secs(1), &format!("item instance :{port} shows the alarm"), || async {
            let r = sys.request(e2e::Method::GET, port, "/", Some(&token), None).await;
            r.alarmed_ids() == vec![5]
        })
        .await;
    }
    sys.delete(Svc::Alarm, "/", &token, r#"{"item_id": 5}"#).await.assert_empty(200);
    for port in sys.ports(Svc::Item) {
        eventually(Duration::from_secs(1), &format!("item instance :{port} shows it cleared"), || async {
            let r = sys.request(e2e::Method::GET, port, "/", Some(&token), None).await;
            r.alarmed_ids().is_empty()
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_user_instances_share_the_views_without_storing_one_twice() {
    let mut sys = system!(Seed::Demo);
    let second = sys.spawn(Svc::User, None);
    sys.wait_ready_port(Svc::User, second).await;
    let users = sys.users(5).await;
    let mut sent = 0i64;
    for (_, token) in &users {
        for id in 1..=8 {
            assert_eq!(sys.get(Svc::Item, &format!("/{id}"), token).await.status, 200);
            sent += 1;
        }
    }
    eventually(Duration::from_secs(3), "every view stored exactly once", || async {
        sys.sql(Svc::User, "SELECT count(*), count(DISTINCT event_id) FROM visit").await[0].get::<_, i64>(0) == sent
    })
    .await;
    let row = &sys.sql(Svc::User, "SELECT count(*), count(DISTINCT event_id) FROM visit").await[0];
    assert_eq!(row.get::<_, i64>(0), row.get::<_, i64>(1));
    for port in sys.ports(Svc::User) {
        let r = sys.request(e2e::Method::GET, port, "/visit", Some(&users[0].1), None).await;
        assert_eq!(r.ids(), vec![8, 7, 6], "instance :{port}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_service_is_given_another_domains_database() {
    let sys = system!(Seed::Demo);
    for svc in Svc::ALL {
        let env = sys.service_env(svc, 1);
        let db_vars: Vec<&(String, String)> = env.iter().filter(|(k, _)| k.ends_with("DATABASE_URL")).collect();
        assert_eq!(db_vars.len(), 1, "{svc:?}: {db_vars:?}");
        assert!(db_vars[0].0.starts_with(&svc.name().to_uppercase()));
        assert!(db_vars[0].1.ends_with(&format!("_{}", svc.name())), "{svc:?} gets its own database only");
    }
}
