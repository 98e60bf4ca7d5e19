//! The integration-test harness.
//!
//! `scripts/test` starts one throwaway PostgreSQL server and one RabbitMQ node on free ports
//! and passes their addresses in `MOA_TEST_*` variables. Each test gets a [`System`] of its
//! own: three fresh databases loaded from a seed, its own RabbitMQ virtual host (so exchanges
//! and queues of concurrent tests never meet), and the three real service binaries.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

/// `RPC_TIMEOUT_MS`'s documented default, 300 ms: the harness leaves the services at it (it does
/// not set the variable), so the tests exercise the value production runs with. A test may set
/// another through [`System::start_with`].
pub const RPC_TIMEOUT: Duration = Duration::from_millis(300);

/// The RPC timeout the harness's services run with and the bound checks assert: [`RPC_TIMEOUT`],
/// unless `MOA_TEST_RPC_TIMEOUT_MS` is set, an escape hatch for a host too loaded for debug
/// builds to answer a first request's RPC within 300 ms (docs/operations.md, "Tests"); then the
/// services get `RPC_TIMEOUT_MS` = that and the bounds are checked at it.
pub fn rpc_timeout() -> Duration {
    match std::env::var("MOA_TEST_RPC_TIMEOUT_MS") {
        Ok(v) if !v.is_empty() => Duration::from_millis(
            v.parse().unwrap_or_else(|_| panic!("MOA_TEST_RPC_TIMEOUT_MS must be milliseconds, not {v:?}")),
        ),
        _ => RPC_TIMEOUT,
    }
}
/// `OWN_READ_TIMEOUT_MS`'s documented default: how long the alarm list waits for alarm_db.
pub const OWN_READ_TIMEOUT: Duration = Duration::from_millis(250);

pub use reqwest::Method;

pub mod blackhole;
pub mod stack;

/// Where `scripts/test` put the throwaway servers.
pub struct TestEnv {
    pub pg_port: u16,
    pub amqp_port: u16,
    pub mgmt_port: u16,
    pub bin_dir: PathBuf,
    pub repo_dir: PathBuf,
    pub state_dir: PathBuf,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the integration tests run through `scripts/test`, which starts PostgreSQL and RabbitMQ for them")
    })
}

pub fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let port = |n: &str| var(n).parse::<u16>().unwrap_or_else(|_| panic!("{n} must be a port"));
        TestEnv {
            pg_port: port("MOA_TEST_PG_PORT"),
            amqp_port: port("MOA_TEST_AMQP_PORT"),
            mgmt_port: port("MOA_TEST_RABBIT_MGMT_PORT"),
            bin_dir: PathBuf::from(var("MOA_TEST_BIN_DIR")),
            repo_dir: PathBuf::from(var("MOA_REPO_DIR")),
            state_dir: PathBuf::from(var("MOA_TEST_STATE_DIR")),
        }
    })
}

/// The domains' names and their HTTP ports (as the compose files have them too), in the order
/// of `domains.tsv`, the repository's one list of them (`name http_port db_port` on each line
/// that is no comment; `scripts/lib.sh` reads the same file).
pub fn domain_http_ports() -> Vec<(&'static str, &'static str)> {
    include_str!("../../domains.tsv")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            Some((fields.next()?, fields.next().expect("domains.tsv: name http_port db_port")))
        })
        .collect()
}

/// The domains' names, in the order of `domains.tsv`.
pub fn domains() -> Vec<&'static str> {
    domain_http_ports().into_iter().map(|(name, _)| name).collect()
}

/// A service the harness starts itself: a domain of `domains.tsv` by its name. The harness
/// starts every domain the file lists ([`Svc::all`]); the constants are the three the tests
/// address by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Svc(&'static str);

impl Svc {
    pub const ITEM: Svc = Svc("item");
    pub const ALARM: Svc = Svc("alarm");
    pub const USER: Svc = Svc("user");

    /// Every domain of `domains.tsv`, in its order.
    pub fn all() -> Vec<Svc> {
        domains().into_iter().map(Svc).collect()
    }

    pub fn name(self) -> &'static str {
        self.0
    }

    /// Prefix of its own variables (`ITEM_HTTP_PORT`, ...).
    fn prefix(self) -> String {
        self.name().to_uppercase()
    }
}

/// Which data the three databases start from.
#[derive(Debug, Clone)]
pub enum Seed {
    /// The dumps the domains were provided with (`../shared/seed`); may be absent.
    Provided,
    /// The project's own generated demo seed (`seed/demo`).
    Demo,
    /// A seed `seedgen` makes for the test (100 items, these many users and alarms; alarms
    /// loaded as a dump is, before change capture exists: unversioned).
    Generated { users: u32, alarms: u32 },
}

impl Seed {
    pub fn dir(&self) -> Option<PathBuf> {
        let dir = match self {
            Seed::Provided => std::env::var("MOA_PROVIDED_SEED_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| env().repo_dir.join("../shared/seed")),
            Seed::Demo => env().repo_dir.join("seed/demo"),
            Seed::Generated { users, alarms } => generated_seed(*users, *alarms),
        };
        dir.join("item/init_database.sql").exists().then_some(dir)
    }
}

/// The dumps of [`Seed::Generated`], made once per run (`seedgen`, built with the services).
fn generated_seed(users: u32, alarms: u32) -> PathBuf {
    let dir = env().state_dir.join(format!("seeds/u{users}-a{alarms}"));
    if dir.join("item/init_database.sql").exists() {
        return dir;
    }
    // Made aside and renamed: two tests asking for the same seed at once both get a whole one.
    let tmp = env().state_dir.join(format!(
        "seeds/.u{users}-a{alarms}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let out = Command::new(env().bin_dir.join("seedgen"))
        .args(["--out", &tmp.to_string_lossy(), "--users", &users.to_string(), "--alarms", &alarms.to_string()])
        .output()
        .expect("seedgen runs");
    assert!(out.status.success(), "seedgen: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::rename(&tmp, &dir);
    let _ = std::fs::remove_dir_all(&tmp);
    dir
}

/// The PostgreSQL servers and the RabbitMQ node a system runs on: the shared ones
/// `scripts/test` started, or dedicated ones this test starts (and may stop, crash and
/// restart) itself: `Infra::shared().with_own_rabbit().with_own_pg(&[Svc::USER])`.
pub struct Infra {
    pub amqp_port: u16,
    pub mgmt_port: u16,
    /// The server each domain's database lives on.
    pg_ports: BTreeMap<Svc, u16>,
    /// This test's own directory for dedicated servers (created on first use).
    dir: Option<PathBuf>,
    /// The distribution port of a dedicated RabbitMQ node.
    own_rabbit: Option<u16>,
    /// Domains whose database has a server of its own (under `dir/pg-<domain>`).
    own_pg: Vec<Svc>,
    /// When a system last declared its queues on this broker (see [`Infra::kill_rabbit`]).
    declared_at: std::sync::Mutex<Option<Instant>>,
}

/// How long RabbitMQ 3.10 may take to save a new quorum queue's registration. A node killed
/// before that brings the queue back broken (a member nothing elects, or one that cannot start:
/// docs/failures.md, "A quorum queue declared just before a crash"); the tests crash brokers
/// whose queues are older, as any broker's are but in its first second.
const QUORUM_SAVE_WINDOW: Duration = Duration::from_secs(2);

/// Runs `scripts/infra ARGS`; returns what it printed (stdout, then stderr).
fn infra_cmd(args: &[&str]) -> String {
    let script = env().repo_dir.join("scripts/infra");
    let out = Command::new(&script).args(args).output().expect("scripts/infra runs");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/infra {args:?} failed:\n{printed}");
    printed
}

/// Runs a bash snippet with `scripts/lib.sh` sourced (its helpers: `as_user`, `pg_bin`, ...).
fn lib_sh(snippet: &str) {
    let lib = env().repo_dir.join("scripts/lib.sh");
    let out =
        Command::new("bash").arg("-c").arg(format!(". '{}' && {snippet}", lib.display())).output().expect("bash runs");
    assert!(
        out.status.success(),
        "{snippet} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Infra {
    pub fn shared() -> Infra {
        let e = env();
        Infra {
            amqp_port: e.amqp_port,
            mgmt_port: e.mgmt_port,
            pg_ports: Svc::all().iter().map(|s| (*s, e.pg_port)).collect(),
            dir: None,
            own_rabbit: None,
            own_pg: Vec::new(),
            declared_at: std::sync::Mutex::new(None),
        }
    }

    fn own_dir(&mut self) -> PathBuf {
        self.dir.get_or_insert_with(|| named_dir(&env().state_dir.join("infra"), "i")).clone()
    }

    /// A RabbitMQ node of this test's own, so it can stop or kill it without disturbing others.
    pub fn with_own_rabbit(mut self) -> Infra {
        self.own_dir();
        // (RabbitMQ's CLI uses DIST_PORT + 10000..10010, above every port free_port hands out)
        let dist_port = free_port();
        self.amqp_port = free_port();
        self.mgmt_port = free_port();
        self.own_rabbit = Some(dist_port);
        self.start_rabbit();
        self
    }

    /// A PostgreSQL server of this test's own for each of `domains`: stopping one stops
    /// that domain's database only.
    pub fn with_own_pg(mut self, domains: &[Svc]) -> Infra {
        self.own_dir();
        for svc in domains {
            if !self.own_pg.contains(svc) {
                self.own_pg.push(*svc);
                self.pg_ports.insert(*svc, free_port());
                self.start_pg(*svc);
            }
        }
        self
    }

    /// The port of the server that holds `svc`'s database.
    pub fn pg_port(&self, svc: Svc) -> u16 {
        self.pg_ports[&svc]
    }

    fn rabbit_dir(&self) -> PathBuf {
        match (&self.dir, self.own_rabbit) {
            (Some(dir), Some(_)) => dir.join("rabbit"),
            _ => panic!("only a RabbitMQ node of the test's own (Infra::with_own_rabbit) can be stopped"),
        }
    }

    fn pg_dir(&self, svc: Svc) -> PathBuf {
        match &self.dir {
            Some(dir) if self.own_pg.contains(&svc) => dir.join(format!("pg-{}", svc.name())),
            _ => panic!("only a PostgreSQL server of the test's own (Infra::with_own_pg) can be stopped"),
        }
    }

    /// Stops the test's RabbitMQ node gracefully (SIGTERM).
    pub fn stop_rabbit(&self) {
        infra_cmd(&["rabbit-stop", &self.rabbit_dir().to_string_lossy()]);
    }

    /// Kills the test's RabbitMQ node with SIGKILL, as a crash would (every process of its
    /// process group: the start script, beam.smp and its helpers), and waits until it is gone.
    /// It waits first until the queues a system declared are [`QUORUM_SAVE_WINDOW`] old.
    pub fn kill_rabbit(&self) {
        let declared = *self.declared_at.lock().expect("declared_at");
        if let Some(left) = declared.and_then(|at| QUORUM_SAVE_WINDOW.checked_sub(at.elapsed())) {
            std::thread::sleep(left);
        }
        let dir = self.rabbit_dir();
        lib_sh(&format!(
            "pid=$(read_pid '{0}/rabbit.pid'); [ -n \"$pid\" ] && kill -KILL -- -$pid; \
             for i in $(seq 100); do pid_alive $pid || exit 0; sleep 0.1; done; exit 1",
            dir.display()
        ));
    }

    /// Starts the test's RabbitMQ node (again), which also elects any quorum queue that came
    /// back without a leader (`scripts/infra rabbit-start`): that check must have run.
    pub fn start_rabbit(&self) {
        let dist = self.own_rabbit.expect("a RabbitMQ node of the test's own");
        let printed = infra_cmd(&[
            "rabbit-start",
            &self.rabbit_dir().to_string_lossy(),
            &self.amqp_port.to_string(),
            &self.mgmt_port.to_string(),
            &dist.to_string(),
        ]);
        assert!(!printed.contains("could not check the quorum queues"), "scripts/infra rabbit-start:\n{printed}");
    }

    /// Notes that a system declared its queues on this broker now.
    fn note_declarations(&self) {
        *self.declared_at.lock().expect("declared_at") = Some(Instant::now());
    }

    /// Stops `svc`'s own PostgreSQL server gracefully (`pg_ctl -m fast`).
    pub fn stop_pg(&self, svc: Svc) {
        infra_cmd(&["pg-stop", &self.pg_dir(svc).to_string_lossy()]);
    }

    /// Stops `svc`'s own PostgreSQL server as a crash would: `pg_ctl -m immediate` (every
    /// server process quits at once, no checkpoint; the next start runs crash recovery).
    pub fn crash_pg(&self, svc: Svc) {
        lib_sh(&format!(
            "as_user postgres \"$(pg_bin pg_ctl)\" -D '{}/data' stop -m immediate -w -t 30 >/dev/null",
            self.pg_dir(svc).display()
        ));
    }

    /// Freezes `svc`'s own PostgreSQL server (SIGSTOP to the postmaster and every backend): a
    /// server that hangs rather than refuses, so callers meet their timeouts. [`Infra::thaw_pg`]
    /// resumes it.
    pub fn freeze_pg(&self, svc: Svc) {
        self.signal_pg(svc, "STOP");
    }

    pub fn thaw_pg(&self, svc: Svc) {
        self.signal_pg(svc, "CONT");
    }

    fn signal_pg(&self, svc: Svc, signal: &str) {
        lib_sh(&format!(
            "pid=$(pg_pid '{}'); [ -n \"$pid\" ] && kill -{signal} $pid $(pgrep -P $pid)",
            self.pg_dir(svc).display()
        ));
    }

    pub fn start_pg(&self, svc: Svc) {
        infra_cmd(&["pg-start", &self.pg_dir(svc).to_string_lossy(), &self.pg_port(svc).to_string()]);
        infra_cmd(&["pg-roles", &self.pg_port(svc).to_string(), svc.name()]);
    }
}

impl Drop for Infra {
    fn drop(&mut self) {
        let Some(dir) = &self.dir else { return };
        let script = env().repo_dir.join("scripts/infra");
        if self.own_rabbit.is_some() {
            // A throwaway broker: killed (its process group), not stopped gracefully (6 s under
            // load); rabbit-stop only if something of it outlived the kill.
            let lib = env().repo_dir.join("scripts/lib.sh");
            let kill = format!(
                ". '{}' && pid=$(read_pid '{}/rabbit.pid') && [ -n \"$pid\" ] && kill -KILL -- -$pid; \
                 for i in $(seq 50); do [ -z \"$(rabbit_pid '{1}')\" ] && exit 0; sleep 0.1; done; exit 1",
                lib.display(),
                dir.join("rabbit").display()
            );
            let killed = Command::new("bash").arg("-c").arg(kill).status().is_ok_and(|s| s.success());
            if !killed {
                let _ = Command::new(&script).arg("rabbit-stop").arg(dir.join("rabbit")).output();
            }
        }
        for svc in &self.own_pg {
            let pg_dir = dir.join(format!("pg-{}", svc.name()));
            // A server a failed test left frozen (freeze_pg) could not stop.
            let lib = env().repo_dir.join("scripts/lib.sh");
            let thaw = format!(
                ". '{}' && pid=$(pg_pid '{}') && [ -n \"$pid\" ] && kill -CONT $pid $(pgrep -P $pid)",
                lib.display(),
                pg_dir.display()
            );
            let _ = Command::new("bash").arg("-c").arg(thaw).output();
            let _ = Command::new(&script).arg("pg-stop").arg(pg_dir).output();
        }
        if std::env::var("KEEP_TEST_STATE").is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A response, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub content_type: String,
    pub text: String,
    pub json: Value,
}

impl Resp {
    /// Sends a request and reads the whole answer.
    pub async fn send(req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let text = r.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, headers, content_type, text, json }
    }

    /// The list's payload. Asserts the status first: a `503` or `500` is never read as an
    /// empty list.
    pub fn payload(&self) -> &Vec<Value> {
        assert_eq!(self.status, 200, "a list answers 200: {self:?}");
        assert_eq!(self.content_type, "application/json; charset=utf-8", "{self:?}");
        self.json["payload"].as_array().unwrap_or_else(|| panic!("a list has a payload array: {self:?}"))
    }
    /// The ids in a list answer (which must be a `200` with a payload).
    pub fn ids(&self) -> Vec<i64> {
        self.payload().iter().map(|i| i["id"].as_i64().unwrap_or_else(|| panic!("an id in {i}"))).collect()
    }
    /// The ids of the items flagged `is_alarm_set` in a list answer (which must be a `200`).
    pub fn alarmed_ids(&self) -> Vec<i64> {
        self.payload()
            .iter()
            .filter(|i| i["is_alarm_set"].as_bool().unwrap_or_else(|| panic!("is_alarm_set is a boolean in {i}")))
            .map(|i| i["id"].as_i64().unwrap_or_else(|| panic!("an id in {i}")))
            .collect()
    }
    /// A response header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    /// Asserts a `503` naming `who` in its hint, with `Retry-After: 1` (docs/decisions.md).
    pub fn assert_unavailable(&self, who: &str) {
        self.assert_error(503, "Service Unavailable");
        assert!(self.json["hint"].as_str().is_some_and(|h| h.contains(who)), "a hint naming {who}: {self:?}");
        assert_eq!(self.header("retry-after"), "1", "a 503 says when to retry: {self:?}");
    }
    /// Asserts the contract's error body: `{"result": <reason>, "hint": <non-empty>}`.
    pub fn assert_error(&self, status: u16, result: &str) {
        assert_eq!(self.status, status, "status of {self:?}");
        assert_eq!(self.content_type, "application/json; charset=utf-8", "{self:?}");
        assert_eq!(self.json["result"], result, "{self:?}");
        assert!(self.json["hint"].as_str().is_some_and(|h| !h.is_empty()), "hint in {self:?}");
        let obj = self.json.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 2, "only result and hint: {self:?}");
    }
    pub fn assert_empty(&self, status: u16) {
        assert_eq!(self.status, status, "status of {self:?}");
        assert_eq!(self.text, "{}", "{self:?}");
        assert_eq!(self.content_type, "application/json; charset=utf-8");
    }
}

struct Instance {
    svc: Svc,
    port: u16,
    child: Child,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One isolated HomeShopping Moa system.
pub struct System {
    pub name: String,
    /// This system's own log directory (`<state>/logs/<test>/<name>`): one file per start of
    /// each instance, `<service>-<n>.log`, never appended to.
    pub log_dir: PathBuf,
    /// Instances started so far (restarts included): numbers each start's log file.
    starts: u32,
    pub infra: Infra,
    instances: Vec<Instance>,
    stopped_ports: BTreeMap<Svc, u16>,
    pub http: reqwest::Client,
    extra_env: Vec<(String, String)>,
}

/// Records that the running test skips itself, and why: `scripts/test` lists every skip in
/// its summary (from `$MOA_TEST_STATE_DIR/skipped`), so a skipped test is never mistaken for
/// a passed one. The test's name is its thread's name (libtest and nextest name the thread
/// after the test, and `#[tokio::test]` runs the body on that thread).
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    eprintln!("SKIP {test}: {reason}");
    let line = format!("{test}: {reason}\n");
    let path = env().state_dir.join("skipped");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        panic!("cannot record the skip in {}: {e}", path.display());
    }
}

/// Where ports are reserved: one file per port, created with `O_EXCL`, holding the state dir
/// of the `scripts/test` run that took it (machine-wide, so two runs side by side never pick
/// the same port either; `scripts/test` removes its run's files when it ends).
fn port_registry() -> PathBuf {
    std::env::var("MOA_TEST_PORT_REGISTRY").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/tmp/moa-test-ports"))
}

/// A free TCP port on 127.0.0.1, reserved for this test alone: see [`free_ports`].
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The start of `n` consecutive free TCP ports, reserved for the calling test for the rest of
/// the run. Picked in 15000..25000: below the kernel's ephemeral range (32768..), where no
/// outgoing connection can take one before the server listens on it (a RabbitMQ management
/// listener failed so with `eaddrinuse` when ports came from binding `:0`), and below the
/// ports RabbitMQ's CLI tools listen on (distribution port + 10000..10010); each is bound once
/// to check nobody listens on it, then claimed in the registry ([`port_registry`]) with
/// `create_new`, so no other test (of this run or another) is handed it, even before its server
/// listens.
pub fn free_ports(n: u16) -> u16 {
    let registry = port_registry();
    std::fs::create_dir_all(&registry).expect("the port registry");
    let _ = Command::new("chmod").arg("1777").arg(&registry).status();
    let owner = std::env::var("MOA_TEST_STATE_DIR").unwrap_or_default();
    let mut seed = u64::from(std::process::id()) << 32
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        | 1;
    for _ in 0..5000 {
        // xorshift: a different candidate each round, and in each test process
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let start = 15000 + (seed % u64::from(10000 - n)) as u16;
        let range = start..start + n;
        if !range.clone().all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            continue;
        }
        let mut claimed = Vec::new();
        for p in range.clone() {
            let file = registry.join(p.to_string());
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&file) {
                Ok(mut f) => {
                    let _ = std::io::Write::write_all(&mut f, owner.as_bytes());
                    claimed.push(file);
                }
                Err(_) => break,
            }
        }
        if claimed.len() == usize::from(n) {
            return start;
        }
        // Part of the range is someone else's: give back what we took and look elsewhere.
        for f in claimed {
            let _ = std::fs::remove_file(f);
        }
    }
    panic!("no {n} consecutive free ports found in 15000..25000 (registry {})", registry.display())
}

/// A directory under `parent` that did not exist before: `stem`, or `stem-1`, `stem-2`, ...
/// (`create_dir`, not `create_dir_all`, is what makes it ours alone).
pub fn fresh_dir(parent: &std::path::Path, stem: &str) -> PathBuf {
    std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    for i in 0..10_000 {
        let dir = if i == 0 { parent.join(stem) } else { parent.join(format!("{stem}-{i}")) };
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let _ = Command::new("chmod").arg("755").arg(&dir).status();
                return dir;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("{}: {e}", dir.display()),
        }
    }
    panic!("no fresh directory {stem}-N under {}", parent.display())
}

/// A fresh directory with a short name (`<prefix><pid>`, `-1`, ...: PostgreSQL's socket path in
/// it must stay under 108 bytes), which says whose it is in a file `TEST`.
pub fn named_dir(parent: &std::path::Path, prefix: &str) -> PathBuf {
    let dir = fresh_dir(parent, &format!("{prefix}{}", std::process::id()));
    let _ = std::fs::write(dir.join("TEST"), test_name());
    dir
}

/// The running test's name as a file name (nextest and libtest name the test's thread after it).
pub fn test_name() -> String {
    let name = std::thread::current().name().unwrap_or("unnamed-test").to_string();
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '.' }).collect()
}

/// `svc`'s dump in the seed `dir`; a domain the seed has no dump of (the provided seed and
/// seedgen's hold item, alarm and user only) starts from its demo seed, as `scripts/up` does.
fn seed_file(dir: &std::path::Path, svc: Svc) -> PathBuf {
    let file = dir.join(svc.name()).join("init_database.sql");
    if file.exists() {
        file
    } else {
        env().repo_dir.join("seed/demo").join(svc.name()).join("init_database.sql")
    }
}

/// Loads a seed dump into `db` as `svc`'s owner role, as `scripts/infra pg-load` does: the
/// dump's `OWNER TO postgres` becomes the loading role, so nothing in the database is the
/// superuser's.
fn load_seed(pg_port: u16, db: &str, file: &std::path::Path, svc: Svc) {
    use std::io::Write;
    let dump = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let dump = dump.replace(" OWNER TO postgres;\n", " OWNER TO CURRENT_USER;\n");
    let (user, password) = db_credentials(svc, DbRole::Owner);
    let mut child = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &pg_port.to_string(), "-U", &user, "-d", db, "-v", "ON_ERROR_STOP=1", "-q"])
        .env("PGPASSWORD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    child.stdin.take().expect("psql's stdin").write_all(dump.as_bytes()).expect("the dump written to psql");
    let out = child.wait_with_output().expect("psql ends");
    assert!(out.status.success(), "loading {} into {db}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
}

/// Creates `db` owned by `svc`'s owner role (the superuser's connection `admin` creates it).
async fn create_db(admin: &tokio_postgres::Client, db: &str, svc: Svc, template: Option<&str>) {
    let owner = db_credentials(svc, DbRole::Owner).0;
    let template = template.map(|t| format!(" TEMPLATE \"{t}\"")).unwrap_or_default();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\"{template} OWNER {owner}"))
        .await
        .unwrap_or_else(|e| panic!("create database {db}{template}: {e}"));
}

/// A database on the shared server holding `seed_file` as loaded, for `CREATE DATABASE ...
/// TEMPLATE` (a file copy: cheaper than running the seed through psql for every test). Made
/// once per run and seed file by whichever test asks first (a lock file in the state dir); the
/// others wait for it to be ready. Nobody connects to it afterwards (a template in use cannot
/// be copied).
async fn seed_template(pg_port: u16, seed_file: &std::path::Path, svc: Svc) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed_file.to_string_lossy().bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let name = format!("seed_{:016x}_{pg_port}", hash);
    let dir = env().state_dir.join("templates");
    std::fs::create_dir_all(&dir).expect("templates dir");
    let (lock, ready) = (dir.join(format!("{name}.lock")), dir.join(format!("{name}.ready")));
    if std::fs::OpenOptions::new().write(true).create_new(true).open(&lock).is_ok() {
        let admin = pg(pg_port, "postgres").await;
        create_db(&admin, &name, svc, None).await;
        load_seed(pg_port, &name, seed_file, svc);
        admin
            .batch_execute(&format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE true"))
            .await
            .expect("mark the seed template");
        std::fs::write(&ready, "").expect("template ready marker");
        return name;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "the seed template {name} was not made within 60 s (lock {})",
            lock.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    name
}

pub async fn pg(pg_port: u16, db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={pg_port} user=postgres password=postgres dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap_or_else(|err| panic!("connect to {db}: {err}"));
    tokio::spawn(conn);
    client
}

/// A call to the RabbitMQ management API; returns the body.
pub fn mgmt(mgmt_port: u16, method: &str, path: &str, body: Option<&str>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "--max-time", "10", "-u", "guest:guest", "-X", method, "-H", "content-type: application/json"]);
    if let Some(b) = body {
        cmd.args(["-d", b]);
    }
    cmd.arg(format!("http://127.0.0.1:{mgmt_port}{path}"));
    let out = cmd.output().expect("curl runs");
    assert!(out.status.success() || method == "DELETE", "rabbitmq management {method} {path} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl System {
    pub fn db_name(&self, svc: Svc) -> String {
        format!("{}_{}", self.name, svc.name())
    }

    /// `svc`'s database as one of its roles (the service's runtime login, or the owner).
    pub fn database_url(&self, svc: Svc, role: DbRole) -> String {
        let (user, password) = db_credentials(svc, role);
        format!("postgres://{user}:{password}@127.0.0.1:{}/{}", self.infra.pg_port(svc), self.db_name(svc))
    }

    /// The operator's (guest, administrator) URL of this system's virtual host.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/{}", self.infra.amqp_port, self.name)
    }

    /// The URL `svc` connects with: its own restricted user (rabbitmq/service-users.json.in).
    pub fn service_amqp_url(&self, svc: Svc) -> String {
        let (user, password) = service_credentials(svc);
        format!("amqp://{user}:{password}@127.0.0.1:{}/{}", self.infra.amqp_port, self.name)
    }

    /// Starts a system on `seed`, or returns None (saying SKIP) when that seed is absent.
    pub async fn start(seed: Seed) -> Option<System> {
        Self::start_with(seed, &[]).await
    }

    pub async fn start_with(seed: Seed, extra_env: &[(&str, &str)]) -> Option<System> {
        Self::start_on(Infra::shared(), seed, extra_env).await
    }

    pub async fn start_on(infra: Infra, seed: Seed, extra_env: &[(&str, &str)]) -> Option<System> {
        let Some(dir) = seed.dir() else {
            skip(&format!("seed {seed:?} not found (the provided dumps live in ../shared/seed beside the clone)"));
            return None;
        };
        // A name no other system of the run had (databases and virtual hosts are named after
        // it, and a test killed at its deadline leaves them behind): claimed as a directory.
        let claimed = fresh_dir(
            &env().state_dir.join("systems"),
            &format!("t{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst)),
        );
        let name = claimed.file_name().and_then(|n| n.to_str()).expect("a system name").replace('-', "_");
        let log_dir = fresh_dir(&env().state_dir.join("logs").join(test_name()), &name);
        for svc in Svc::all() {
            let admin = pg(infra.pg_port(svc), "postgres").await;
            let db = format!("{name}_{}", svc.name());
            let seed_file = seed_file(&dir, svc);
            if infra.own_pg.contains(&svc) {
                // a server of the test's own: used once, loaded directly
                create_db(&admin, &db, svc, None).await;
                load_seed(infra.pg_port(svc), &db, &seed_file, svc);
            } else {
                let template = seed_template(infra.pg_port(svc), &seed_file, svc).await;
                create_db(&admin, &db, svc, Some(&template)).await;
            }
        }
        mgmt(infra.mgmt_port, "PUT", &format!("/api/vhosts/{name}"), None);
        let perms = r#"{"configure":".*","write":".*","read":".*"}"#;
        mgmt(infra.mgmt_port, "PUT", &format!("/api/permissions/{name}/guest"), Some(perms));
        prepare_vhost(infra.mgmt_port, &name);
        infra.note_declarations();
        let mut system = System {
            name,
            log_dir,
            starts: 0,
            infra,
            instances: Vec::new(),
            stopped_ports: BTreeMap::new(),
            http: http_client(Duration::from_secs(10)),
            extra_env: extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        for svc in Svc::all() {
            system.spawn(svc, None);
        }
        for svc in Svc::all() {
            system.wait_ready(svc).await;
        }
        // A test that tunes the read models (READ_MODEL_*) watches them build itself.
        if !extra_env.iter().any(|(k, _)| k.starts_with("READ_MODEL_")) {
            for svc in Svc::all() {
                system.wait_read_models(svc).await;
            }
        }
        Some(system)
    }

    /// Waits until every read model of `svc` is complete (`/ready`'s `checks.read_models`):
    /// the state a system runs in. Before, an uncached user is asked of its owner over RPC, the
    /// tier the fault tests check on their own (`READ_MODELS=0`); a test about something else
    /// would otherwise depend on a debug service answering that RPC within 300 ms while the
    /// whole suite loads the host. `/ready` does not wait for it, by design.
    pub async fn wait_read_models(&self, svc: Svc) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for port in self.ports(svc) {
            let mut last = serde_json::Value::Null;
            loop {
                if let Ok(r) = self.http.get(format!("http://127.0.0.1:{port}/ready")).send().await {
                    last = r.json().await.unwrap_or_default();
                    let models = &last["checks"]["read_models"];
                    let building = models.as_object().is_some_and(|m| m.values().any(|v| v != "complete"));
                    if !building && !last.is_null() {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "{}'s read models not complete in 60 s; its last /ready: {last}\n(logs in {})",
                    svc.name(),
                    self.log_dir.display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The environment a service binary gets: its own database URL and nothing of the others'.
    pub fn service_env(&self, svc: Svc, port: u16) -> Vec<(String, String)> {
        let mut vars = vec![
            (format!("{}_HTTP_PORT", svc.prefix()), port.to_string()),
            (format!("{}_DATABASE_URL", svc.prefix()), self.database_url(svc, DbRole::Service)),
            (format!("{}_DATABASE_MIGRATE_URL", svc.prefix()), self.database_url(svc, DbRole::Owner)),
            ("AMQP_URL".into(), self.service_amqp_url(svc)),
            ("HTTP_WORKERS".into(), "2".into()),
            ("DB_POOL_SIZE".into(), "4".into()),
            ("TOKEN_HASH_KEY".into(), TOKEN_HASH_KEY.into()),
            ("RUST_LOG".into(), std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into())),
        ];
        if rpc_timeout() != RPC_TIMEOUT {
            vars.push(("RPC_TIMEOUT_MS".into(), rpc_timeout().as_millis().to_string()));
        }
        vars.extend(self.extra_env.iter().cloned());
        vars
    }

    /// Starts one more instance of `svc` (on `port`, or a free one). Returns its port.
    pub fn spawn(&mut self, svc: Svc, port: Option<u16>) -> u16 {
        self.spawn_env(svc, port, &[])
    }

    /// [`System::spawn`] with some variables of its environment replaced (`AMQP_URL`, ...).
    pub fn spawn_env(&mut self, svc: Svc, port: Option<u16>, overrides: &[(&str, &str)]) -> u16 {
        let e = env();
        let port = port.unwrap_or_else(free_port);
        let n = self.starts;
        self.starts += 1;
        let log_path = self.log_dir.join(format!("{}-{n}.log", svc.name()));
        let log = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("a fresh log file {}: {e}", log_path.display()));
        let (out, err): (Stdio, Stdio) = if std::env::var("TEST_LOG").is_ok() {
            (Stdio::inherit(), Stdio::inherit())
        } else {
            (log.try_clone().expect("log").into(), log.into())
        };
        let mut cmd = Command::new(e.bin_dir.join(svc.name()));
        // Only what we set: no stray *_DATABASE_URL from the caller's environment.
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in self.service_env(svc, port) {
            cmd.env(k, v);
        }
        for (k, v) in overrides {
            cmd.env(k, v);
        }
        let child = cmd.stdout(out).stderr(err).spawn().unwrap_or_else(|err| panic!("start {}: {err}", svc.name()));
        self.instances.push(Instance { svc, port, child });
        port
    }

    pub fn port(&self, svc: Svc) -> u16 {
        self.instances
            .iter()
            .find(|i| i.svc == svc)
            .map(|i| i.port)
            .unwrap_or_else(|| panic!("{} is not running", svc.name()))
    }

    /// The process ids of the running instances of `svc`.
    pub fn pids(&self, svc: Svc) -> Vec<u32> {
        self.instances.iter().filter(|i| i.svc == svc).map(|i| i.child.id()).collect()
    }

    pub fn ports(&self, svc: Svc) -> Vec<u16> {
        self.instances.iter().filter(|i| i.svc == svc).map(|i| i.port).collect()
    }

    pub async fn wait_ready(&self, svc: Svc) {
        for port in self.ports(svc) {
            self.wait_ready_port(svc, port).await;
        }
    }

    pub async fn wait_ready_port(&self, svc: Svc, port: u16) {
        // A liveness bound, not a speed check: debug builds of a dozen services start side by
        // side on 2 cores while the rest of the suite runs.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::from("no answer");
        loop {
            if let Ok(r) = self.http.get(format!("http://127.0.0.1:{port}/ready")).send().await {
                if r.status() == 200 {
                    return;
                }
                last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default());
            }
            if Instant::now() >= deadline {
                // What it still waited for, and what it logged: a failure in CI is read from this.
                // Without the access log (its /ready polls would fill the tail), and with the
                // other services' ends: what this one waited for may be theirs.
                let tail = |svc: Svc, n: usize| {
                    let log = self.log(svc);
                    let lines: Vec<&str> = log.lines().filter(|l| !l.contains("moa::access")).collect();
                    lines[lines.len().saturating_sub(n)..].join("\n")
                };
                let others: Vec<String> = Svc::all()
                    .into_iter()
                    .filter(|s| *s != svc)
                    .map(|s| format!("the end of {}'s log:\n{}", s.name(), tail(s, 15)))
                    .collect();
                panic!(
                    "{} on :{port} not ready in 60 s; its last /ready: {last}\nthe end of its log (all in {}):\n{}\n{}",
                    svc.name(),
                    self.log_dir.display(),
                    tail(svc, 40),
                    others.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills every instance of `svc` with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill(&mut self, svc: Svc) {
        let (killing, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.instances).into_iter().partition(|i| i.svc == svc);
        self.instances = keep;
        for mut i in killing {
            self.stopped_ports.insert(svc, i.port);
            i.child.kill().unwrap_or_else(|e| panic!("SIGKILL {}: {e}", svc.name()));
            i.child.wait().unwrap_or_else(|e| panic!("wait for {}: {e}", svc.name()));
        }
    }

    /// Stops every instance of `svc` with SIGTERM (graceful), waits for it to exit and
    /// returns the exit codes (None: it had to be killed).
    /// Sends SIGTERM to the instance on `port` and returns at once (see [`System::reap`]).
    pub fn terminate(&self, port: u16) {
        let i = self.instances.iter().find(|i| i.port == port).unwrap_or_else(|| panic!("nothing runs on :{port}"));
        let _ = Command::new("kill").args(["-TERM", &i.child.id().to_string()]).status();
    }

    /// Waits up to `within` for the instance on `port` to exit: its exit code (None: killed
    /// by a signal, or still running at the deadline and then killed).
    pub async fn reap(&mut self, port: u16, within: Duration) -> Option<i32> {
        let at = self.instances.iter().position(|i| i.port == port).unwrap_or_else(|| panic!("nothing on :{port}"));
        let mut i = self.instances.remove(at);
        self.stopped_ports.insert(i.svc, i.port);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = i.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = i.child.kill();
                let _ = i.child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(&mut self, svc: Svc) -> Vec<Option<i32>> {
        let mut codes = Vec::new();
        let (stopping, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.instances).into_iter().partition(|i| i.svc == svc);
        self.instances = keep;
        for mut i in stopping {
            self.stopped_ports.insert(svc, i.port);
            let _ = Command::new("kill").args(["-TERM", &i.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(status)) = i.child.try_wait() {
                    codes.push(status.code());
                    break;
                }
                if Instant::now() > deadline {
                    let _ = i.child.kill();
                    let _ = i.child.wait();
                    codes.push(None);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        codes
    }

    /// The logs of every instance of `svc` this system started (restarts included), in order.
    pub fn log(&self, svc: Svc) -> String {
        let prefix = format!("{}-", svc.name());
        let mut files: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(&self.log_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter_map(|p| {
                        let name = p.file_name()?.to_str()?.to_string();
                        let n = name.strip_prefix(&prefix)?.strip_suffix(".log")?.parse().ok()?;
                        Some((n, p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.iter().map(|(_, p)| std::fs::read_to_string(p).unwrap_or_default()).collect()
    }

    /// Starts `svc` again on the port it had, and waits until it is ready.
    pub async fn restart(&mut self, svc: Svc) {
        let port = self.start_again(svc);
        self.wait_ready_port(svc, port).await;
    }

    /// Starts `svc` again on the port it had, without waiting for `/ready` (which a service
    /// whose database is down never reaches). Returns the port.
    pub fn start_again(&mut self, svc: Svc) -> u16 {
        let port = self.stopped_ports.get(&svc).copied();
        self.spawn(svc, port)
    }

    /// The management API's view of one of this system's queues (messages, consumers, ...).
    pub fn queue(&self, name: &str) -> Value {
        let q = mgmt(self.infra.mgmt_port, "GET", &format!("/api/queues/{}/{name}", self.name), None);
        serde_json::from_str(&q).unwrap_or_else(|e| panic!("queue {name}: {e}: {q}"))
    }

    /// Messages in `dead-letters`, from the management API's statistics, which lag the queue
    /// (by `collect_statistics_interval`, 1 s in `scripts/test`, 5 s by default): to poll for a
    /// count to rise. A check that there are none, or exactly n, reads [`System::queue_depth`].
    pub fn dead_letters(&self) -> i64 {
        self.queue("dead-letters")["messages"].as_i64().unwrap_or(0)
    }

    /// The messages ready in queue `name` now, as the broker answers a passive declare: exact,
    /// not the management API's lagging statistics (messages a consumer holds unacknowledged
    /// are not counted; nothing consumes `dead-letters`).
    pub async fn queue_depth(&self, name: &str) -> u32 {
        queue_depth_at(&self.amqp_url(), name).await
    }

    /// Messages in `dead-letters` now (exact: [`System::queue_depth`]).
    pub async fn dead_letters_now(&self) -> u32 {
        self.queue_depth("dead-letters").await
    }

    /// Runs `scripts/dead-letters ARGS` against this system's broker and vhost; returns stdout.
    pub fn dead_letters_script(&self, args: &[&str]) -> String {
        let out = Command::new(env().repo_dir.join("scripts/dead-letters"))
            .args(args)
            .env("RABBIT_MGMT_PORT", self.infra.mgmt_port.to_string())
            .env("RABBIT_VHOST", &self.name)
            .env("DEAD_LETTERS_SPOOL", env().state_dir.join(format!("dead-letters-{}", self.name)))
            .output()
            .expect("scripts/dead-letters runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "scripts/dead-letters {args:?} failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    pub async fn request(
        &self,
        method: Method,
        port: u16,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("http://127.0.0.1:{port}{path}"));
        if let Some(t) = token {
            req = req.header("USER-TOKEN", t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        Resp::send(req).await
    }

    pub async fn get(&self, svc: Svc, path: &str, token: &str) -> Resp {
        self.request(Method::GET, self.port(svc), path, Some(token), None).await
    }

    pub async fn post(&self, svc: Svc, path: &str, token: &str, body: &str) -> Resp {
        self.request(Method::POST, self.port(svc), path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, svc: Svc, path: &str, token: &str, body: &str) -> Resp {
        self.request(Method::DELETE, self.port(svc), path, Some(token), Some(body)).await
    }

    /// Runs SQL in `svc`'s database, as an operator with psql would.
    pub async fn sql(&self, svc: Svc, sql: &str) -> Vec<tokio_postgres::Row> {
        let client = pg(self.infra.pg_port(svc), &self.db_name(svc)).await;
        client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `(id, access_token)` of seed users, lowest ids first.
    pub async fn users(&self, n: i64) -> Vec<(i64, String)> {
        self.sql(Svc::USER, &format!("SELECT id, access_token FROM \"user\" ORDER BY id LIMIT {n}"))
            .await
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// The sum of one counter's series in `svc`'s `/metrics`, of those whose line contains `with`.
    pub async fn counter_sum(&self, svc: Svc, name: &str, with: &str) -> f64 {
        let r = self.request(Method::GET, self.port(svc), "/metrics", None, None).await;
        r.text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(with))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn token(&self) -> String {
        self.users(1).await.remove(0).1
    }

    /// Drops `svc`'s database and loads it again from `seed`, as `scripts/up --reset` or a
    /// restore from a dump does: its versions start again, under a new owner epoch.
    pub async fn recreate_db(&self, svc: Svc, seed: Seed) {
        let dir = seed.dir().expect("the seed exists");
        let db = self.db_name(svc);
        let admin = pg(self.infra.pg_port(svc), "postgres").await;
        admin.batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)")).await.expect("drop database");
        create_db(&admin, &db, svc, None).await;
        load_seed(self.infra.pg_port(svc), &db, &seed_file(&dir, svc), svc);
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for i in &mut self.instances {
            let _ = i.child.kill();
            let _ = i.child.wait();
        }
        if self.infra.own_rabbit.is_none() {
            mgmt(self.infra.mgmt_port, "DELETE", &format!("/api/vhosts/{}", self.name), None);
        }
        if std::env::var("KEEP_TEST_STATE").is_err() {
            // Databases on servers of the test's own go with the Infra's directory.
            for svc in Svc::all().into_iter().filter(|s| !self.infra.own_pg.contains(s)) {
                let _ = Command::new("psql")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &self.infra.pg_port(svc).to_string(),
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                        "-q",
                        "-c",
                    ])
                    .arg(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db_name(svc)))
                    .env("PGPASSWORD", "postgres")
                    .output();
            }
        }
    }
}

/// The messages ready in queue `name` of the broker and virtual host of `amqp_url`, as the
/// broker answers a passive declare (exact; see [`System::queue_depth`]).
pub async fn queue_depth_at(amqp_url: &str, name: &str) -> u32 {
    use lapin::{options::QueueDeclareOptions, types::FieldTable, Connection, ConnectionProperties};
    let conn = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("AMQP connection to read {name}'s depth: {e}"));
    let ch = conn.create_channel().await.expect("a channel");
    let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let q = ch
        .queue_declare(name.into(), options, FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("passive declare of {name}: {e}"));
    let _ = conn.close(200, "done".into()).await;
    q.message_count()
}

/// Polls `check` until it returns true or `within` passes; returns how long it took.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts a system or returns from the test (after printing SKIP) when its seed is absent.
#[macro_export]
macro_rules! system {
    ($seed:expr) => {
        match $crate::System::start($seed).await {
            Some(s) => s,
            None => return,
        }
    };
}

/// The `TOKEN_HASH_KEY` every service of a test system shares.
pub const TOKEN_HASH_KEY: &str = "e2e-token-hash-key";

/// What the services know of `token` (docs/security.md, "Tokens"): HMAC-SHA256 under
/// [`TOKEN_HASH_KEY`], its first 16 bytes in hex. Computed here from that description, not
/// with the services' code, to forge an event or to search a database for it.
pub fn token_hash(token: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::SimpleHmac::<sha2::Sha256>::new_from_slice(TOKEN_HASH_KEY.as_bytes()).expect("any key length");
    mac.update(token.as_bytes());
    mac.finalize().into_bytes()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// An HTTP client with `timeout` per request whose idle connections are dropped after 2 s,
/// before the services' keep-alive (actix's 5 s) closes them: a request sent on a connection
/// the server is closing at that moment is lost ("connection closed before message
/// completed"), which a load test would count as a failed request.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).pool_idle_timeout(Duration::from_secs(2)).build().expect("http client")
}

/// The RabbitMQ user of `svc` and its local password (rabbitmq/local-passwords.env, which
/// `scripts/infra rabbit-start` gives the brokers of `scripts/test`).
pub fn service_credentials(svc: Svc) -> (String, String) {
    let var = format!("{}_AMQP_PASSWORD", svc.prefix());
    let password = local_password("rabbitmq/local-passwords.env", &var, &format!("{}-local", svc.name()));
    (format!("{}-service", svc.name()), password)
}

/// `var`'s value in one of the repository's local password files (`VAR=value` lines), or
/// `default` when the file sets none: the local passwords' rule, as `scripts/lib.sh`'s
/// `local_password` has it (a domain added to domains.tsv needs no line).
fn local_password(file: &str, var: &str, default: &str) -> String {
    let path = env().repo_dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let key = format!("{var}=");
    text.lines().find_map(|l| l.trim().strip_prefix(&key)).filter(|v| !v.is_empty()).unwrap_or(default).to_string()
}

/// A domain's two PostgreSQL login roles (postgres/roles.sql).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRole {
    /// `<domain>_owner`: owns the database, loads the seed, applies the migrations.
    Owner,
    /// `<domain>_service`: what the service runs as (rows only).
    Service,
}

/// The login role `role` of `svc` and its local password (postgres/local-passwords.env, which
/// `scripts/infra pg-roles` gives the servers of `scripts/test`).
pub fn db_credentials(svc: Svc, role: DbRole) -> (String, String) {
    let (suffix, kind) = match role {
        DbRole::Owner => ("owner", "OWNER"),
        DbRole::Service => ("service", "SERVICE"),
    };
    let var = format!("{}_DB_{kind}_PASSWORD", svc.prefix());
    let password = local_password("postgres/local-passwords.env", &var, &format!("{}-{suffix}-local", svc.name()));
    (format!("{}_{suffix}", svc.name()), password)
}

/// `rabbitmq/NAME.json.in` rendered for the domains of domains.tsv, as the brokers of
/// `scripts/test` import it (`scripts/infra rabbit-render`).
fn rendered(name: &str) -> String {
    let out = std::process::Command::new(env().repo_dir.join("scripts/infra"))
        .args(["rabbit-render", name])
        .output()
        .unwrap_or_else(|e| panic!("scripts/infra rabbit-render {name}: {e}"));
    assert!(out.status.success(), "scripts/infra rabbit-render {name}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Makes a fresh virtual host look like the broker's "/" at boot: the shared topology from
/// rabbitmq/definitions.json.in (the services only check it, they do not create it) and the
/// services' users' permissions from rabbitmq/service-users.json.in (users are global, their
/// permissions are per virtual host), both rendered once per test process.
fn prepare_vhost(mgmt_port: u16, vhost: &str) {
    static DEFINITIONS: OnceLock<(String, Value)> = OnceLock::new();
    let (definitions, users) = DEFINITIONS.get_or_init(|| {
        let users = serde_json::from_str(&rendered("service-users")).expect("service-users.json.in renders JSON");
        (rendered("definitions"), users)
    });
    mgmt(mgmt_port, "POST", &format!("/api/definitions/{vhost}"), Some(definitions));
    for p in users["permissions"].as_array().expect("permissions") {
        let user = p["user"].as_str().expect("user");
        let body = serde_json::json!({"configure": p["configure"], "write": p["write"], "read": p["read"]});
        mgmt(mgmt_port, "PUT", &format!("/api/permissions/{vhost}/{user}"), Some(&body.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness's services are the domains of domains.tsv, and the three the tests name
    /// are among them.
    #[test]
    fn svc_is_the_domains_of_domains_tsv() {
        assert_eq!(Svc::all().into_iter().map(Svc::name).collect::<Vec<_>>(), domains());
        for named in [Svc::ITEM, Svc::ALARM, Svc::USER] {
            assert!(Svc::all().contains(&named), "{named:?} is not in domains.tsv");
        }
    }
}
