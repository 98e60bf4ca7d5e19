//! A whole `scripts/up` stack of its own: three PostgreSQL servers, a RabbitMQ node and the
//! three services, started, crashed and restarted with the operator's own scripts, in a
//! temporary run directory (`MOA_RUN_DIR`) on free ports, running the debug binaries the
//! harness was given (`MOA_BIN_DIR`), so no release build is needed.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::{env, free_port, pg};

/// What `scripts/up COMPONENT` starts.
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
    fn port_var(self) -> &'static str {
        match self {
            Component::ItemDb => "ITEM_DB_PORT",
            Component::AlarmDb => "ALARM_DB_PORT",
            Component::UserDb => "USER_DB_PORT",
            Component::Rabbitmq => "AMQP_PORT",
            Component::Item => "ITEM_HTTP_PORT",
            Component::Alarm => "ALARM_HTTP_PORT",
            Component::User => "USER_HTTP_PORT",
        }
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A stack started by `scripts/up`; `scripts/down` stops it when dropped.
pub struct Stack {
    pub run_dir: PathBuf,
    /// (variable, value) for every port `scripts/lib.sh` reads.
    ports: Vec<(&'static str, u16)>,
}

/// The output of a script that ran, for failure messages.
fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl Stack {
    /// Runs `scripts/up` (everything, demo seed) in a new run directory on free ports.
    pub fn up_all() -> Stack {
        let e = env();
        let run_dir = e.state_dir.join(format!("stack-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst)));
        let mut ports: Vec<(&'static str, u16)> = Component::ALL.iter().map(|c| (c.port_var(), free_port())).collect();
        ports.push(("RABBIT_MGMT_PORT", free_port()));
        // RabbitMQ's CLI uses DIST_PORT + 10000..10010: keep the distribution port low.
        let dist = loop {
            let p = free_port();
            if p < 50000 {
                break p;
            }
        };
        ports.push(("RABBIT_DIST_PORT", dist));
        let stack = Stack { run_dir, ports };
        let started = Instant::now();
        let out = stack.script("up", &[]);
        assert!(out.status.success(), "scripts/up failed:\n{}", output_text(&out));
        eprintln!("stack: scripts/up in {} took {:.1} s", stack.run_dir.display(), started.elapsed().as_secs_f64());
        stack
    }

    fn script(&self, name: &str, args: &[&str]) -> std::process::Output {
        let e = env();
        let mut cmd = Command::new(e.repo_dir.join("scripts").join(name));
        cmd.args(args)
            .env("MOA_RUN_DIR", &self.run_dir)
            .env("MOA_BIN_DIR", &e.bin_dir)
            .env("SEED_DIR", e.repo_dir.join("seed/demo"))
            .env("RUST_LOG", std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("READY_TIMEOUT", "120");
        for (var, port) in &self.ports {
            cmd.env(var, port.to_string());
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
        let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -9 {pid} ({})", c.name());
        pid
    }

    /// A connection to a database of the stack ("item_db", ...).
    pub async fn db(&self, c: Component) -> tokio_postgres::Client {
        let name = format!("{}_db", c.name().trim_end_matches("-db"));
        pg(self.port(c), &name).await
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
