//! A whole `scripts/up` stack of its own: three PostgreSQL servers, a RabbitMQ node and the
//! three services, started, crashed and restarted with the operator's own scripts, in a
//! temporary run directory (`MOA_RUN_DIR`) on free ports, running the debug binaries the
//! harness was given (`MOA_BIN_DIR`), so no release build is needed.
//!
//! [`Stack::up_cluster`] starts the cluster topology instead (`scripts/up --rabbitmq-nodes N
//! --instances M`): components `rabbitmq-1..N`, `item-1..M`, ... and `lb`, addressed by name
//! ([`Stack::kill9_named`], [`Stack::up_named`], [`Stack::down_named`]).
//!
//! [`Stack::up_pg_standbys`] starts each domain's PostgreSQL with standbys (`scripts/up
//! --pg-standbys S`): components `pg-monitor`, `item-db-1..S+1`, ...; [`Stack::db`] then
//! connects to whichever member is the primary, [`Stack::pg_primary`] names it and
//! [`Stack::kill9_member`] takes a member down whole (its pg_autoctl and its postgres).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::{domains, env, free_port, free_ports, named_dir, pg};

/// What `scripts/up COMPONENT` starts, typed for the tests that crash and restart one; the
/// domains' components are those of `domains.tsv` ([`Stack::components`] reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    ItemDb,
    AlarmDb,
    UserDb,
    Rabbitmq,
    Item,
    Alarm,
    User,
}

impl Component {
    /// Every component, in `scripts/up`'s start order.
    pub const ALL: [Component; 7] = [
        Component::ItemDb,
        Component::AlarmDb,
        Component::UserDb,
        Component::Rabbitmq,
        Component::Item,
        Component::Alarm,
        Component::User,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::ItemDb => "item-db",
            Component::AlarmDb => "alarm-db",
            Component::UserDb => "user-db",
            Component::Rabbitmq => "rabbitmq",
            Component::Item => "item",
            Component::Alarm => "alarm",
            Component::User => "user",
        }
    }

    /// The port variable `scripts/lib.sh` reads for this component.
    fn port_var(self) -> String {
        match self {
            Component::Rabbitmq => "AMQP_PORT".into(),
            _ => match self.name().strip_suffix("-db") {
                Some(domain) => domain_port_var(domain, "DB"),
                None => domain_port_var(self.name(), "HTTP"),
            },
        }
    }
}

/// `<DOMAIN>_<KIND>_PORT`, a port variable of `scripts/lib.sh` (`"item"`, `"DB"` -> `ITEM_DB_PORT`).
fn domain_port_var(domain: &str, kind: &str) -> String {
    format!("{}_{kind}_PORT", domain.to_uppercase())
}

/// Every domain's port variables of `kinds` (`["DB", "HTTP"]`), for the domains of domains.tsv.
fn domain_port_vars(kinds: &[&str]) -> Vec<String> {
    kinds.iter().flat_map(|k| domains().into_iter().map(move |d| domain_port_var(d, k))).collect()
}

/// A stack started by `scripts/up`; `scripts/down` stops it when dropped.
pub struct Stack {
    pub run_dir: PathBuf,
    /// (variable, value) for every port `scripts/lib.sh` reads.
    ports: Vec<(String, u16)>,
    /// RabbitMQ nodes and instances per service (1 and 1: the classic topology).
    pub nodes: u16,
    pub instances: u16,
    /// PostgreSQL standbys per domain (0: one server per domain, the classic topology).
    pub pg_standbys: u16,
}

/// The output of a script that ran, for failure messages.
fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl Stack {
    /// Runs `scripts/up` (everything, demo seed) in a new run directory on free ports.
    pub fn up_all() -> Stack {
        let e = env();
        let run_dir = named_dir(&e.state_dir.join("stacks"), "s");
        let mut ports: Vec<(String, u16)> =
            domain_port_vars(&["DB", "HTTP"]).into_iter().map(|v| (v, free_port())).collect();
        // (RabbitMQ's CLI uses DIST_PORT + 10000..10010, above every port free_port hands out)
        for var in ["AMQP_PORT", "RABBIT_MGMT_PORT", "RABBIT_DIST_PORT"] {
            ports.push((var.into(), free_port()));
        }
        let stack = Stack { run_dir, ports, nodes: 1, instances: 1, pg_standbys: 0 };
        let started = Instant::now();
        let out = stack.script("up", &[]);
        assert!(out.status.success(), "scripts/up failed:\n{}", output_text(&out));
        eprintln!("stack: scripts/up in {} took {:.1} s", stack.run_dir.display(), started.elapsed().as_secs_f64());
        stack
    }

    /// `scripts/up --rabbitmq-nodes NODES --instances INSTANCES` in a new run directory, every
    /// port free: node i on AMQP_PORT + i - 1 (and the management and distribution ports alike),
    /// instance k of item on ITEM_INSTANCE_PORT + k - 1, the load balancer on the service ports.
    pub fn up_cluster(nodes: u16, instances: u16) -> Stack {
        let e = env();
        let run_dir = named_dir(&e.state_dir.join("stacks"), "s");
        let mut ports: Vec<(String, u16)> =
            domain_port_vars(&["DB", "HTTP"]).into_iter().map(|v| (v, free_port())).collect();
        ports.push(("LB_STATS_PORT".into(), free_port()));
        // (RabbitMQ's CLI uses DIST_PORT + 10000..10010, above every port free_ports hands out)
        for var in ["AMQP_PORT", "RABBIT_MGMT_PORT", "RABBIT_DIST_PORT"] {
            ports.push((var.into(), free_ports(nodes)));
        }
        for var in domain_port_vars(&["INSTANCE"]) {
            ports.push((var, free_ports(instances)));
        }
        let stack = Stack { run_dir, ports, nodes, instances, pg_standbys: 0 };
        let started = Instant::now();
        let out = stack.script("up", &["--rabbitmq-nodes", &nodes.to_string(), "--instances", &instances.to_string()]);
        assert!(
            out.status.success(),
            "scripts/up --rabbitmq-nodes {nodes} --instances {instances} failed:\n{}",
            output_text(&out)
        );
        eprintln!(
            "stack: scripts/up --rabbitmq-nodes {nodes} --instances {instances} in {} took {:.1} s",
            stack.run_dir.display(),
            started.elapsed().as_secs_f64()
        );
        stack
    }

    /// `scripts/up --pg-standbys STANDBYS` in a new run directory on free ports: the classic
    /// topology, but each domain's database a pg_auto_failover formation (member k of item on
    /// ITEM_DB_PORT + 10 (k - 1)) and the monitor on PG_MONITOR_PORT.
    pub fn up_pg_standbys(standbys: u16) -> Stack {
        let e = env();
        let run_dir = named_dir(&e.state_dir.join("stacks"), "pgsb");
        let mut ports: Vec<(String, u16)> = Vec::new();
        for var in domain_port_vars(&["DB"]) {
            ports.push((var, free_ports(10 * standbys + 1)));
        }
        for var in domain_port_vars(&["HTTP"]) {
            ports.push((var, free_ports(1)));
        }
        for var in ["AMQP_PORT", "RABBIT_MGMT_PORT", "PG_MONITOR_PORT", "RABBIT_DIST_PORT"] {
            ports.push((var.into(), free_ports(1)));
        }
        let stack = Stack { run_dir, ports, nodes: 1, instances: 1, pg_standbys: standbys };
        let started = Instant::now();
        let out = stack.script("up", &["--pg-standbys", &standbys.to_string()]);
        assert!(out.status.success(), "scripts/up --pg-standbys {standbys} failed:\n{}", output_text(&out));
        eprintln!(
            "stack: scripts/up --pg-standbys {standbys} in {} took {:.1} s",
            stack.run_dir.display(),
            started.elapsed().as_secs_f64()
        );
        stack
    }

    /// The members of `domain`'s database (`"alarm"` -> `alarm-db-1`, `alarm-db-2`), with standbys.
    pub fn pg_members(&self, domain: &str) -> Vec<String> {
        (1..=self.pg_standbys + 1).map(|k| format!("{domain}-db-{k}")).collect()
    }

    /// The port of member `name` (`"alarm-db-2"`).
    pub fn member_port(&self, name: &str) -> u16 {
        let (db, k) = name.rsplit_once('-').unwrap_or_else(|| panic!("{name} is no member"));
        let k: u16 = k.parse().unwrap_or_else(|_| panic!("{name} is no member"));
        self.port_var(&format!("{}_PORT", db.replace('-', "_").to_uppercase())) + 10 * (k - 1)
    }

    /// The member of `domain`'s formation the monitor has as its primary (`primary`, or
    /// `wait_primary`: a primary whose standby is away), if one is.
    pub fn pg_primary(&self, domain: &str) -> Option<String> {
        let monitor = self.port_var("PG_MONITOR_PORT").to_string();
        let (ok, out) = self.run_script("infra", &["pg-state", &monitor, domain]);
        if !ok {
            return None;
        }
        out.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[1] == f[2] && ["primary", "wait_primary", "single"].contains(&f[1]))
                .then(|| f[0].to_string())
        })
    }

    /// `(name, reported state, assigned state)` of every member of `domain`'s formation.
    pub fn pg_states(&self, domain: &str) -> Vec<(String, String, String)> {
        let monitor = self.port_var("PG_MONITOR_PORT").to_string();
        let (_, out) = self.run_script("infra", &["pg-state", &monitor, domain]);
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
            })
            .collect()
    }

    /// True when `domain`'s formation is whole: a primary and every other member its
    /// synchronous standby (`secondary`), each where the monitor assigned it.
    pub fn pg_formation_whole(&self, domain: &str) -> bool {
        let states = self.pg_states(domain);
        states.len() == usize::from(self.pg_standbys) + 1
            && states.iter().all(|(_, reported, assigned)| reported == assigned)
            && states.iter().filter(|(_, r, _)| r == "primary").count() == 1
            && states.iter().filter(|(_, r, _)| r == "secondary").count() == usize::from(self.pg_standbys)
    }

    /// SIGKILL to every process of member `name` (`"alarm-db-1"`): its `pg_autoctl run` (which
    /// leads the process group) and the postgres it runs, all at once, as when its machine
    /// dies. (A SIGKILL of the postmaster alone is undone by its pg_autoctl in a second or
    /// two, on the same member: no failover.) Returns the pg_autoctl pid.
    pub fn kill9_member(&self, name: &str) -> u32 {
        let pid = self.pid_named(name).unwrap_or_else(|| panic!("{name} does not run, nothing to kill"));
        let status = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status().expect("kill runs");
        assert!(status.success(), "kill -9 -{pid} ({name})");
        pid
    }

    /// A port variable of `scripts/lib.sh` this stack set (`"LB_STATS_PORT"`, ...).
    pub fn port_var(&self, var: &str) -> u16 {
        self.ports.iter().find(|(v, _)| *v == var).map(|(_, p)| *p).unwrap_or_else(|| panic!("{var} is not set"))
    }

    /// The HTTP port of instance `name` (`"item-2"`).
    pub fn instance_port(&self, name: &str) -> u16 {
        let (domain, k) = name.rsplit_once('-').unwrap_or_else(|| panic!("{name} is no instance"));
        let k: u16 = k.parse().unwrap_or_else(|_| panic!("{name} is no instance"));
        self.port_var(&format!("{}_INSTANCE_PORT", domain.to_uppercase())) + k - 1
    }

    /// The management port of RabbitMQ node `i` (1-based).
    pub fn mgmt_port(&self, i: u16) -> u16 {
        self.port_var("RABBIT_MGMT_PORT") + i - 1
    }

    /// Every component of the topology, in start order (`scripts/status`'s lines).
    pub fn components(&self) -> Vec<String> {
        let mut all: Vec<String> = if self.pg_standbys == 0 {
            domains().iter().map(|d| format!("{d}-db")).collect()
        } else {
            let mut members = vec!["pg-monitor".to_string()];
            for d in domains() {
                members.extend(self.pg_members(d));
            }
            members
        };
        if self.nodes == 1 {
            all.push("rabbitmq".into());
        } else {
            all.extend((1..=self.nodes).map(|i| format!("rabbitmq-{i}")));
        }
        for d in domains() {
            if self.instances == 1 {
                all.push(d.into());
            } else {
                all.extend((1..=self.instances).map(|k| format!("{d}-{k}")));
            }
        }
        if self.instances > 1 {
            all.push("lb".into());
        }
        all
    }

    /// Runs `scripts/NAME ARGS...` against this stack: (success, stdout and stderr).
    pub fn run_script(&self, name: &str, args: &[&str]) -> (bool, String) {
        let out = self.script(name, args);
        (out.status.success(), output_text(&out))
    }

    /// `scripts/up NAME` (`"rabbitmq-2"`, `"item-1"`): how long it took, or its output.
    pub fn up_named(&self, name: &str) -> Result<Duration, String> {
        let started = Instant::now();
        match self.run_script("up", &[name]) {
            (true, _) => Ok(started.elapsed()),
            (false, out) => Err(format!("scripts/up {name} failed:\n{out}")),
        }
    }

    /// `scripts/down NAME`: a graceful stop (an instance is drained out of the balancer first).
    pub fn down_named(&self, name: &str) -> Result<Duration, String> {
        let started = Instant::now();
        match self.run_script("down", &[name]) {
            (true, _) => Ok(started.elapsed()),
            (false, out) => Err(format!("scripts/down {name} failed:\n{out}")),
        }
    }

    /// The process whose crash takes component `name` down (see [`Stack::pid`]).
    pub fn pid_named(&self, name: &str) -> Option<u32> {
        let member = name == "pg-monitor"
            || name.rsplit_once('-').is_some_and(|(db, k)| db.ends_with("-db") && k.parse::<u16>().is_ok());
        let pid = if name.starts_with("rabbitmq") {
            beam_pid(&self.run_dir.join(name).join("mnesia"))?
        } else if member {
            // pg_autoctl's pid file: XDG_RUNTIME_DIR/pg_autoctl/<its data directory>/pg_autoctl.pid
            let dir = self.run_dir.join("pg").join(if name == "pg-monitor" { "monitor" } else { name });
            let data = dir.join("data").display().to_string();
            first_line_pid(&dir.join(format!("run/pg_autoctl{data}/pg_autoctl.pid")))?
        } else if let Some(domain) = name.strip_suffix("-db") {
            first_line_pid(&self.run_dir.join("pg").join(domain).join("data/postmaster.pid"))?
        } else {
            first_line_pid(&self.run_dir.join("pids").join(format!("{name}.pid")))?
        };
        alive(pid).then_some(pid)
    }

    /// SIGKILL to component `name`'s process; returns its pid.
    pub fn kill9_named(&self, name: &str) -> u32 {
        let pid = self.pid_named(name).unwrap_or_else(|| panic!("{name} does not run, nothing to kill"));
        kill_9_and_wait(pid, name);
        pid
    }

    /// `scripts/infra rabbit-ctl` on node `i`: a RabbitMQ CLI tool (`rabbitmqctl`,
    /// `rabbitmq-queues`) run against that node; its output, or a panic with it.
    pub fn rabbit_ctl(&self, i: u16, args: &[&str]) -> String {
        let dir =
            if self.nodes == 1 { self.run_dir.join("rabbitmq") } else { self.run_dir.join(format!("rabbitmq-{i}")) };
        let dir = dir.display().to_string();
        let mut all = vec!["rabbit-ctl", dir.as_str()];
        all.extend_from_slice(args);
        let (ok, out) = self.run_script("infra", &all);
        assert!(ok, "scripts/infra {} failed:\n{out}", all.join(" "));
        out
    }

    fn script(&self, name: &str, args: &[&str]) -> std::process::Output {
        let e = env();
        let mut cmd = Command::new(e.repo_dir.join("scripts").join(name));
        cmd.args(args)
            .env("MOA_RUN_DIR", &self.run_dir)
            .env("MOA_BIN_DIR", &e.bin_dir)
            .env("SEED_DIR", e.repo_dir.join("seed/demo"))
            .env("RUST_LOG", std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("READY_TIMEOUT", "120")
            // the topology is the stack's own (the run directory records it), never the caller's
            .env_remove("MOA_RABBITMQ_NODES")
            .env_remove("MOA_INSTANCES")
            .env_remove("MOA_PG_STANDBYS");
        for (var, port) in &self.ports {
            cmd.env(var, port.to_string());
        }
        if crate::rpc_timeout() != crate::RPC_TIMEOUT {
            cmd.env("RPC_TIMEOUT_MS", crate::rpc_timeout().as_millis().to_string());
        }
        cmd.output().unwrap_or_else(|err| panic!("scripts/{name} runs: {err}"))
    }

    /// `scripts/up COMPONENT`: how long it took, or its output when it failed.
    pub fn up(&self, c: Component) -> Result<Duration, String> {
        let started = Instant::now();
        let out = self.script("up", &[c.name()]);
        if out.status.success() {
            Ok(started.elapsed())
        } else {
            Err(format!("scripts/up {} exited with {}:\n{}", c.name(), out.status, output_text(&out)))
        }
    }

    pub fn port(&self, c: Component) -> u16 {
        self.ports.iter().find(|(v, _)| *v == c.port_var()).map(|(_, p)| *p).expect("every component has a port")
    }

    /// The process whose crash takes `c` down: the postmaster, the broker's beam.smp, the
    /// service itself. None when it does not run.
    pub fn pid(&self, c: Component) -> Option<u32> {
        let pid = match c {
            Component::ItemDb | Component::AlarmDb | Component::UserDb => {
                let domain = c.name().trim_end_matches("-db");
                first_line_pid(&self.run_dir.join("pg").join(domain).join("data/postmaster.pid"))?
            }
            Component::Rabbitmq => beam_pid(&self.run_dir.join("rabbitmq/mnesia"))?,
            Component::Item | Component::Alarm | Component::User => {
                first_line_pid(&self.run_dir.join("pids").join(format!("{}.pid", c.name())))?
            }
        };
        alive(pid).then_some(pid)
    }

    /// SIGKILL to the process of `c` (see [`Stack::pid`]); returns its pid.
    pub fn kill9(&self, c: Component) -> u32 {
        let pid = self.pid(c).unwrap_or_else(|| panic!("{} does not run, nothing to kill", c.name()));
        kill_9_and_wait(pid, c.name());
        pid
    }

    /// A connection to a database of the stack ("item_db", ...); with standbys, to the member
    /// that is the primary now (every member listed, `target_session_attrs=read-write`, as the
    /// services connect).
    pub async fn db(&self, c: Component) -> tokio_postgres::Client {
        let domain = c.name().trim_end_matches("-db");
        let name = format!("{domain}_db");
        if self.pg_standbys == 0 {
            return pg(self.port(c), &name).await;
        }
        let members = self.pg_members(domain);
        let hosts = vec!["127.0.0.1"; members.len()].join(",");
        let ports: Vec<String> = members.iter().map(|m| self.member_port(m).to_string()).collect();
        let url = format!(
            "host={hosts} port={} user=postgres password=postgres dbname={name} target_session_attrs=read-write connect_timeout=5",
            ports.join(",")
        );
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|err| panic!("connect to the primary of {name}: {err}"));
        tokio::spawn(conn);
        client
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let out = self.script("down", &[]);
        if !out.status.success() {
            eprintln!("scripts/down failed:\n{}", output_text(&out));
        }
        if std::env::var("KEEP_TEST_STATE").is_err() {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

fn first_line_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.lines().next()?.trim().parse().ok()
}

/// True if `pid` runs and is not a zombie.
/// SIGKILL to `pid`, then wait until it is gone: a killed process with a large heap (the
/// broker's beam) takes a moment to exit, and a restart that still finds it would take it
/// for the running component.
fn kill_9_and_wait(pid: u32, name: &str) {
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill -9 {pid} ({name})");
    let killed = Instant::now();
    while alive(pid) {
        assert!(killed.elapsed() < Duration::from_secs(30), "{name} (pid {pid}) still runs 30 s after kill -9");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// The beam.smp process of the RabbitMQ node whose data lives in `mnesia`.
fn beam_pid(mnesia: &Path) -> Option<u32> {
    let marker = format!("RABBITMQ_MNESIA_BASE={}", mnesia.display());
    std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        if comm.trim() != "beam.smp" {
            return None;
        }
        let environ = std::fs::read(e.path().join("environ")).ok()?;
        environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()).then_some(pid)
    })
}
