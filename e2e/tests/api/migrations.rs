//! The migration runner: versions in the order they apply, and databases migrated under the
//! old numbering (1, 100, 101, 2, ...) moved to it without applying anything twice.

use e2e::{Infra, Seed, Svc, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_follow_the_order_of_application_and_old_numbers_are_moved_not_reapplied() {
    let mut sys =
        System::start_on(Infra::shared(), Seed::Demo, &[]).await.expect("the demo seed is part of the repository");
    let applied =
        |rows: Vec<tokio_postgres::Row>| -> Vec<(i32, String)> { rows.iter().map(|r| (r.get(0), r.get(1))).collect() };
    let q = "SELECT version, name FROM moa_migrations ORDER BY applied_at, version";
    let in_order = applied(sys.sql(Svc::Alarm, q).await);
    let versions: Vec<i32> = in_order.iter().map(|(v, _)| *v).collect();
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    assert_eq!(versions, sorted, "applied in version order: {in_order:?}");
    assert_eq!(versions, vec![1, 2, 3, 10, 11, 12, 20, 21, 22, 24]);

    // As a database migrated before the renumbering has it.
    sys.stop(Svc::Alarm);
    let stamps = "SELECT name, applied_at::text FROM moa_migrations ORDER BY name";
    let before: Vec<(String, String)> =
        sys.sql(Svc::Alarm, stamps).await.iter().map(|r| (r.get(0), r.get(1))).collect();
    sys.sql(
        Svc::Alarm,
        "UPDATE moa_migrations SET version = -CASE version WHEN 2 THEN 100 WHEN 3 THEN 101 WHEN 10 THEN 2
             WHEN 11 THEN 3 WHEN 12 THEN 4 WHEN 20 THEN 110 WHEN 21 THEN 102 ELSE version END",
    )
    .await;
    sys.sql(Svc::Alarm, "UPDATE moa_migrations SET version = -version").await;
    sys.restart(Svc::Alarm).await;
    assert_eq!(applied(sys.sql(Svc::Alarm, q).await), in_order, "the current numbers again");
    let after: Vec<(String, String)> = sys.sql(Svc::Alarm, stamps).await.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(after, before, "nothing applied a second time");
    assert!(sys.log(Svc::Alarm).contains("renumbered 7 applied migrations"), "{}", sys.log(Svc::Alarm));
}
