//! Typed settings read from environment variables, validated at start.
//!
//! Every service reads the same shape with its own prefix (`ITEM_`, `ALARM_`, `USER_`) for
//! what is its own (HTTP port, database URL), so a service binary can only ever be given
//! its own database: there is no variable through which it could learn another's.

use std::time::Duration;

use crate::error::Error;

/// A domain: one service, one database, one fanout exchange and one RPC queue. The domains are
/// the rows of `domains.tsv`, the one list the scripts, the broker's definitions, the images,
/// the test harness and (embedded at build time) the services read; everything else about a
/// domain follows from its name by convention. The platform names no domain: each kind's
/// owner is a `Domain::new("...")` constant beside the kind.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(&'static str);

/// `domains.tsv`, as built into every binary.
const DOMAINS_TSV: &str = include_str!("../../domains.tsv");

/// What one domain is: its row of `domains.tsv` and the names its conventions give it.
struct About {
    domain: Domain,
    /// Prefix of the domain's own environment variables (the name upper-cased).
    env_prefix: &'static str,
    http_port: u16,
    /// The local stack's database as the service's own login role (postgres/local-passwords.env;
    /// those servers listen on 127.0.0.1 only): never the superuser.
    database_url: &'static str,
    /// The local broker as the service's own user (rabbitmq/local-passwords.env): never the
    /// administrator `guest`.
    amqp_url: &'static str,
    /// Fanout exchange of its change-data events.
    events_exchange: &'static str,
    /// Queue on which it answers RPC requests.
    rpc_queue: &'static str,
}

/// `domains.tsv`'s rows, in its order (the start order). A malformed file fails every
/// binary's first look at a domain, and the unit tests.
fn parse_domains(text: &'static str) -> Result<Vec<About>, String> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut rows = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let f: Vec<&'static str> = line.split_whitespace().collect();
        let [name, http_port, db_port] = f[..] else {
            return Err(format!("domains.tsv: {line:?} is not `name http_port db_port`"));
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(format!("domains.tsv: the domain name {name:?} is not lower-case letters"));
        }
        let port = |p: &str| p.parse::<u16>().map_err(|_| format!("domains.tsv: {p:?} ({name}) is not a port"));
        let (http_port, db_port) = (port(http_port)?, port(db_port)?);
        if rows.iter().any(|a: &About| a.domain.0 == name) {
            return Err(format!("domains.tsv lists {name} twice"));
        }
        rows.push(About {
            domain: Domain(name),
            env_prefix: leak(name.to_uppercase()),
            http_port,
            database_url: leak(format!("postgres://{name}_service:{name}-service-local@127.0.0.1:{db_port}/{name}_db")),
            amqp_url: leak(format!("amqp://{name}-service:{name}-local@127.0.0.1:5672/%2f")),
            events_exchange: leak(format!("{name}.events")),
            rpc_queue: leak(format!("{name}.rpc")),
        });
    }
    Ok(rows)
}

static DOMAINS: std::sync::LazyLock<Vec<About>> =
    std::sync::LazyLock::new(|| parse_domains(DOMAINS_TSV).unwrap_or_else(|e| panic!("{e}")));
static ALL: std::sync::LazyLock<Vec<Domain>> = std::sync::LazyLock::new(|| DOMAINS.iter().map(|a| a.domain).collect());

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Domain {
    /// The domain called `name`, as a constant beside the kinds it owns. A name not in
    /// `domains.tsv` is refused where the kind is declared ([`crate::replica::Kinds`]) and by
    /// its first look-up of a port or a name (a panic naming it).
    pub const fn new(name: &'static str) -> Domain {
        Domain(name)
    }

    /// Every domain of `domains.tsv`, in its order.
    pub fn all() -> &'static [Domain] {
        &ALL
    }

    /// Whether `domains.tsv` lists this domain.
    pub fn is_listed(self) -> bool {
        DOMAINS.iter().any(|a| a.domain == self)
    }

    fn about(self) -> &'static About {
        DOMAINS
            .iter()
            .find(|a| a.domain == self)
            .unwrap_or_else(|| panic!("the domain {:?} is not listed in domains.tsv", self.0))
    }

    /// Its place in [`Domain::all`].
    pub fn index(self) -> usize {
        DOMAINS.iter().position(|a| a.domain == self).unwrap_or_else(|| {
            panic!("the domain {:?} is not listed in domains.tsv", self.0);
        })
    }

    pub fn name(self) -> &'static str {
        self.0
    }

    /// Prefix of this domain's own environment variables.
    pub fn env_prefix(self) -> &'static str {
        self.about().env_prefix
    }

    pub fn default_http_port(self) -> u16 {
        self.about().http_port
    }

    /// The local stack's database as this service's own login role: never the superuser.
    pub fn default_database_url(self) -> &'static str {
        self.about().database_url
    }

    /// The local broker as this service's own user: never the administrator `guest`.
    pub fn default_amqp_url(self) -> &'static str {
        self.about().amqp_url
    }

    /// Fanout exchange of this domain's change-data events.
    pub fn events_exchange(self) -> &'static str {
        self.about().events_exchange
    }

    /// Queue on which this domain answers RPC requests.
    pub fn rpc_queue(self) -> &'static str {
        self.about().rpc_queue
    }

    /// The domain called `name`, if `domains.tsv` lists one.
    pub fn named(name: &str) -> Option<Domain> {
        DOMAINS.iter().map(|a| a.domain).find(|d| d.0 == name)
    }
}

/// Everything a service needs to start. Built once by [`Settings::from_env`].
#[derive(Clone)]
pub struct Settings {
    pub domain: Domain,
    /// `HTTP_HOST`, default `127.0.0.1` (`0.0.0.0` in containers).
    pub http_host: String,
    /// `<PREFIX>_HTTP_PORT`, default 5001 / 6001 / 7001; 0 picks a free port (tests).
    pub http_port: u16,
    /// `HTTP_WORKERS`, default: number of CPUs.
    pub http_workers: usize,
    /// `<PREFIX>_DATABASE_URL`: the service's own database, and no other, as the service's
    /// own login role (`item_service`, ...: rows, no DDL; docs/security.md).
    pub database_url: String,
    /// `<PREFIX>_DATABASE_MIGRATE_URL`: the same database as its owner role (`item_owner`, ...),
    /// used only to apply the migrations at start (one connection, closed after) and to grant
    /// the runtime role its privileges. Unset: the service applies nothing; it waits until
    /// `<binary> migrate` (run with this variable) has brought the schema to its version.
    pub database_migrate_url: Option<String>,
    /// `DB_POOL_SIZE`, default 16.
    pub db_pool_size: u32,
    /// `DB_TIMEOUT_MS`: how long a request waits for a database connection before 503, default 2000.
    pub db_timeout: Duration,
    /// `DB_STATEMENT_TIMEOUT_MS`: `statement_timeout` of every pooled connection, so a stuck
    /// statement (a lock held elsewhere, a runaway plan) is cancelled instead of holding a
    /// connection and everything queued behind it; default 5000. Migrations are exempt.
    pub db_statement_timeout: Duration,
    /// `WRITE_TIMEOUT_MS`: how long a write request (alarm set/clear, a recorded view) waits
    /// for its write from submission to commit before 503, default 5000.
    pub write_timeout: Duration,
    /// `HEADER_TIMEOUT_MS`: how long a client may take to send a request's head (actix's
    /// `client_request_timeout`; past it: 408 and the connection is closed), default 5000.
    pub header_timeout: Duration,
    /// `BODY_TIMEOUT_MS`: how long a client may take to send a request's body once the
    /// handler reads it (past it: 408 with the error body, connection closed), default 5000.
    pub body_timeout: Duration,
    /// `AMQP_URL`: one node's URL, or the nodes of a cluster as comma-separated URLs (tried in
    /// turn, see `amqp::bus`). Default: the local broker as the service's own user
    /// ([`Domain::default_amqp_url`]), never the administrator.
    pub amqp_urls: Vec<String>,
    /// `AMQP_OWNER_LOGINS`: the RabbitMQ login each domain's messages must carry as `user_id`,
    /// one login shared by every domain or `domain=login` pairs; unset: `<domain>-service`, or
    /// this service's own login for every domain when it is not `<domain>-service` itself (a
    /// broker where all services share one user). See `amqp::identity::Identity::of`.
    pub amqp_owner_logins: Option<String>,
    /// `RPC_TIMEOUT_MS`: how long a cache miss waits for the owning service, default 300.
    pub rpc_timeout: Duration,
    /// `SNAPSHOT_TIMEOUT_MS`: how long one snapshot page may take, default 10000.
    pub snapshot_timeout: Duration,
    /// `SNAPSHOT_PAGE_SIZE`: rows per snapshot page, default 20000, at most 100000.
    pub snapshot_page_size: u32,
    /// `PREFETCH`: unacknowledged deliveries per consumer, default 200.
    pub prefetch: u16,
    /// `OUTBOX_POLL_MS`: the outbox relay's poll interval; NOTIFY wakes it sooner. Default 500.
    pub outbox_poll: Duration,
    /// `BODY_LIMIT_BYTES`: largest accepted request body, default 16384.
    pub body_limit: usize,
    /// `WRITE_LANES`: coalesced write batches in flight at once (alarm writes, item views), default 1.
    pub write_lanes: usize,
    /// `INSTANCE_ID`: names this instance's cache queue, default `<domain>-<pid>-<random>`.
    pub instance_id: String,
    /// `NEGATIVE_CACHE_MS`: how long an owner's "no such token / item" is remembered, so that
    /// repeated unknown tokens cost the owner one lookup, not one each; default 2000.
    pub negative_ttl: Duration,
    /// `OWN_READ_TIMEOUT_MS`: how long a read the owner serves from its own database (the alarm
    /// list) waits for it before answering from memory instead, default 250.
    pub own_read_timeout: Duration,
    /// `SHUTDOWN_DRAIN_MS`: after SIGTERM, how long `/ready` answers 503 while requests are
    /// still served, before the listener closes: one or two health-check intervals of the load
    /// balancer in front (`docs/deployment.md`). Default 0 (no load balancer).
    pub shutdown_drain: Duration,
    /// `EPOCH_PROBE_MS`: how often each replica asks its owner for its epoch and newest
    /// version (a restored or re-created owner database is noticed within this), default 1000.
    pub epoch_probe: Duration,
    /// `CACHE_ENTRIES`: the most entries each of the user and alarm caches holds (one per
    /// user; the least used are evicted), default 80000 (a full cache keeps the item service
    /// under 256 MiB: docs/operations.md).
    pub cache_entries: u64,
    /// `CACHE_RESTORE_ENTRIES`: how many of the persisted hot entries a start loads (the most
    /// recently saved first), default 50000.
    pub cache_restore_entries: u64,
    /// `TOKEN_HASH_KEY`: the secret every service of a deployment shares to hash access tokens
    /// (`crate::token::token_hash`); unset, the local development key (a warning at start).
    pub token_hash_key: Option<String>,
    /// `READ_MODELS`: keep a complete read model of every other domain's kind this service
    /// caches (users, alarm sets) in its own database, behind the bounded caches
    /// (`common::replica::read_model`), default 1; 0 leaves misses to the owner alone.
    pub read_models: bool,
    /// `READ_MODEL_PAGE_ROWS`: rows per page of a read model's backfill from its owner,
    /// default 10000.
    pub read_model_page_rows: u32,
    /// `READ_MODEL_PAGE_PAUSE_MS`: a pause between backfill pages, to spare an owner that
    /// serves traffic (and for tests, to make a backfill last), default 0.
    pub read_model_page_pause: Duration,
    /// `READ_MODEL_CHECK_MS`: how often a complete read model compares its digest with the
    /// owner's (it also does at every start and re-subscription), default 300000.
    pub read_model_check: Duration,
}

impl std::fmt::Debug for Settings {
    // Credentials in URLs are never logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("domain", &self.domain)
            .field("http", &format_args!("{}:{}", self.http_host, self.http_port))
            .field("http_workers", &self.http_workers)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_migrate_url", &self.database_migrate_url.as_deref().map(redact_url))
            .field("amqp_urls", &self.amqp_urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
            .field("rpc_timeout", &self.rpc_timeout)
            .field("db_statement_timeout", &self.db_statement_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db`.
/// `AMQP_URL` as a list: one URL, or several separated by commas (the nodes of a cluster).
/// Blanks around commas are ignored; every entry must be an amqp:// or amqps:// URL.
pub fn parse_amqp_urls(value: &str) -> Result<Vec<String>, Error> {
    let urls: Vec<String> = value.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect();
    if urls.is_empty() {
        return Err(Error::Config("AMQP_URL is empty: give one amqp:// URL, or several separated by commas".into()));
    }
    if let Some(bad) = urls.iter().find(|u| !u.starts_with("amqp://") && !u.starts_with("amqps://")) {
        return Err(Error::Config(format!(
            "AMQP_URL must be amqp:// URLs separated by commas; {} is not one",
            redact_url(bad)
        )));
    }
    Ok(urls)
}

pub fn redact_url(url: &str) -> String {
    // A password may also be a query parameter (`postgres://u@h/db?password=p`, which
    // tokio-postgres and libpq accept) or a keyword of a key=value string (`host=h password=p`).
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s && base[s + 3..at].contains(':') => {
            let creds = &base[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &base[..s + 3], user, &base[at..])
        }
        (Some(_), _) => base.to_string(),
        (None, _) => redact_keywords(base),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

/// `password`, `sslpassword` and the like, in any case.
fn is_secret_key(key: &str) -> bool {
    key.trim().to_ascii_lowercase().ends_with("password")
}

/// A libpq key=value connection string with every password's value (quoted or not) as `***`.
fn redact_keywords(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim_end();
        let secret = is_secret_key(&key[key.rfind(char::is_whitespace).map_or(0, |i| i + 1)..]);
        out.push_str(&rest[..=eq]);
        rest = &rest[eq + 1..];
        let value = rest.trim_start();
        out.push_str(&rest[..rest.len() - value.len()]);
        // the value: up to the closing quote (backslash escapes skipped) or the next whitespace
        let len = if let Some(quoted) = value.strip_prefix('\'') {
            let mut escaped = false;
            quoted
                .char_indices()
                .find(|&(_, c)| {
                    let end = !escaped && c == '\'';
                    escaped = !escaped && c == '\\';
                    end
                })
                .map_or(value.len(), |(i, _)| i + 2)
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        out.push_str(if secret { "***" } else { &value[..len] });
        rest = &value[len..];
    }
    out.push_str(rest);
    out
}

/// The names of every environment variable a service of `domain` reads.
pub fn env_var_names(domain: Domain) -> Vec<String> {
    let p = domain.env_prefix();
    let mut names = vec![format!("{p}_HTTP_PORT"), format!("{p}_DATABASE_URL"), format!("{p}_DATABASE_MIGRATE_URL")];
    names.extend(
        [
            "HTTP_HOST",
            "HTTP_WORKERS",
            "DB_POOL_SIZE",
            "DB_TIMEOUT_MS",
            "DB_STATEMENT_TIMEOUT_MS",
            "WRITE_TIMEOUT_MS",
            "HEADER_TIMEOUT_MS",
            "BODY_TIMEOUT_MS",
            "AMQP_URL",
            "AMQP_OWNER_LOGINS",
            "RPC_TIMEOUT_MS",
            "SNAPSHOT_TIMEOUT_MS",
            "SNAPSHOT_PAGE_SIZE",
            "PREFETCH",
            "OUTBOX_POLL_MS",
            "BODY_LIMIT_BYTES",
            "WRITE_LANES",
            "INSTANCE_ID",
            "NEGATIVE_CACHE_MS",
            "EPOCH_PROBE_MS",
            "OWN_READ_TIMEOUT_MS",
            "SHUTDOWN_DRAIN_MS",
            "CACHE_ENTRIES",
            "CACHE_RESTORE_ENTRIES",
        ]
        .map(String::from),
    );
    names
}

/// A non-negative integer setting, or the error naming it.
fn parse_number(k: &str, v: &str) -> Result<u64, Error> {
    v.trim().parse::<u64>().map_err(|_| Error::Config(format!("{k} must be a non-negative integer, got {v:?}")))
}

/// An on/off setting that one service alone reads (the user service's `USER_LIST_TOKENS`):
/// `0` is off, any other non-negative integer on, unset or empty the default.
pub fn flag(get: impl Fn(&str) -> Option<String>, name: &str, default: bool) -> Result<bool, Error> {
    match get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => Ok(parse_number(name, &v)? != 0),
    }
}

/// [`flag`] from the process's environment.
pub fn flag_from_env(name: &str, default: bool) -> Result<bool, Error> {
    flag(|k| std::env::var(k).ok(), name, default)
}

impl Settings {
    pub fn from_env(domain: Domain) -> Result<Self, Error> {
        Self::from_lookup(domain, |k| std::env::var(k).ok())
    }

    /// Builds settings from any key → value lookup (tests pass a map).
    pub fn from_lookup(domain: Domain, get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let p = domain.env_prefix();
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let num = |k: &str, default: u64| var(k).map_or(Ok(default), |v| parse_number(k, &v));
        let http_port_key = format!("{p}_HTTP_PORT");
        let http_port = num(&http_port_key, domain.default_http_port().into())?;
        let http_port =
            u16::try_from(http_port).map_err(|_| Error::Config(format!("{http_port_key} must be a TCP port")))?;
        let database_url =
            var(&format!("{p}_DATABASE_URL")).unwrap_or_else(|| domain.default_database_url().to_string());
        let is_postgres = |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !is_postgres(&database_url) {
            return Err(Error::Config(format!("{p}_DATABASE_URL must be a postgres:// URL")));
        }
        let database_migrate_url = var(&format!("{p}_DATABASE_MIGRATE_URL"));
        if database_migrate_url.as_deref().is_some_and(|u| !is_postgres(u)) {
            return Err(Error::Config(format!("{p}_DATABASE_MIGRATE_URL must be a postgres:// URL")));
        }
        let amqp_urls = parse_amqp_urls(&var("AMQP_URL").unwrap_or_else(|| domain.default_amqp_url().into()))?;
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) as u64;
        let positive = |k: &str, default: u64| -> Result<u64, Error> {
            let v = num(k, default)?;
            if v == 0 {
                return Err(Error::Config(format!("{k} must be greater than 0")));
            }
            Ok(v)
        };
        let instance_id = var("INSTANCE_ID").unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            format!("{}-{}-{:x}", domain.name(), std::process::id(), nanos)
        });
        Ok(Settings {
            domain,
            http_host: var("HTTP_HOST").unwrap_or_else(|| "127.0.0.1".into()),
            http_port,
            http_workers: positive("HTTP_WORKERS", cpus)? as usize,
            database_url,
            database_migrate_url,
            db_pool_size: positive("DB_POOL_SIZE", 16)? as u32,
            db_timeout: Duration::from_millis(positive("DB_TIMEOUT_MS", 2000)?),
            db_statement_timeout: Duration::from_millis(positive("DB_STATEMENT_TIMEOUT_MS", 5000)?),
            write_timeout: Duration::from_millis(positive("WRITE_TIMEOUT_MS", 5000)?),
            header_timeout: Duration::from_millis(positive("HEADER_TIMEOUT_MS", 5000)?),
            body_timeout: Duration::from_millis(positive("BODY_TIMEOUT_MS", 5000)?),
            amqp_urls,
            amqp_owner_logins: var("AMQP_OWNER_LOGINS"),
            rpc_timeout: Duration::from_millis(positive("RPC_TIMEOUT_MS", 300)?),
            snapshot_timeout: Duration::from_millis(positive("SNAPSHOT_TIMEOUT_MS", 10_000)?),
            // An owner answers pages of at most 100000 rows (`amqp::rpc::MAX_PAGE_ROWS`).
            snapshot_page_size: match positive("SNAPSHOT_PAGE_SIZE", 20_000)? {
                n @ 1..=100_000 => n as u32,
                _ => return Err(Error::Config("SNAPSHOT_PAGE_SIZE must be at most 100000".into())),
            },
            prefetch: u16::try_from(positive("PREFETCH", 200)?)
                .map_err(|_| Error::Config("PREFETCH must fit in 16 bits".into()))?,
            outbox_poll: Duration::from_millis(positive("OUTBOX_POLL_MS", 500)?),
            body_limit: positive("BODY_LIMIT_BYTES", 16 * 1024)? as usize,
            write_lanes: positive("WRITE_LANES", 1)? as usize,
            instance_id,
            negative_ttl: Duration::from_millis(positive("NEGATIVE_CACHE_MS", 2000)?),
            epoch_probe: Duration::from_millis(positive("EPOCH_PROBE_MS", 1000)?),
            own_read_timeout: Duration::from_millis(positive("OWN_READ_TIMEOUT_MS", 250)?),
            shutdown_drain: Duration::from_millis(num("SHUTDOWN_DRAIN_MS", 0)?),
            cache_entries: positive("CACHE_ENTRIES", 80_000)?,
            cache_restore_entries: num("CACHE_RESTORE_ENTRIES", 50_000)?,
            token_hash_key: var("TOKEN_HASH_KEY"),
            read_models: num("READ_MODELS", 1)? != 0,
            read_model_page_rows: u32::try_from(positive("READ_MODEL_PAGE_ROWS", 10_000)?.min(100_000))
                .unwrap_or(100_000),
            read_model_page_pause: Duration::from_millis(num("READ_MODEL_PAGE_PAUSE_MS", 0)?),
            read_model_check: Duration::from_millis(positive("READ_MODEL_CHECK_MS", 300_000)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_services_own_flag_is_an_integer_with_a_default() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert!(flag(env(&[]), "SHOW", true).unwrap());
        assert!(!flag(env(&[]), "SHOW", false).unwrap());
        assert!(!flag(env(&[("SHOW", "0")]), "SHOW", true).unwrap());
        assert!(flag(env(&[("SHOW", " 2 ")]), "SHOW", false).unwrap());
        assert!(flag(env(&[("SHOW", "")]), "SHOW", true).unwrap());
        let e = flag(env(&[("SHOW", "yes")]), "SHOW", true).unwrap_err().to_string();
        assert!(e.contains("SHOW must be a non-negative integer"), "{e}");
    }
    use std::collections::HashMap;

    #[test]
    fn each_domain_is_its_row_and_its_names_follow_the_conventions() {
        assert!(!Domain::all().is_empty());
        for (i, d) in Domain::all().iter().copied().enumerate() {
            assert_eq!(d.index(), i, "index is the place in Domain::all()");
            assert!(d.is_listed());
            assert_eq!(Domain::named(d.name()), Some(d));
            assert_eq!(d.env_prefix(), d.name().to_uppercase());
            assert_eq!(d.events_exchange(), format!("{}.events", d.name()));
            assert_eq!(d.rpc_queue(), format!("{}.rpc", d.name()));
            assert!(d.default_database_url().contains(&format!("{}_service:", d.name())), "its own login role");
            assert!(d.default_amqp_url().contains(&format!("//{}-service:", d.name())), "its own broker user");
        }
        assert_eq!(Domain::named("unlisted"), None);
        assert!(!Domain::new("unlisted").is_listed());
    }

    #[test]
    fn a_malformed_domain_list_is_refused_with_its_line() {
        let ok = parse_domains("# c\nitem 5001 5432\n\nreview\t8001\t5435\n").unwrap();
        assert_eq!(ok.iter().map(|a| a.domain.name()).collect::<Vec<_>>(), ["item", "review"]);
        assert_eq!(ok[1].database_url, "postgres://review_service:review-service-local@127.0.0.1:5435/review_db");
        assert_eq!(ok[1].env_prefix, "REVIEW");
        for (bad, says) in [
            ("item 5001\n", "is not `name http_port db_port`"),
            ("item 5001 5432 x\n", "is not `name http_port db_port`"),
            ("Item 5001 5432\n", "lower-case"),
            ("item 5001 99999\n", "is not a port"),
            ("item 5001 5432\nitem 6001 5433\n", "twice"),
        ] {
            let err = parse_domains(bad).err().unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_point_each_domain_at_its_own_database() {
        for d in Domain::all().iter().copied() {
            let s = Settings::from_lookup(d, lookup(&[])).unwrap();
            assert!(s.database_url.ends_with(&format!("/{}_db", d.name())));
            assert_eq!(s.http_port, d.default_http_port());
            assert_eq!(s.rpc_timeout, Duration::from_millis(300));
        }
    }

    #[test]
    fn amqp_url_takes_one_node_or_a_comma_separated_cluster() {
        let one = Settings::from_lookup(Domain::new("item"), lookup(&[("AMQP_URL", "amqp://a:b@h:5672/%2f")])).unwrap();
        assert_eq!(one.amqp_urls, vec!["amqp://a:b@h:5672/%2f"]);
        let three = Settings::from_lookup(
            Domain::new("item"),
            lookup(&[("AMQP_URL", "amqp://a:b@h:5672/%2f, amqp://a:b@h:5673/%2f,amqps://a:b@h:5674/%2f,")]),
        )
        .unwrap();
        assert_eq!(three.amqp_urls, vec!["amqp://a:b@h:5672/%2f", "amqp://a:b@h:5673/%2f", "amqps://a:b@h:5674/%2f"]);
        for bad in [" , ", "amqp://a:b@h:5672/%2f,http://a:secret@h/"] {
            let err = Settings::from_lookup(Domain::new("item"), lookup(&[("AMQP_URL", bad)])).unwrap_err().to_string();
            assert!(err.contains("AMQP_URL"), "{bad:?}: {err}");
            assert!(!err.contains("secret"), "credentials stay out of errors: {err}");
        }
        // Credentials never reach the logs, for any node.
        let shown = format!("{three:?}");
        assert!(shown.contains("h:5674") && !shown.contains("a:b@"), "{shown}");
    }

    #[test]
    fn a_service_never_reads_another_domains_database_variable() {
        for d in Domain::all().iter().copied() {
            let names = env_var_names(d);
            for other in Domain::all().iter().copied().filter(|o| *o != d) {
                let foreign = format!("{}_DATABASE_URL", other.env_prefix());
                assert!(!names.contains(&foreign), "{d:?} reads {foreign}");
                // Even when the foreign variable is set, it is ignored.
                let s = Settings::from_lookup(d, lookup(&[(&foreign, "postgres://x@h/other")])).unwrap();
                assert_eq!(s.database_url, d.default_database_url());
            }
        }
    }

    #[test]
    fn bad_values_are_rejected_with_the_variable_name() {
        let err = Settings::from_lookup(Domain::new("item"), lookup(&[("ITEM_HTTP_PORT", "70000")])).unwrap_err();
        assert!(err.to_string().contains("ITEM_HTTP_PORT"));
        let err = Settings::from_lookup(Domain::new("item"), lookup(&[("RPC_TIMEOUT_MS", "abc")])).unwrap_err();
        assert!(err.to_string().contains("RPC_TIMEOUT_MS"));
        let err =
            Settings::from_lookup(Domain::new("user"), lookup(&[("USER_DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().contains("USER_DATABASE_URL"));
    }

    #[test]
    fn defaults_are_the_services_own_logins_never_an_administrator() {
        for d in Domain::all().iter().copied() {
            let s = Settings::from_lookup(d, lookup(&[])).unwrap();
            let db_user = s.database_url.split("://").nth(1).and_then(|r| r.split(':').next()).unwrap();
            assert_eq!(db_user, format!("{}_service", d.name()), "{d:?}");
            assert!(s.amqp_urls.iter().all(|u| u.starts_with(&format!("amqp://{}-service:", d.name()))), "{d:?}");
            assert!(s.database_migrate_url.is_none(), "no owner login unless given");
        }
        let bad = Settings::from_lookup(Domain::new("item"), lookup(&[("ITEM_DATABASE_MIGRATE_URL", "mysql://x")]));
        assert!(bad.unwrap_err().to_string().contains("ITEM_DATABASE_MIGRATE_URL"));
    }

    #[test]
    fn debug_output_hides_passwords() {
        let s = Settings::from_lookup(Domain::new("alarm"), lookup(&[])).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("alarm-service-local"), "{shown}");
        assert!(!shown.contains("alarm-local"), "{shown}");
        assert_eq!(redact_url("amqp://u:p@h:1/v"), "amqp://u:***@h:1/v");
    }

    #[test]
    fn redact_url_hides_passwords_in_the_query_and_in_key_value_strings() {
        assert_eq!(
            redact_url("postgres://u@h:5432/db?sslmode=disable&password=s3cr3t&application_name=x"),
            "postgres://u@h:5432/db?sslmode=disable&password=***&application_name=x"
        );
        assert_eq!(redact_url("postgres://u:p@h/db?PASSWORD=q"), "postgres://u:***@h/db?PASSWORD=***");
        // an `@` in a query password must not be taken for the end of the user info
        assert_eq!(redact_url("postgres://h/db?password=a@b"), "postgres://h/db?password=***");
        assert_eq!(redact_url("amqp://h:5672/%2f?heartbeat=10"), "amqp://h:5672/%2f?heartbeat=10");
        assert_eq!(redact_url("host=h user=u password=s3cr3t dbname=d"), "host=h user=u password=*** dbname=d");
        assert_eq!(
            redact_url("host=h password = 'a b\\' c' sslpassword=k dbname=d"),
            "host=h password = *** sslpassword=*** dbname=d"
        );
        for shown in [
            redact_url("postgres://u@h/db?password=s3cr3t"),
            redact_url("host=h password='s3 cr3t'"),
            redact_url("password=s3cr3t"),
        ] {
            assert!(!shown.contains("s3"), "{shown}");
        }
    }
}
