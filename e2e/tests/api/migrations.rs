//! The migration runner: versions in the order they apply, databases migrated under the
//! old numbering (1, 100, 101, 2, ...) moved to it without applying anything twice, and every
//! SQL function defined by its one function file (`*/sql/functions/<name>.sql`), on a fresh
//! database as on one migrated before those files existed.

use std::{collections::BTreeMap, path::Path, time::Duration};

use e2e::{env, eventually, Infra, Seed, Svc, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_follow_the_order_of_application_and_old_numbers_are_moved_not_reapplied() {
    let mut sys =
        System::start_on(Infra::shared(), Seed::Demo, &[]).await.expect("the demo seed is part of the repository");
    let applied =
        |rows: Vec<tokio_postgres::Row>| -> Vec<(i32, String)> { rows.iter().map(|r| (r.get(0), r.get(1))).collect() };
    let q = "SELECT version, name FROM moa_migrations ORDER BY applied_at, version";
    let in_order = applied(sys.sql(Svc::ALARM, q).await);
    let versions: Vec<i32> = in_order.iter().map(|(v, _)| *v).collect();
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    assert_eq!(versions, sorted, "applied in version order: {in_order:?}");
    assert_eq!(versions, vec![1, 2, 3, 10, 11, 12, 20, 21, 22, 24, 25, 26]);

    // As a database migrated before the renumbering has it.
    sys.stop(Svc::ALARM);
    let stamps = "SELECT name, applied_at::text FROM moa_migrations ORDER BY name";
    let before: Vec<(String, String)> =
        sys.sql(Svc::ALARM, stamps).await.iter().map(|r| (r.get(0), r.get(1))).collect();
    sys.sql(
        Svc::ALARM,
        "UPDATE moa_migrations SET version = -CASE version WHEN 2 THEN 100 WHEN 3 THEN 101 WHEN 10 THEN 2
             WHEN 11 THEN 3 WHEN 12 THEN 4 WHEN 20 THEN 110 WHEN 21 THEN 102 ELSE version END",
    )
    .await;
    sys.sql(Svc::ALARM, "UPDATE moa_migrations SET version = -version").await;
    sys.restart(Svc::ALARM).await;
    assert_eq!(applied(sys.sql(Svc::ALARM, q).await), in_order, "the current numbers again");
    let after: Vec<(String, String)> = sys.sql(Svc::ALARM, stamps).await.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(after, before, "nothing applied a second time");
    assert!(sys.log(Svc::ALARM).contains("renumbered 7 applied migrations"), "{}", sys.log(Svc::ALARM));
}

/// The function files `svc`'s database gets: the shared ones and its own, as name -> the body
/// PostgreSQL keeps (`pg_proc.prosrc`: what lies between the two `$$`).
fn function_files(svc: Svc) -> BTreeMap<String, String> {
    let repo = &env().repo_dir;
    let mut files = BTreeMap::new();
    for dir in [repo.join("common/sql/functions"), repo.join(svc.name()).join("sql/functions")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let name = path.file_stem().and_then(|s| s.to_str()).expect("a file name").to_string();
            let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            files.insert(name, body(&path, &sql));
        }
    }
    assert!(files.contains_key("moa_capture"), "the function files are found under {}", repo.display());
    files
}

fn body(path: &Path, sql: &str) -> String {
    let mut parts = sql.split("$$");
    parts.next();
    parts.next().unwrap_or_else(|| panic!("{} has a $$-quoted body", path.display())).to_string()
}

/// Every `moa_` function of `svc`'s database, as name -> body.
async fn functions_in(sys: &System, svc: Svc) -> BTreeMap<String, String> {
    sys.sql(
        svc,
        "SELECT proname::text, prosrc FROM pg_proc
         WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'moa\\_%'",
    )
    .await
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// A fresh database gets every function, each as its file defines it, and nothing else: the
/// capture triggers (created by versioned migrations) found their function before the
/// migrations ran, and the files are the only definitions left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_database_gets_every_function_from_its_file() {
    let sys =
        System::start_on(Infra::shared(), Seed::Demo, &[]).await.expect("the demo seed is part of the repository");
    for svc in Svc::all() {
        assert_eq!(functions_in(&sys, svc).await, function_files(svc), "{} database", svc.name());
        let triggers = sys
            .sql(svc, "SELECT count(*) FROM pg_trigger WHERE tgfoid = 'moa_capture'::regproc AND NOT tgisinternal")
            .await[0]
            .get::<_, i64>(0);
        assert!(triggers >= 1, "{} captures its changes", svc.name());
    }
}

/// An existing install: an alarm database migrated by the code before the function files
/// (the frozen fixture, fixtures/alarm_db_before_function_files.sql: the same versions, every
/// function defined by the migrations). The current code applies no migration again, every
/// function is its file's again, a function whose body differs from its file (as after the
/// file was edited) takes the file's body at this start, and writes work end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_before_the_function_files_keeps_working_and_the_files_win() {
    let mut sys =
        System::start_on(Infra::shared(), Seed::Demo, &[]).await.expect("the demo seed is part of the repository");
    let token = sys.token().await;
    sys.stop(Svc::ALARM);
    sys.recreate_db(Svc::ALARM, Seed::Demo).await;
    let db = e2e::pg(sys.infra.pg_port(Svc::ALARM), &sys.db_name(Svc::ALARM)).await;
    // As the migrations of that install ran: as the database's owner role.
    db.batch_execute(&format!("SET ROLE {}", e2e::db_credentials(Svc::ALARM, e2e::DbRole::Owner).0))
        .await
        .expect("the owner role");
    db.batch_execute(include_str!("fixtures/alarm_db_before_function_files.sql"))
        .await
        .expect("the old migrations apply");
    // A body the file no longer has: what an edit of the file must replace at the next start.
    db.batch_execute(
        "CREATE OR REPLACE FUNCTION moa_max_version() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT -1::bigint $$",
    )
    .await
    .expect("an old body");
    let stamps = "SELECT version, name, applied_at::text FROM moa_migrations ORDER BY version";
    let row = |r: &tokio_postgres::Row| -> (i32, String, String) { (r.get(0), r.get(1), r.get(2)) };
    let before: Vec<_> = sys.sql(Svc::ALARM, stamps).await.iter().map(row).collect();
    assert_eq!(before.len(), 10, "the fixture lists the versions an install had: {before:?}");
    let old = functions_in(&sys, Svc::ALARM).await;
    assert_ne!(old["moa_max_version"], function_files(Svc::ALARM)["moa_max_version"]);

    // The functions a start created before its migrations, by name, in log order.
    let early = |sys: &System| -> Vec<String> {
        sys.log(Svc::ALARM)
            .lines()
            .filter_map(|l| {
                l.split("creating SQL function ").nth(1)?.strip_suffix(" before the migrations that use it")
            })
            .map(str::to_string)
            .collect()
    };
    let created_early = early(&sys).len();
    assert!(created_early > 0, "the first start, on an empty database, created the functions first");
    sys.restart(Svc::ALARM).await;
    let after: Vec<_> = sys.sql(Svc::ALARM, stamps).await.iter().map(row).collect();
    assert_eq!(after[..before.len().min(after.len())], before[..], "no migration applied again");
    let added: Vec<i32> = after[before.len().min(after.len())..].iter().map(|(v, _, _)| *v).collect();
    assert_eq!(
        added,
        vec![25, 26],
        "only the migrations newer than the fixture (read models, token hashes) were applied"
    );
    assert_eq!(functions_in(&sys, Svc::ALARM).await, function_files(Svc::ALARM), "every function is its file's");
    // (The log holds every start of this system's alarm service: the first one, on an empty
    // database, created its functions early.)
    // Migration 25 (read models) was pending: only the functions the fixture's database did not
    // have yet were created before it; every function it had was left to be defined after.
    let now_early = early(&sys);
    for name in &now_early[created_early..] {
        assert!(!old.contains_key(name), "{name} existed, yet was created before the migrations");
    }

    // Writes go through moa_write_alarms and the capture it shares with moa_capture; the relay
    // publishes them and the item service shows them.
    sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 30}"#).await.assert_empty(201);
    assert_eq!(sys.get(Svc::ALARM, "/", &token).await.ids(), vec![30]);
    let max: i64 = sys.sql(Svc::ALARM, "SELECT moa_max_version()").await[0].get(0);
    assert!(max > 0, "moa_max_version() has the file's body again: {max}");
    eventually(Duration::from_secs(10), "item list shows the alarm", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids() == vec![30]
    })
    .await;
    // An operator's change goes through the moa_capture trigger.
    sys.sql(Svc::ALARM, "DELETE FROM alarm WHERE item_id = 30").await;
    eventually(Duration::from_secs(10), "item list shows the alarm cleared", || async {
        sys.get(Svc::ITEM, "/", &token).await.alarmed_ids().is_empty()
    })
    .await;
    let left: i64 = sys.sql(Svc::ALARM, "SELECT count(*) FROM moa_outbox").await[0].get(0);
    assert_eq!(left, 0, "the outbox drained");
}

/// The services prepare their request-path statements once per connection. A schema change
/// under a running service that alters a prepared statement's result type (another instance's
/// migration in a rolling deploy, an operator's `ALTER`) makes PostgreSQL refuse it ("cached
/// plan must not change result type"): the statement is prepared again and the request is
/// answered, both after the change and after it is undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_a_schema_change_altered_is_prepared_again_and_answers() {
    let sys = System::start(Seed::Demo).await.expect("the demo seed is part of the repository");
    let (_, token) = sys.users(1).await.remove(0);
    let mut next_id = 1_000_000;
    // An item id the catalog has never seen is asked of the item service's own database (a
    // prepared statement reading moa_entity_version.data: `Query::Get`), each id once (a "no"
    // is remembered briefly): a few at once, so that several pooled connections hold it.
    let mut unknown_items = |n: usize| {
        let ids: Vec<i64> = (next_id..next_id + n as i64).collect();
        next_id += n as i64;
        let sys = &sys;
        let token = token.clone();
        async move {
            let paths: Vec<String> = ids.iter().map(|id| format!("/{id}")).collect();
            let views = paths.iter().map(|path| sys.get(Svc::ITEM, path, &token));
            let answers = futures_util::future::join_all(views).await;
            for r in &answers {
                // `404 {}`: the item does not exist, and the database said so
                r.assert_empty(404);
            }
        }
    };
    unknown_items(20).await;
    for (to, from) in [("json", "jsonb"), ("jsonb", "json")] {
        sys.sql(Svc::ITEM, &format!("ALTER TABLE moa_entity_version ALTER COLUMN data TYPE {to} USING data::{to}"))
            .await;
        let kind: String = sys
            .sql(Svc::ITEM, "SELECT format_type(atttypid, -1) FROM pg_attribute WHERE attrelid = 'moa_entity_version'::regclass AND attname = 'data'")
            .await[0]
            .get(0);
        assert_eq!(kind, to, "the column was {from}");
        unknown_items(20).await;
    }
    assert!(
        sys.log(Svc::ITEM).contains("a prepared statement is prepared again"),
        "the statements were prepared before the change: {}",
        sys.log(Svc::ITEM)
    );
}
