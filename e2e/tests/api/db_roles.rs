//! PostgreSQL roles (docs/security.md, "PostgreSQL: a role per service"): every service runs as
//! its own login role, which reads and writes rows and nothing else; the owner role applies the
//! migrations; a database a newer binary migrated is refused by an older one, which puts
//! none of its functions back; without the owner's login a service waits for the migrate step.

use std::time::Duration;

use e2e::{db_credentials, env, DbRole, Infra, Seed, Svc, System};

async fn demo() -> System {
    System::start_on(Infra::shared(), Seed::Demo, &[]).await.expect("the demo seed is part of the repository")
}

/// A connection to `svc`'s database as one of its roles, or the error of trying.
async fn connect_as(sys: &System, svc: Svc, db_of: Svc, role: DbRole) -> Result<tokio_postgres::Client, String> {
    let (user, password) = db_credentials(svc, role);
    let url = format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname={}",
        sys.infra.pg_port(db_of),
        sys.db_name(db_of)
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string()))?;
    tokio::spawn(conn);
    Ok(client)
}

/// The SQLSTATE a statement failed with ("" if it succeeded).
async fn refused(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => String::new(),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_runs_as_its_own_role_which_changes_rows_and_nothing_else() {
    let sys = demo().await;
    let token = sys.token().await;
    // Work through every path: a view (item), an alarm (alarm), a visit list (user). (A user's
    // first request may meet the 300 ms RPC bound on a loaded host: asked again.)
    e2e::eventually(Duration::from_secs(20), "a view, an alarm and a visit list answered", || async {
        sys.get(Svc::ITEM, "/5", &token).await.status == 200
            && sys.post(Svc::ALARM, "/", &token, r#"{"item_id": 5}"#).await.status == 201
            && sys.get(Svc::USER, "/visit", &token).await.status == 200
    })
    .await;
    for svc in Svc::all() {
        let (service_role, _) = db_credentials(svc, DbRole::Service);
        let sessions = sys
            .sql(
                svc,
                &format!(
                    "SELECT a.usename::text, r.rolsuper FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
                     WHERE a.datname = '{}' AND a.application_name = 'homeshopping-moa'",
                    sys.db_name(svc)
                ),
            )
            .await;
        let logins: Vec<(String, bool)> = sessions.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert!(!logins.is_empty(), "{} holds connections", svc.name());
        assert!(
            logins.iter().all(|(user, superuser)| *user == service_role && !superuser),
            "{} connects as {service_role} only (the owner's migration login is closed): {logins:?}",
            svc.name()
        );
        let owner = db_credentials(svc, DbRole::Owner).0;
        let supers: i64 = sys
            .sql(svc, &format!("SELECT count(*) FROM pg_roles WHERE rolname IN ('{owner}', '{service_role}') AND (rolsuper OR rolcreaterole OR rolcreatedb)"))
            .await[0]
            .get(0);
        assert_eq!(supers, 0, "neither role may do more than its database");

        let db = connect_as(&sys, svc, svc, DbRole::Service).await.expect("the service role logs in");
        // 42501 insufficient_privilege: no DDL, no writing the migrations' record, no superuser work
        assert_eq!(refused(&db, "CREATE TABLE moa_intruder (id int)").await, "42501", "{}: CREATE TABLE", svc.name());
        assert_eq!(refused(&db, "DROP TABLE moa_outbox").await, "42501", "{}: DROP TABLE", svc.name());
        assert_eq!(refused(&db, "ALTER TABLE moa_outbox ADD COLUMN x int").await, "42501", "{}: ALTER", svc.name());
        assert_eq!(
            refused(&db, "CREATE OR REPLACE FUNCTION moa_epoch() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$").await,
            "42501",
            "{}: replace a function",
            svc.name()
        );
        assert_eq!(
            refused(&db, "INSERT INTO moa_migrations (version, name) VALUES (9999, 'x')").await,
            "42501",
            "{}: record a migration",
            svc.name()
        );
        assert_eq!(refused(&db, "COPY moa_outbox TO PROGRAM 'true'").await, "42501", "{}: run a program", svc.name());
        // ... while its rows are its own to read and write
        assert_eq!(refused(&db, "SELECT count(*) FROM moa_outbox; SELECT moa_epoch()").await, "", "{}", svc.name());
        // and no other domain's database lets it in
        for other in Svc::all().into_iter().filter(|o| *o != svc) {
            let err = connect_as(&sys, svc, other, DbRole::Service).await.err();
            assert!(
                err.as_deref().is_some_and(|e| e.contains("permission denied for database")),
                "{} cannot connect to {}'s database: {err:?}",
                svc.name(),
                other.name()
            );
        }
    }
}

/// What a newer version leaves behind: a migration this binary does not know, and a function
/// whose body is not this binary's file.
async fn migrate_as_a_newer_version(sys: &System, svc: Svc) {
    let owner = connect_as(sys, svc, svc, DbRole::Owner).await.expect("the owner logs in");
    owner
        .batch_execute(
            "INSERT INTO moa_migrations (version, name) VALUES (9999, 'a newer version''s migration');
             CREATE OR REPLACE FUNCTION moa_max_version() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT 424242::bigint $$",
        )
        .await
        .expect("the newer version's schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_a_newer_version_migrated_refuses_an_older_binary_which_puts_no_function_back() {
    let mut sys = demo().await;
    sys.stop(Svc::ALARM);
    migrate_as_a_newer_version(&sys, Svc::ALARM).await;

    let port = sys.start_again(Svc::ALARM);
    let code = sys.reap(port, Duration::from_secs(30)).await;
    assert_eq!(code, Some(78), "the older binary exits (EX_CONFIG) instead of serving: {}", sys.log(Svc::ALARM));
    let log = sys.log(Svc::ALARM);
    assert!(
        log.contains("refusing to start") && log.contains("9999 (a newer version's migration)"),
        "the log says why, naming the migration: {log}"
    );
    let max: i64 = sys.sql(Svc::ALARM, "SELECT moa_max_version()").await[0].get(0);
    assert_eq!(max, 424242, "the newer version's function is left as it is");

    // The migrate step refuses the same way, and applies nothing either.
    let out = migrate_step(&sys, Svc::ALARM);
    assert_eq!(out.status.code(), Some(78), "migrate: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("9999"), "{}", String::from_utf8_lossy(&out.stderr));
    let max: i64 = sys.sql(Svc::ALARM, "SELECT moa_max_version()").await[0].get(0);
    assert_eq!(max, 424242, "the migrate step put no function back");
}

/// `<binary> migrate` for `svc`'s database, as a deploy step runs it: the owner's URL and the
/// runtime role's.
fn migrate_step(sys: &System, svc: Svc) -> std::process::Output {
    let prefix = svc.name().to_uppercase();
    std::process::Command::new(env().bin_dir.join(svc.name()))
        .arg("migrate")
        .env_clear()
        .env(format!("{prefix}_DATABASE_URL"), sys.database_url(svc, DbRole::Service))
        .env(format!("{prefix}_DATABASE_MIGRATE_URL"), sys.database_url(svc, DbRole::Owner))
        .output()
        .expect("the migrate step runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_owners_login_a_service_waits_for_the_migrate_step() {
    let mut sys = demo().await;
    sys.stop(Svc::USER);
    sys.recreate_db(Svc::USER, Seed::Demo).await;
    let var = "USER_DATABASE_MIGRATE_URL";
    let port = sys.spawn_env(Svc::USER, None, &[(var, "")]);
    // Not ready while nothing migrated the database, and says what it waits for.
    e2e::eventually(Duration::from_secs(30), "the user service says it waits for the migrate step", || async {
        sys.log(Svc::USER).contains("run the binary's `migrate` step as the owner role")
    })
    .await;
    let ready = sys.request(e2e::Method::GET, port, "/ready", None, None).await;
    assert_eq!(ready.status, 503, "not ready before the migrate step: {ready:?}");
    let applied: i64 =
        sys.sql(Svc::USER, "SELECT count(*) FROM pg_tables WHERE tablename = 'moa_migrations'").await[0].get(0);
    assert_eq!(applied, 0, "the service applied nothing itself");

    let out = migrate_step(&sys, Svc::USER);
    assert!(out.status.success(), "migrate: {}", String::from_utf8_lossy(&out.stderr));
    sys.wait_ready_port(Svc::USER, port).await;
    let token = sys.token().await;
    assert_eq!(sys.get(Svc::USER, "/visit", &token).await.status, 200, "served as the runtime role");
}
