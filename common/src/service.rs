//! What starting a service means, written once: the store actor, the supervised RabbitMQ
//! connection, the RPC client and server, the outbox relay, the replica feed, and an HTTP
//! server with `/health`, `/ready`, `/metrics`, request ids, access logs and JSON 404s.

use std::{
    net::TcpListener,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::{Actor, Addr};
use actix_web::{
    dev::{Server, Service},
    http::{header, StatusCode},
    web, App, HttpMessage, HttpRequest, HttpResponse, HttpServer,
};
use serde_json::json;

use crate::{
    amqp::{
        identity::Identity, outbox::OutboxBacklog, relay::OutboxRelay, rpc, rpc::RpcClient, topology::WorkStream, Bus,
    },
    db::Migration,
    error::{Error, Result},
    http,
    replica::{feed, kinds::KindContext, Kinds, Replicas},
    settings::{Domain, Settings},
    store::{query::OwnEntity, Ping, Store},
    tasks::Tasks,
    telemetry::{self, Metrics},
};

/// The running parts of one service instance, shared with its handlers as `web::Data<Core>`.
#[derive(Clone)]
pub struct Core {
    pub settings: Settings,
    pub store: Addr<Store>,
    pub bus: Bus,
    pub rpc: RpcClient,
    pub relay: OutboxRelay,
    pub metrics: Metrics,
    pub replicas: Replicas,
    /// Set on SIGTERM / SIGINT: `/ready` answers 503 from then on, so a load balancer moves
    /// new requests elsewhere while this instance finishes what it has (`SHUTDOWN_DRAIN_MS`).
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Every background task of this instance, stopped with it (`run_until_stopped`).
    pub tasks: Tasks,
    /// The store's database runtime, shut down last.
    pub db_runtime: Arc<crate::store::DbRuntime>,
}

/// Builds the kinds the service declared (`declare`, its `startup.rs`): its own from its
/// store, the others from their owners (see [`crate::replica::kinds`]); then restores their
/// persisted copies and watches their owners' epochs for as long as the service runs.
fn replicas_for(cx: KindContext<'_>, declare: impl FnOnce(&mut Kinds<'_>)) -> Result<(Replicas, Vec<WorkStream>)> {
    let tasks = cx.tasks.clone();
    let mut kinds = Kinds::new(cx);
    declare(&mut kinds);
    let (replicas, work) = kinds.finish()?;
    let r = replicas.clone();
    tasks.spawn_once("replica restore", async move {
        futures_util::future::join_all(r.all().iter().map(|k| k.restore())).await;
    });
    let r = replicas.clone();
    tasks.spawn("owner epoch watch", async move {
        futures_util::future::join_all(r.all().iter().map(|k| k.watch_owner())).await;
    });
    Ok((replicas, work))
}

impl Core {
    /// Starts the store actor, the AMQP components and the kinds `declare` names (the
    /// service's `startup.rs`: which kinds it owns, which it replicates). Call inside the
    /// actix system.
    pub fn start(
        settings: Settings,
        migrations: &'static [Migration],
        declare: impl FnOnce(&mut Kinds<'_>),
    ) -> Result<Core> {
        Self::start_with_reads(settings, migrations, &[], declare)
    }

    /// [`Core::start`], with the domain's own SQL for some reads of some entities (see
    /// [`OwnEntity`]).
    pub fn start_with_reads(
        settings: Settings,
        migrations: &'static [Migration],
        own_entities: &'static [OwnEntity],
        declare: impl FnOnce(&mut Kinds<'_>),
    ) -> Result<Core> {
        crate::error::name_own_database(settings.domain.name(), &settings.database_url);
        match &settings.token_hash_key {
            Some(key) => crate::token::install_token_key(key),
            None => log::warn!(
                "TOKEN_HASH_KEY is not set: tokens are hashed with the local development key, which every \
                 service of this machine shares; set one secret for the whole deployment (docs/security.md)"
            ),
        }
        let metrics = Metrics::default();
        describe_metrics(&metrics);
        let tasks = Tasks::new();
        let store = Store::new(&settings, migrations, own_entities, &tasks)?;
        let wake = store.outbox_wake();
        let migrated = store.migrated_flag();
        let db_runtime = store.runtime();
        let store = store.start();
        let identity = Identity::of(&settings)?;
        if identity.shared() {
            log::warn!(
                "every domain publishes as RabbitMQ user {:?} (AMQP_OWNER_LOGINS, or a login shared by all \
                 services): a message's user_id cannot tell one service from another",
                identity.own()
            );
        }
        let name = format!("{}-service {}", settings.domain.name(), settings.instance_id);
        let bus = Bus::start(&settings.amqp_urls, name, identity, &tasks);
        let rpc = RpcClient::start(&bus, &settings.instance_id, metrics.clone());
        let cx = KindContext { settings: &settings, store: &store, rpc: &rpc, metrics: &metrics, tasks: &tasks };
        let (replicas, work) = replicas_for(cx, declare)?;
        let relay = OutboxRelay::start(&bus, store.clone(), &work, wake, settings.outbox_poll, metrics.clone());
        // The owner answers the kinds it declared its own, and no other.
        let owned = replicas.owned_by(settings.domain);
        rpc::serve(&bus, settings.domain, owned, store.clone(), migrated, settings.prefetch, metrics.clone());
        // Bind and consume first, then snapshot (see replica::feed).
        feed::start(&bus, &settings, replicas.clone(), metrics.clone());
        tasks.spawn("tombstone collection", crate::store::collect_tombstones_periodically(store.clone()));
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        Ok(Core { settings, store, bus, rpc, relay, metrics, replicas, tasks, draining, db_runtime })
    }
}

fn describe_metrics(m: &Metrics) {
    for (name, kind, help) in [
        ("moa_http_requests_total", "counter", "HTTP requests by route, method and status"),
        ("moa_http_request_seconds", "histogram", "HTTP request latency by route"),
        ("moa_cache_hits_total", "counter", "lookups answered from memory"),
        ("moa_cache_misses_total", "counter", "lookups that asked the owner"),
        (
            "moa_rpc_calls_total",
            "counter",
            "RPC fallbacks by owner and outcome (ok, timeout, no_owner, bus_down, error)",
        ),
        ("moa_rpc_call_seconds", "histogram", "RPC fallback latency"),
        ("moa_outbox_published_total", "counter", "outbox events confirmed by the broker"),
        ("moa_outbox_backlog", "gauge", "outbox events not yet confirmed"),
        ("moa_events_applied_total", "counter", "change events applied to a replica"),
        ("moa_events_stale_total", "counter", "change events dropped as stale or duplicate"),
        ("moa_events_dead_lettered_total", "counter", "messages sent to the dead-letter queue"),
        ("moa_amqp_refused_total", "counter", "messages refused as not their owner's, and RPC questions refused"),
        ("moa_dead_letters_refused_total", "counter", "refused messages the dead-letter queue did not take"),
        ("moa_replica_rows", "gauge", "live rows in each whole replicated catalog"),
        ("moa_cache_entries", "gauge", "entries in each bounded cache (one per group)"),
        ("moa_cache_resets_total", "counter", "caches emptied because the owner's epoch or history changed"),
        (
            "moa_cache_repaired_total",
            "counter",
            "cache entries dropped for holding a version above the owner's newest (owner wins)",
        ),
        (
            "moa_cache_stale_served_total",
            "counter",
            "old-generation cache entries served because the owner did not answer",
        ),
        ("moa_replica_version", "gauge", "newest owner version applied to each replica"),
        ("moa_replica_warm", "gauge", "1 once a replica or cache can answer (loaded, or its owner answers)"),
        ("moa_outbox_publish_seconds", "histogram", "from commit to broker confirm, per event"),
        ("moa_replica_rows_applied_total", "counter", "rows applied to replicas (events, snapshots, RPC)"),
        ("moa_replica_rows_stale_total", "counter", "rows dropped by replicas as not newer"),
        ("moa_replica_rows_other_epoch_total", "counter", "rows dropped by replicas as of another owner epoch"),
        ("moa_replica_rebuilds_total", "counter", "replicas rebuilt because the owner's epoch or history changed"),
        ("moa_negative_lookups_total", "counter", "owner lookups that found nothing (remembered briefly)"),
    ] {
        m.describe(name, kind, help);
    }
}

/// `GET /ready`: 200 when the database answers (and is migrated), RabbitMQ is connected and
/// every replica has loaded its snapshot; otherwise 503 naming what is missing.
#[utoipa::path(get, path = "/ready", tag = "operations", operation_id = "ready", security(()),
    summary = "Readiness: own database reachable and migrated, RabbitMQ connected, every replica loaded",
    responses((status = 200, description = "Ready", body = crate::openapi::Ready),
        (status = 503, description = "Not ready; the hint lists what is missing (no Retry-After here).",
            body = crate::openapi::NotReady)))]
pub async fn ready(core: web::Data<Core>) -> HttpResponse {
    let db = match tokio::time::timeout(Duration::from_secs(1), core.store.send(Ping)).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 1 s".to_string()),
    };
    let amqp = core.bus.is_connected();
    let replicas = core.replicas.status();
    let mut missing = Vec::new();
    if core.draining.load(Ordering::SeqCst) {
        missing.push("shutting down".to_string());
    }
    if let Err(e) = &db {
        // The body is public (a load balancer's check, anyone): no driver text, which can name
        // hosts, users and databases. The detail goes to the log, at most every 10 s.
        missing.push("database unreachable".to_string());
        log_ready_failure(e);
    }
    if !amqp {
        missing.push("RabbitMQ not connected".to_string());
    }
    let other_keys = crate::token::peers_with_other_keys();
    if !other_keys.is_empty() {
        missing.push(format!("TOKEN_HASH_KEY differs from {}'s", other_keys.join(", ")));
    }
    for (entity, warm, owner) in &replicas {
        if !*warm {
            missing.push(format!("{entity} replica not loaded yet (from {owner})"));
        }
    }
    let checks = json!({
        "database": if db.is_ok() { "ok" } else { "down" },
        "rabbitmq": if amqp { "ok" } else { "down" },
        "replicas": replicas.iter().map(|(e, w, _)| ((*e).to_string(), json!(if *w { "warm" } else { "cold" }))).collect::<serde_json::Map<_, _>>(),
        "token_key": if other_keys.is_empty() { "ok".to_string() } else { format!("differs from {}", other_keys.join(", ")) },
        // Never a reason for 503: a read model is built in the background (misses go to the
        // owner meanwhile).
        "read_models": core.replicas.all().iter().filter_map(|k| Some((k.kind().to_string(), json!(k.read_model()?)))).collect::<serde_json::Map<_, _>>(),
    });
    if missing.is_empty() {
        http::json(StatusCode::OK, &json!({"status": "ready", "checks": checks}))
    } else {
        http::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"result": "Service Unavailable", "hint": format!("not ready: {}", missing.join("; ")), "checks": checks}),
        )
    }
}

/// Logs why `/ready` found the database unreachable: at most once per 10 s per process (a
/// load balancer polls every second or two). At `info`: every start passes through "migrations
/// not applied yet", and an outage is reported at `warn` by what it fails.
fn log_ready_failure(detail: &str) {
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let Ok(mut last) = LAST.lock() else { return };
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
        *last = Some(Instant::now());
        log::info!("/ready: database not ready: {detail}");
    }
}

/// `GET /metrics` in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics", security(()),
    summary = "Metrics in the Prometheus text format (names `moa_*`)",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String,
        content_type = "text/plain")))]
pub async fn metrics(core: web::Data<Core>) -> HttpResponse {
    if let Ok(Ok(Ok(n))) = tokio::time::timeout(Duration::from_millis(500), core.store.send(OutboxBacklog)).await {
        core.metrics.set("moa_outbox_backlog", String::new(), n as f64);
    }
    for (entity, warm, _) in core.replicas.status() {
        core.metrics.set("moa_replica_warm", format!("entity=\"{entity}\""), if warm { 1.0 } else { 0.0 });
    }
    for kind in core.replicas.all() {
        let labels = format!("entity=\"{}\"", kind.kind());
        core.metrics.set("moa_replica_version", labels.clone(), kind.max_version() as f64);
        let (gauge, size) = kind.size();
        core.metrics.set(gauge, labels, size);
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(core.metrics.render())
}

/// The request id of this request (from `X-Request-Id`, or made here).
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(1);

pub fn request_id(req: &HttpRequest) -> String {
    req.extensions().get::<RequestId>().map(|r| r.0.to_string()).unwrap_or_default()
}

/// A GET-only resource: other methods get 405 with the error body, like the service routes.
fn resource_get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path).route(web::get().to(handler)).default_service(web::to(http::method_not_allowed))
}

/// A bound HTTP server: tests bind port 0 and read [`Application::port`].
pub struct Application {
    port: u16,
    server: Server,
    core: Core,
}

impl Application {
    /// Binds the listener and builds the server with the service's routes.
    /// `openapi` is the service's document (see [`crate::api_document::document`]).
    pub fn build<F>(core: Core, openapi: &utoipa::openapi::OpenApi, routes: F) -> Result<Application>
    where
        F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    {
        let s = &core.settings;
        let listener = TcpListener::bind((s.http_host.as_str(), s.http_port))
            .map_err(|e| Error::Config(format!("cannot listen on {}:{}: {e}", s.http_host, s.http_port)))?;
        let port = listener.local_addr()?.port();
        let data = web::Data::new(core.clone());
        let domain = s.domain.name();
        let instance: Arc<str> = Arc::from(s.instance_id.as_str());
        let replicas = core.replicas.clone();
        let openapi = web::Data::new(crate::http::OpenApiJson::new(openapi)?);
        let server = HttpServer::new(move || {
            let instance = instance.clone();
            App::new()
                .app_data(data.clone())
                .configure(|cfg| replicas.register(cfg))
                .app_data(openapi.clone())
                .app_data(web::QueryConfig::default().error_handler(http::query_error_handler))
                .wrap_fn(move |req, srv| {
                    let started = Instant::now();
                    let rid: Arc<str> = http::client_request_id(req.headers().get("x-request-id"))
                        .map(Arc::from)
                        .unwrap_or_else(|| format!("{instance}-{}", REQUEST_SEQ.fetch_add(1, Ordering::Relaxed)).into());
                    req.extensions_mut().insert(RequestId(rid.clone()));
                    let method = req.method().clone();
                    let method_label = telemetry::method_label(&method);
                    // Copied only when the access log is on (it is off at `warn`).
                    let path = log::log_enabled!(target: "moa::access", log::Level::Info).then(|| req.path().to_string());
                    let fut = srv.call(req);
                    async move {
                        let mut res = fut.await?;
                        let status = res.status();
                        // The matched route's pattern ("/{item_id}"), never the path: the
                        // label set stays the routes we serve, whatever clients send.
                        let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
                        if let Ok(v) = header::HeaderValue::from_str(&rid) {
                            res.headers_mut().insert(header::HeaderName::from_static("x-request-id"), v);
                        }
                        let took = started.elapsed();
                        if let Some(core) = res.request().app_data::<web::Data<Core>>() {
                            core.metrics.http_request(&route, method_label, status.as_u16(), took.as_secs_f64());
                        }
                        if let Some(path) = path {
                            log::info!(target: "moa::access", "[{rid}] {method} {path} -> {} in {:.1} ms", status.as_u16(), took.as_secs_f64() * 1e3);
                        }
                        Ok(res)
                    }
                })
                .service(resource_get("/health", http::health))
                .service(resource_get("/ready", ready))
                .service(resource_get("/metrics", metrics))
                .service(resource_get("/openapi.json", crate::http::openapi_json))
                .configure(routes.clone())
                .default_service(web::to(http::not_found))
        })
        .workers(s.http_workers)
        // A request head not complete in time: 408 and the connection is closed (bodies
        // have their own deadline, see http::read_body).
        .client_request_timeout(s.header_timeout)
        .shutdown_timeout(10)
        // Signals are ours (run_until_stopped): the listener closes only after the drain.
        .disable_signals()
        .listen(listener)?
        .run();
        log::info!("{domain} service listening on {}:{port} ({:?})", s.http_host, s.domain);
        Ok(Application { port, server, core })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM / SIGINT, then shuts down gracefully: in-flight requests finish,
    /// the outbox is flushed as far as the broker allows, and the AMQP connection is closed
    /// (unacknowledged deliveries return to their queues).
    pub async fn run_until_stopped(self) -> Result<()> {
        let handle = self.server.handle();
        let draining = self.core.draining.clone();
        let drain = self.core.settings.shutdown_drain;
        actix_web::rt::spawn(async move {
            let signal = stop_signal().await;
            draining.store(true, Ordering::SeqCst);
            if !drain.is_zero() {
                // A load balancer checking /ready stops sending here within its check
                // interval; requests that still arrive meanwhile are served as usual.
                log::info!("{signal}: /ready is 503; serving for {} ms more before closing", drain.as_millis());
                tokio::time::sleep(drain).await;
            } else {
                log::info!("{signal}: shutting down");
            }
            handle.stop(true).await;
        });
        self.server.await?;
        log::info!("http server stopped; flushing the outbox");
        self.core.relay.flush(Duration::from_secs(3)).await;
        self.core.bus.close().await;
        // Every loop and any start-up work still running: stopped, so nothing outlives the
        // service (a task still running after the grace period is aborted and named).
        let running = self.core.tasks.running();
        let left = self.core.tasks.shutdown(Duration::from_secs(2)).await;
        // Then the database runtime: what is alive on it now is the pool's (connections, reaper).
        let pooled = self.core.db_runtime.shutdown(Duration::from_secs(1)).await;
        log::info!(
            "bye: {} own tasks stopped, {} left running; the database runtime shut down ({pooled} pool tasks dropped)",
            running - left.len(),
            left.len()
        );
        Ok(())
    }
}

/// Waits for SIGTERM or SIGINT; answers which one.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        (term, int) => {
            // Without signal handlers the process could only be killed: say so, and wait forever.
            log::error!("cannot listen for signals: {:?} {:?}", term.err(), int.err());
            std::future::pending().await
        }
    }
}

/// The whole of a service's `main`: logging, settings from the environment (exit 2 when
/// they are wrong), build, serve until a signal, exit 0 after a graceful shutdown.
pub fn main<B>(domain: Domain, migrations: &'static [Migration], build: B) -> std::process::ExitCode
where
    B: FnOnce(Settings) -> Result<Application>,
{
    crate::telemetry::init_logging();
    let settings = match Settings::from_env(domain) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return migrate_once(&settings, migrations);
    }
    log::info!("starting with {settings:?}");
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move { build(settings)?.run_until_stopped().await });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{} service failed: {e}", domain.name());
            std::process::ExitCode::FAILURE
        }
    }
}

/// `<binary> migrate`: applies the migrations as the owner role (`<PREFIX>_DATABASE_MIGRATE_URL`)
/// and grants the runtime role of `<PREFIX>_DATABASE_URL` what it uses, once, then exits: the
/// deploy step before instances that are given no owner login start (docs/operations.md).
/// Exit codes: 0 done, 1 failed (the database unreachable, a migration failed), 2 bad settings,
/// 78 the database is newer than this binary.
fn migrate_once(settings: &Settings, migrations: &'static [Migration]) -> std::process::ExitCode {
    let prefix = settings.domain.env_prefix();
    let Some(owner_url) = settings.database_migrate_url.as_deref() else {
        log::error!("migrate needs {prefix}_DATABASE_MIGRATE_URL: the database as its owner role");
        return std::process::ExitCode::from(2);
    };
    let run = async {
        let owner = crate::db::pool(owner_url, 1, settings.db_timeout, Duration::from_secs(60))?;
        let role = crate::db::url_user(&settings.database_url)?;
        crate::db::migrate(&owner, migrations, Some(&role)).await
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            log::error!("migrate: no runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run) {
        Ok(n) => {
            log::info!("{} database migrated: {n} migrations applied now", settings.domain.name());
            std::process::ExitCode::SUCCESS
        }
        Err(e @ Error::SchemaAhead(_)) => {
            log::error!("migrate refused: {e}");
            std::process::ExitCode::from(78)
        }
        Err(e) => {
            log::error!("migrate failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
