//! Crashes under load: a `scripts/up` stack of its own serves concurrent alarm sets/clears and
//! item views (valid tokens) while its components — the three PostgreSQL servers, RabbitMQ and
//! the three services — are killed with SIGKILL, each restarted at once by `scripts/up
//! COMPONENT`. By default every component is crashed once, in a random order, and one of them
//! twice in a row (kill, restart, kill again at once, restart); with `MOA_CRASH_SECONDS`, every
//! component twice in a row, then random ones until that many seconds have passed.
//!
//! Afterwards nothing acknowledged may be lost and no cache may disagree with its database:
//! - per (user, item) pair the last acknowledged alarm change is in alarm_db (a pair whose last
//!   request had an unknown outcome — timeout, connection error, 503 — may be in either state),
//!   with one row at most;
//! - every view answered `200` is in user_db's `visit` table (not merely in an outbox), and no
//!   more views are stored than were answered `200` or had an unknown outcome;
//! - the alarm list, the item list's `is_alarm_set` flags and `/visit` (its items and flags)
//!   agree with alarm_db and user_db for every user of the load.
//!
//! The run prints writes, views, kills, availability and the time to converge.
//! `MOA_CRASH_SECONDS=600 scripts/test -E 'test(crash)'` runs a long one.
//!
//! `MOA_CRASH_PG_STANDBYS=1` runs it on `scripts/up --pg-standbys 1` (each database a primary
//! and a synchronous standby, docs/deployment.md): a database's crash is then its primary
//! member's, killed whole (its pg_autoctl and its postgres, as when its machine dies); the
//! domain's writes must be taken again within [`WRITES_BACK_WITHIN`] of the kill (by the
//! promoted standby), and the member is brought back with `scripts/up <member>` (a standby).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use e2e::stack::{Component, Stack};

use crate::pg_failover::{pg_auto_failover_available, writes_back, WRITES_BACK_WITHIN};

/// Users under load; worker `w` drives users `w`, `w + WORKERS`, ... alone, so the requests
/// on one (user, item) pair are sequential and "the last acknowledged change" is well defined.
pub(crate) const USERS: usize = 12;
pub(crate) const WORKERS: usize = 6;
/// Alarms churn on items 1..=ALARM_ITEMS (a small set, so pairs see many changes).
const ALARM_ITEMS: u64 = 12;
/// The demo seed's items are 1..=100; views go to those and, now and then, to this unknown one.
const SEED_ITEMS: u64 = 100;
const UNKNOWN_ITEM: u64 = 987_654;
/// A client gives up after this, twice the documented write deadline (`WRITE_TIMEOUT_MS`, 5 s):
/// a request not answered by then hangs, which fails the test (what it asked may still happen
/// later: see `Pair::Lost`).
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// What a request needs to be answered: its failure is excused while one of `any` is down,
/// or while one of each half of `both` is down at once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Needs {
    any: &'static [Component],
    both: Option<(&'static [Component], &'static [Component])>,
}

/// The owner of alarm sets and the way to it: a replica's alarm set not in memory (a broker
/// loss makes every entry old, a read-model repair after it drops the repaired ones) is asked
/// of the owner and, when it does not answer, read from the replica's own read model.
const ALARM_OWNER: &[Component] = &[Component::Alarm, Component::Rabbitmq];

/// An alarm write (a crash of anything else must not fail it: the load's users are cached,
/// and RabbitMQ is not on the write path).
pub(crate) const NEEDS_ALARM: Needs = Needs { any: &[Component::Alarm, Component::AlarmDb], both: None };
/// An item view: the item service and its database (which holds its read model of alarm sets).
pub(crate) const NEEDS_ITEM: Needs = Needs { any: &[Component::Item, Component::ItemDb], both: None };
/// The item list: the item service from memory; an alarm set not in memory needs the owner
/// or, failing that, item_db's read model.
const NEEDS_ITEM_LIST: Needs = Needs { any: &[Component::Item], both: Some((&[Component::ItemDb], ALARM_OWNER)) };
/// `/visit`: the user service from memory; an alarm set not in memory needs the owner or,
/// failing that, user_db's read model.
const NEEDS_VISIT: Needs = Needs { any: &[Component::User], both: Some((&[Component::UserDb], ALARM_OWNER)) };
/// How long after `scripts/up COMPONENT` returned a request may still fail because of the crash
/// (a pool replacing its dead connections, a client's connection to the killed process).
pub(crate) const RECOVERY_GRACE: Duration = Duration::from_secs(2);
/// Bound on the time to converge after the last restart.
pub(crate) const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

/// `MOA_CRASH_SECONDS`: with it, after every component was crashed twice in a row, random ones
/// until that many seconds of load have passed. Without it (`scripts/test`'s run): every
/// component once, and one of them (picked by the seed) a second time right after its restart.
fn crash_seconds() -> Option<u64> {
    std::env::var("MOA_CRASH_SECONDS")
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("MOA_CRASH_SECONDS must be a number of seconds, not {v:?}")))
}

/// `MOA_CRASH_PG_STANDBYS`: standbys per database (`scripts/up --pg-standbys`); 0 (unset): one
/// server per database.
fn crash_pg_standbys() -> u16 {
    std::env::var("MOA_CRASH_PG_STANDBYS").ok().filter(|v| !v.is_empty()).map_or(0, |v| {
        v.parse().unwrap_or_else(|_| panic!("MOA_CRASH_PG_STANDBYS must be a number of standbys, not {v:?}"))
    })
}

/// How long a formation may take to be whole again (its last killed member rejoined as the
/// standby) before its primary is killed again: 51-58 s were measured under a load average of
/// 30-40 (docs/deployment.md).
const FORMATION_WHOLE_WITHIN: Duration = Duration::from_secs(120);

/// xorshift64*: a small deterministic generator; the seed is printed so a run can be repeated.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What alarm_db must hold for one (user, item) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pair {
    Set,
    Clear,
    /// The last request's outcome is unknown (connection error, 503, 500): either state. A later
    /// acknowledged change decides again: the service that failed is gone or answered, and
    /// writes commit in order (one write lane), so the unknown one cannot overtake it.
    Unknown,
    /// The client timed out: the request may still be executing and commit after any later
    /// change, so this pair may be in either state for the rest of the run.
    Lost,
}

#[derive(Default, Debug)]
pub(crate) struct Tally {
    pub(crate) writes_acked: u64,
    pub(crate) writes_unknown: u64,
    pub(crate) views_ok: u64,
    pub(crate) views_unknown: u64,
    /// item lists and /visit answered 200
    pub(crate) reads_ok: u64,
    pub(crate) expected_4xx: u64,
    pub(crate) requests: u64,
    /// "<request> -> <status or error>" for every answer no fault excuses (a 4xx on a valid
    /// request, a 500): the test fails on any.
    pub(crate) unexpected: BTreeMap<String, u64>,
    /// "<request> -> <status or error>" for the unknown outcomes, for the report.
    pub(crate) unknown: BTreeMap<String, u64>,
    pub(crate) pairs: BTreeMap<(i64, u64), Pair>,
    /// (user, item) -> (views answered 200, views with an unknown outcome)
    pub(crate) views: BTreeMap<(i64, u64), (u64, u64)>,
    /// Every request without the expected answer: (sent, answered, what it needed, label).
    pub(crate) failures: Vec<(Instant, Instant, Needs, String)>,
}

impl Tally {
    pub(crate) fn merge(&mut self, o: Tally) {
        self.writes_acked += o.writes_acked;
        self.writes_unknown += o.writes_unknown;
        self.views_ok += o.views_ok;
        self.views_unknown += o.views_unknown;
        self.reads_ok += o.reads_ok;
        self.expected_4xx += o.expected_4xx;
        self.requests += o.requests;
        for (k, v) in o.unexpected {
            *self.unexpected.entry(k).or_default() += v;
        }
        for (k, v) in o.unknown {
            *self.unknown.entry(k).or_default() += v;
        }
        self.pairs.extend(o.pairs); // disjoint: one worker per user
        self.views.extend(o.views);
        self.failures.extend(o.failures);
    }
}

/// The answer to one request: a status, or why there was none.
enum Answer {
    Status(u16),
    Timeout,
    Failed(String),
}

impl Answer {
    fn label(&self) -> String {
        match self {
            Answer::Status(s) => s.to_string(),
            Answer::Timeout => "client timeout".into(),
            Answer::Failed(e) => e.clone(),
        }
    }
}

/// The answer, and for an error status who said what: the service's `hint`, or the first
/// words of another body (a load balancer's own page), so a report can tell them apart.
async fn send(req: reqwest::RequestBuilder) -> (Answer, String) {
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            if status < 500 {
                return (Answer::Status(status), String::new());
            }
            let body = r.text().await.unwrap_or_default();
            let said = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["hint"].as_str().map(|h| format!("(service: {h})")))
                .unwrap_or_else(|| {
                    format!("(not the service: {})", body.split_whitespace().collect::<Vec<_>>().join(" "))
                });
            (Answer::Status(status), said.chars().take(160).collect())
        }
        Err(e) if e.is_timeout() => (Answer::Timeout, String::new()),
        Err(e) if e.is_connect() => (Answer::Failed("connection refused".into()), String::new()),
        Err(_) => (Answer::Failed("connection lost".into()), String::new()),
    }
}

pub(crate) async fn worker(
    http: reqwest::Client,
    (item_port, alarm_port, user_port): (u16, u16, u16),
    users: Vec<(i64, String)>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut t = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        let (user, token) = &users[rng.below(users.len() as u64) as usize];
        let roll = rng.below(100);
        t.requests += 1;
        if roll < 10 {
            // a read: the item list or /visit, answered from memory (see NEEDS_VISIT)
            let (port, path, needs, what) = if roll < 5 {
                (item_port, "/", NEEDS_ITEM_LIST, "GET item /")
            } else {
                (user_port, "/visit", NEEDS_VISIT, "GET user /visit")
            };
            let req = http.get(format!("http://127.0.0.1:{port}{path}")).header("USER-TOKEN", token);
            let sent = Instant::now();
            let (answer, said) = send(req).await;
            match answer {
                Answer::Status(200) => t.reads_ok += 1,
                Answer::Status(503) | Answer::Failed(_) => {
                    t.failures.push((sent, Instant::now(), needs, format!("{what} -> {} {said}", answer.label())));
                    *t.unknown.entry(format!("{what} -> {} {said}", answer.label())).or_default() += 1;
                }
                _ => {
                    t.failures.push((sent, Instant::now(), needs, format!("{what} -> {} {said}", answer.label())));
                    *t.unexpected.entry(format!("{what} -> {} {said}", answer.label())).or_default() += 1;
                }
            }
        } else if roll < 55 {
            // alarm set or clear
            let item = 1 + rng.below(ALARM_ITEMS);
            let set = roll < 30;
            let (method, ok) = if set { (reqwest::Method::POST, 201) } else { (reqwest::Method::DELETE, 200) };
            let req = http
                .request(method.clone(), format!("http://127.0.0.1:{alarm_port}/"))
                .header("USER-TOKEN", token)
                .header("content-type", "application/json")
                .body(format!(r#"{{"item_id": {item}}}"#));
            let sent = Instant::now();
            let (answer, said) = send(req).await;
            let what = format!("{method} alarm /");
            if !matches!(answer, Answer::Status(s) if s == ok) {
                t.failures.push((sent, Instant::now(), NEEDS_ALARM, format!("{what} -> {} {said}", answer.label())));
            }
            let pair = t.pairs.entry((*user, item)).or_insert(Pair::Unknown);
            match answer {
                Answer::Status(s) if s == ok => {
                    t.writes_acked += 1;
                    if *pair != Pair::Lost {
                        *pair = if set { Pair::Set } else { Pair::Clear };
                    }
                }
                Answer::Timeout => {
                    // No answer within CLIENT_TIMEOUT, twice the write deadline (WRITE_TIMEOUT_MS,
                    // 5 s): a hang, which no crash excuses. The request may still commit after
                    // any later change, so the pair is undecided from here.
                    t.writes_unknown += 1;
                    *pair = Pair::Lost;
                    *t.unexpected.entry(format!("{what} -> {} {said}", answer.label())).or_default() += 1;
                }
                Answer::Status(503) | Answer::Failed(_) => {
                    t.writes_unknown += 1;
                    if *pair != Pair::Lost {
                        *pair = Pair::Unknown;
                    }
                    *t.unknown.entry(format!("{what} -> {} {said}", answer.label())).or_default() += 1;
                }
                Answer::Status(_) => {
                    // a 500, or a 4xx on a valid request: a bug; the state is unknown from here
                    t.writes_unknown += 1;
                    if *pair != Pair::Lost {
                        *pair = Pair::Unknown;
                    }
                    *t.unexpected.entry(format!("{what} -> {} {said}", answer.label())).or_default() += 1;
                }
            }
        } else {
            // an item view: 1 in 20 of an item that does not exist (404 {} is the right answer)
            let unknown_item = roll >= 95;
            let item = if unknown_item { UNKNOWN_ITEM } else { 1 + rng.below(SEED_ITEMS) };
            let req = http.get(format!("http://127.0.0.1:{item_port}/{item}")).header("USER-TOKEN", token);
            let sent = Instant::now();
            let (answer, said) = send(req).await;
            let what = if unknown_item { "GET item /<unknown id>" } else { "GET item /<id>" };
            let expected = if unknown_item { 404 } else { 200 };
            if !matches!(answer, Answer::Status(s) if s == expected) {
                t.failures.push((sent, Instant::now(), NEEDS_ITEM, format!("{what} -> {} {said}", answer.label())));
            }
            let counts = t.views.entry((*user, item)).or_default();
            match answer {
                Answer::Status(200) if !unknown_item => {
                    t.views_ok += 1;
                    counts.0 += 1;
                }
                Answer::Status(404) if unknown_item => t.expected_4xx += 1,
                Answer::Timeout => {
                    // a hang (the view's write deadline is 5 s): no crash excuses it
                    t.views_unknown += 1;
                    counts.1 += 1;
                    *t.unexpected.entry(format!("{what} -> {} {said}", answer.label())).or_default() += 1;
                }
                Answer::Status(503) | Answer::Failed(_) => {
                    t.views_unknown += 1;
                    counts.1 += 1;
                    *t.unknown.entry(format!("{what} -> {} {said}", answer.label())).or_default() += 1;
                }
                Answer::Status(_) => {
                    t.views_unknown += 1;
                    counts.1 += 1;
                    *t.unexpected.entry(format!("{what} -> {} {said}", answer.label())).or_default() += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5 + rng.below(10))).await;
    }
    t
}

/// The load: alarm sets/clears and item views by the users, split over [`WORKERS`] workers, sent
/// to the stack's service ports (the balancer's, in a cluster); `stop` ends it, and the workers'
/// tallies come back from their handles.
/// Has every instance (`(item, alarm, user)` ports) cache every user of the load: the caches
/// hold the users they were asked about, and while an owner is down (the faults these tests
/// inject) only cached users can be answered; a user first seen then gets a `503`.
pub(crate) async fn warm_caches(http: &reqwest::Client, instances: &[(u16, u16, u16)], users: &[(i64, String)]) {
    for &(item, alarm, user) in instances {
        for (_, token) in users {
            for (port, path) in [(item, "/"), (alarm, "/"), (user, "/visit")] {
                let r = http.get(format!("http://127.0.0.1:{port}{path}")).header("USER-TOKEN", token).send().await;
                let status = r.map(|r| r.status().as_u16()).unwrap_or(0);
                assert_eq!(status, 200, "warming the caches: GET :{port}{path}");
            }
        }
    }
}

pub(crate) fn start_load(
    http: &reqwest::Client,
    stack: &Stack,
    users: &[(i64, String)],
    rng: &mut Rng,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..WORKERS)
        .map(|w| {
            let mine: Vec<_> = users.iter().skip(w).step_by(WORKERS).cloned().collect();
            tokio::spawn(worker(
                http.clone(),
                (stack.port(Component::Item), stack.port(Component::Alarm), stack.port(Component::User)),
                mine,
                Rng(rng.next() | 1),
                stop.clone(),
            ))
        })
        .collect()
}

/// The acknowledged alarm changes alarm_db does not reflect: a set whose row is missing, a
/// clear whose row is still there (`present` says whether a (user, item) row exists).
pub(crate) fn lost_alarm_changes(
    pairs: &BTreeMap<(i64, u64), Pair>,
    present: impl Fn((i64, i64)) -> bool,
) -> Vec<String> {
    let mut lost = Vec::new();
    for ((user, item), pair) in pairs {
        let present = present((*user, *item as i64));
        match pair {
            Pair::Set if !present => lost.push(format!("user {user} item {item}: set acknowledged, not in alarm_db")),
            Pair::Clear if present => {
                lost.push(format!("user {user} item {item}: clear acknowledged, still in alarm_db"))
            }
            _ => {}
        }
    }
    lost
}

#[derive(Default)]
struct Kills {
    /// (component, killed pid, how long `scripts/up COMPONENT` took)
    done: Vec<(Component, u32, Duration)>,
    /// (component, killed at, `scripts/up` returned at): when each was down
    windows: Vec<(Component, Instant, Instant)>,
}

/// SIGKILL `c` and restart it at once with `scripts/up c`; it must run again afterwards.
/// With standbys, a database's crash is its primary's ([`crash_primary_and_restart`]).
fn crash_and_restart(stack: &Stack, c: Component, kills: &mut Kills) -> Result<(), String> {
    if stack.pg_standbys > 0 && [Component::ItemDb, Component::AlarmDb, Component::UserDb].contains(&c) {
        return crash_primary_and_restart(stack, c, kills);
    }
    let killed_at = Instant::now();
    let pid = stack.kill9(c);
    let took = stack.up(c);
    kills.windows.push((c, killed_at, Instant::now()));
    let took = took?;
    match stack.pid(c) {
        Some(new) if new != pid => {}
        other => return Err(format!("after scripts/up {} it runs as {other:?} (killed pid {pid})", c.name())),
    }
    eprintln!("crash: kill -9 {} (pid {pid}), scripts/up {0} took {:.1} s", c.name(), took.as_secs_f64());
    kills.done.push((c, pid, took));
    Ok(())
}

/// SIGKILL the primary member of database `c` whole (its pg_autoctl and its postgres: its
/// machine died), wait until the domain takes writes again (the standby promoted: within
/// [`WRITES_BACK_WITHIN`] of the kill), then `scripts/up <member>` brings it back as the
/// standby. Its window (requests that need the database may fail) runs from the kill until
/// `scripts/up` returned.
fn crash_primary_and_restart(stack: &Stack, c: Component, kills: &mut Kills) -> Result<(), String> {
    let domain = c.name().trim_end_matches("-db");
    // A primary killed while its formation is not whole (the member killed before still
    // rejoining) has no standby to hand over to: wait for it.
    let waiting = Instant::now();
    while !stack.pg_formation_whole(domain) {
        if waiting.elapsed() > FORMATION_WHOLE_WITHIN {
            return Err(format!(
                "{domain}_db's formation not whole after {FORMATION_WHOLE_WITHIN:?}: {:?}",
                stack.pg_states(domain)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let primary =
        stack.pg_primary(domain).ok_or_else(|| format!("{domain}_db has no primary: {:?}", stack.pg_states(domain)))?;
    let killed_at = Instant::now();
    let pid = stack.kill9_member(&primary);
    let writes = tokio::runtime::Handle::current().block_on(writes_back(stack, domain, killed_at));
    let took = stack.up_named(&primary);
    kills.windows.push((c, killed_at, Instant::now()));
    let took = took?;
    if writes > WRITES_BACK_WITHIN {
        return Err(format!(
            "{domain}_db took writes again {writes:?} after its primary {primary} was killed (bound {WRITES_BACK_WITHIN:?}): {:?}",
            stack.pg_states(domain)
        ));
    }
    if stack.pid_named(&primary).is_none_or(|new| new == pid) {
        return Err(format!("after scripts/up {primary} its keeper does not run again (killed pid {pid})"));
    }
    eprintln!(
        "crash: kill -9 {primary} (the primary of {domain}_db: pg_autoctl pid {pid} and its postgres), writes taken again after {:.1} s, scripts/up {primary} took {:.1} s",
        writes.as_secs_f64(),
        took.as_secs_f64()
    );
    kills.done.push((c, pid, took));
    Ok(())
}

/// Every component (in a random order) once, one of them twice in a row; with `until` (a long
/// run), every component twice in a row, then random ones until `until`.
fn killer(stack: &Stack, until: Option<Instant>, mut rng: Rng, kills: &mut Kills) -> Result<(), String> {
    let mut order = Component::ALL.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let twice = order[rng.below(order.len() as u64) as usize];
    for c in order {
        crash_and_restart(stack, c, kills)?;
        if until.is_some() || c == twice {
            crash_and_restart(stack, c, kills)?;
        }
    }
    let Some(until) = until else {
        // a moment of load after the last restart, outside every crash's window
        std::thread::sleep(RECOVERY_GRACE + Duration::from_secs(2));
        return Ok(());
    };
    loop {
        let pause = Duration::from_millis(1000 + rng.below(3000));
        if Instant::now() + pause >= until {
            return Ok(());
        }
        std::thread::sleep(pause);
        let c = Component::ALL[rng.below(Component::ALL.len() as u64) as usize];
        crash_and_restart(stack, c, kills)?;
    }
}

async fn get_json(http: &reqwest::Client, url: String, token: &str) -> Result<serde_json::Value, String> {
    let r = http.get(&url).header("USER-TOKEN", token).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("GET {url}: body: {e}"))?;
    if status != 200 {
        return Err(format!("GET {url} -> {status} {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("GET {url}: {e}: {text}"))
}

fn payload_ids(v: &serde_json::Value, only_alarmed: bool) -> Vec<i64> {
    v["payload"]
        .as_array()
        .map(|a| {
            a.iter().filter(|i| !only_alarmed || i["is_alarm_set"] == true).filter_map(|i| i["id"].as_i64()).collect()
        })
        .unwrap_or_default()
}

/// The first way in which a cache or the visit table disagrees with what it must hold, if any.
async fn disagreement(
    http: &reqwest::Client,
    stack: &Stack,
    users: &[(i64, String)],
    views: &BTreeMap<(i64, u64), (u64, u64)>,
) -> Option<String> {
    let ports = (stack.port(Component::Item), stack.port(Component::Alarm), stack.port(Component::User));
    disagreement_at(http, stack, ports, users, views).await
}

/// [`disagreement`] as seen by the instances on `(item, alarm, user)` ports (the cluster test
/// asks every instance, not the balancer, which would ask one of them).
pub(crate) async fn disagreement_at(
    http: &reqwest::Client,
    stack: &Stack,
    (item_port, alarm_port, user_port): (u16, u16, u16),
    users: &[(i64, String)],
    views: &BTreeMap<(i64, u64), (u64, u64)>,
) -> Option<String> {
    let alarm_db = stack.db(Component::AlarmDb).await;
    let user_db = stack.db(Component::UserDb).await;
    let stored: BTreeMap<(i64, i64), i64> =
        match user_db.query("SELECT user_id, item_id, count(*) FROM visit GROUP BY user_id, item_id", &[]).await {
            Ok(rows) => rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect(),
            Err(e) => return Some(format!("user_db: {e}")),
        };
    let mut missing = 0;
    let mut example = String::new();
    for ((user, item), (ok, _)) in views {
        let n = stored.get(&(*user, *item as i64)).copied().unwrap_or(0);
        if n < *ok as i64 {
            missing += *ok as i64 - n;
            if example.is_empty() {
                example = format!("user {user} item {item}: {ok} views answered 200, {n} in the visit table");
            }
        }
    }
    if missing > 0 {
        return Some(format!("{missing} views answered 200 are not in the visit table, e.g. {example}"));
    }
    for (user, token) in users {
        let alarms: Vec<i64> = match alarm_db
            .query("SELECT item_id::int8 FROM alarm WHERE user_id = $1 ORDER BY item_id DESC", &[&(*user as i32)])
            .await
        {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            Err(e) => return Some(format!("alarm_db: {e}")),
        };
        let recent: Vec<i64> = match user_db
            .query(
                "SELECT item_id FROM recent_visit WHERE user_id = $1 ORDER BY viewed_at DESC, seq DESC LIMIT 3",
                &[user],
            )
            .await
        {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            Err(e) => return Some(format!("user_db: {e}")),
        };
        let alarm_list = match get_json(http, format!("http://127.0.0.1:{alarm_port}/"), token).await {
            Ok(v) => payload_ids(&v, false),
            Err(e) => return Some(e),
        };
        if alarm_list != alarms {
            return Some(format!("user {user}: alarm list {alarm_list:?}, alarm_db {alarms:?}"));
        }
        let flags = match get_json(http, format!("http://127.0.0.1:{item_port}/"), token).await {
            Ok(v) => payload_ids(&v, true),
            Err(e) => return Some(e),
        };
        if flags != alarms {
            return Some(format!("user {user}: item list flags {flags:?}, alarm_db {alarms:?}"));
        }
        let visit = match get_json(http, format!("http://127.0.0.1:{user_port}/visit"), token).await {
            Ok(v) => v,
            Err(e) => return Some(e),
        };
        let visit_ids = payload_ids(&visit, false);
        if visit_ids != recent {
            return Some(format!("user {user}: /visit {visit_ids:?}, recent_visit in user_db {recent:?}"));
        }
        let visit_flags = payload_ids(&visit, true);
        let want: Vec<i64> = visit_ids.iter().copied().filter(|i| alarms.contains(i)).collect();
        if visit_flags != want {
            return Some(format!("user {user}: /visit flags {visit_flags:?}, alarm_db says {want:?}"));
        }
    }
    None
}

/// Splits the failed requests into those excused by a crash window of a component they need
/// (the request was in flight at some time between the kill and `RECOVERY_GRACE` after the
/// restart) and the others, described.
pub(crate) fn excuse(
    failures: &[(Instant, Instant, Needs, String)],
    windows: &[(Component, Instant, Instant)],
) -> (usize, Vec<String>) {
    let first = windows.iter().map(|w| w.1).min();
    let mut unexcused = Vec::new();
    let mut excused = 0;
    for (sent, answered, needs, what) in failures {
        let down_during = |of: &[Component]| {
            windows.iter().any(|(c, from, to)| of.contains(c) && *sent <= *to + RECOVERY_GRACE && *answered >= *from)
        };
        let down = down_during(needs.any) || needs.both.is_some_and(|(a, b)| down_during(a) && down_during(b));
        if down {
            excused += 1;
        } else {
            let at = first.map(|f| sent.saturating_duration_since(f).as_secs_f64()).unwrap_or(0.0);
            unexcused
                .push(format!("{what} (sent {at:.1} s after the first kill, answered in {:?})", *answered - *sent));
        }
    }
    (excused, unexcused)
}

#[test]
fn a_read_is_excused_by_its_service_or_by_both_its_read_model_and_its_owner_being_down() {
    let t0 = Instant::now();
    let s = |x: u64| t0 + Duration::from_secs(x);
    let visit = |at: u64| (s(at), s(at) + Duration::from_millis(600), NEEDS_VISIT, format!("visit at {at}"));
    // rabbitmq down 0-10 s, user_db 10-12 s, the user service 30-32 s (each excuses 2 s more)
    let windows = [
        (Component::Rabbitmq, s(0), s(10)),
        (Component::UserDb, s(10), s(12)),
        (Component::User, s(30), s(32)),
        (Component::UserDb, s(50), s(52)),
    ];
    let (excused, unexcused) = excuse(&[visit(11), visit(31), visit(20), visit(51)], &windows);
    assert_eq!(excused, 2, "{unexcused:?}");
    // the broker alone (20 s is past its grace) or user_db alone does not excuse a read
    assert_eq!(unexcused.len(), 2);
    assert!(unexcused[0].starts_with("visit at 20") && unexcused[1].starts_with("visit at 51"), "{unexcused:?}");
    // an alarm write needs its own service and database only
    let write = (s(51), s(52), NEEDS_ALARM, "write".to_string());
    assert_eq!(excuse(&[write], &windows).0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_any_component_under_load_loses_nothing_and_caches_converge() {
    let seconds = crash_seconds();
    let standbys = crash_pg_standbys();
    if standbys > 0 && !pg_auto_failover_available() {
        e2e::skip("MOA_CRASH_PG_STANDBYS: pg_auto_failover (pg_autoctl) is not installed and cannot be");
        return;
    }
    let seed = std::env::var("MOA_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    }) | 1;
    match seconds {
        Some(s) => eprintln!("crash: {s} s of load and kills (MOA_CRASH_SECONDS), seed {seed} (MOA_CRASH_SEED)"),
        None => eprintln!("crash: every component killed once, one twice (MOA_CRASH_SECONDS: a long run), seed {seed}"),
    }
    let stack = Arc::new(
        tokio::task::spawn_blocking(
            move || if standbys > 0 { Stack::up_pg_standbys(standbys) } else { Stack::up_all() },
        )
        .await
        .expect("scripts/up"),
    );
    let users: Vec<(i64, String)> = stack
        .db(Component::UserDb)
        .await
        .query(&format!("SELECT id, access_token FROM \"user\" ORDER BY id LIMIT {USERS}"), &[])
        .await
        .expect("users")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(users.len(), USERS, "the demo seed has {USERS} users at least");

    let http = e2e::http_client(CLIENT_TIMEOUT);
    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = Rng(seed);
    let ports = (stack.port(Component::Item), stack.port(Component::Alarm), stack.port(Component::User));
    warm_caches(&http, &[ports], &users).await;
    let started = Instant::now();
    let workers = start_load(&http, &stack, &users, &mut rng, &stop);

    let kills = Arc::new(Mutex::new(Kills::default()));
    let killed = {
        let (stack, kills) = (stack.clone(), kills.clone());
        let until = seconds.map(|s| started + Duration::from_secs(s));
        let rng = Rng(rng.next() | 1);
        tokio::task::spawn_blocking(move || killer(&stack, until, rng, &mut kills.lock().unwrap()))
            .await
            .expect("killer thread")
    };
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await.expect("load worker"));
    }
    let load_time = started.elapsed();
    let windows = std::mem::take(&mut kills.lock().unwrap().windows);
    let kills = std::mem::take(&mut kills.lock().unwrap().done);
    if let Err(e) = killed {
        panic!("a crashed component did not come back: {e}\n(logs in {})", stack.run_dir.join("logs").display());
    }

    // ---------------------------------------------------------------- the report
    let answered = tally.writes_acked + tally.views_ok + tally.reads_ok + tally.expected_4xx;
    eprintln!(
        "crash: {:.0} s, {} kills, {} requests: availability {:.1} % (2xx or the expected 404)",
        load_time.as_secs_f64(),
        kills.len(),
        tally.requests,
        100.0 * answered as f64 / tally.requests.max(1) as f64
    );
    eprintln!(
        "crash: writes {} acknowledged, {} unknown outcome; views {} answered 200, {} unknown outcome; {} expected 404",
        tally.writes_acked, tally.writes_unknown, tally.views_ok, tally.views_unknown, tally.expected_4xx
    );
    let mut per_component: BTreeMap<Component, (u32, Duration, Duration)> = BTreeMap::new();
    for (c, _, took) in &kills {
        let e = per_component.entry(*c).or_insert((0, Duration::ZERO, Duration::ZERO));
        e.0 += 1;
        e.1 += *took;
        e.2 = e.2.max(*took);
    }
    for (c, (n, total, max)) in &per_component {
        eprintln!(
            "crash:   {:<9} killed {n} times, scripts/up took {:.1} s on average, {:.1} s at most",
            c.name(),
            total.as_secs_f64() / f64::from(*n),
            max.as_secs_f64()
        );
    }
    for (what, n) in &tally.unknown {
        eprintln!("crash:   unknown outcome: {what} x {n}");
    }
    for (what, n) in &tally.unexpected {
        eprintln!("crash:   UNEXPECTED: {what} x {n}");
    }

    // Availability: a request fails only while something it needs is down, from its kill until
    // RECOVERY_GRACE after `scripts/up` brought it back; every other request is answered as
    // expected (docs/failures.md: a crash of RabbitMQ, of the other services or of their
    // databases fails no alarm write or view of a cached user). So 100 % outside those windows.
    let (excused, unexcused) = excuse(&tally.failures, &windows);
    let outside: u64 = tally.requests - excused as u64;
    eprintln!(
        "crash: {} requests failed while something they need was down; outside those windows {} of {} failed",
        excused,
        unexcused.len(),
        outside
    );

    // ---------------------------------------------------------------- the checks
    for name in stack.components() {
        assert!(stack.pid_named(&name).is_some(), "{name} runs after the last restart");
    }
    assert!(
        unexcused.is_empty(),
        "requests failed while everything they need was up (availability outside the crash windows must be 100 %):\n{}\n(logs in {})",
        unexcused.iter().take(20).cloned().collect::<Vec<_>>().join("\n"),
        stack.run_dir.join("logs").display()
    );
    assert!(
        tally.writes_acked >= 50 && tally.views_ok >= 50,
        "the load ran: {} writes acknowledged, {} views answered 200",
        tally.writes_acked,
        tally.views_ok
    );
    // Every acknowledged alarm change is in alarm_db, and no pair has two rows.
    let alarm_db = stack.db(Component::AlarmDb).await;
    let rows = alarm_db
        .query("SELECT user_id::int8, item_id::int8, count(*) FROM alarm GROUP BY user_id, item_id", &[])
        .await
        .expect("alarm_db answers after the restarts");
    let in_db: BTreeMap<(i64, i64), i64> = rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect();
    let doubled: Vec<_> = in_db.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "one alarm row per (user, item): {doubled:?}");
    let lost = lost_alarm_changes(&tally.pairs, |pair| in_db.contains_key(&pair));
    let uncertain = tally.pairs.values().filter(|p| matches!(p, Pair::Unknown | Pair::Lost)).count();
    eprintln!(
        "crash: {} (user, item) pairs written, {} of them last with an unknown outcome",
        tally.pairs.len(),
        uncertain
    );
    assert!(lost.is_empty(), "acknowledged alarm changes lost:\n{}", lost.join("\n"));

    // Every cache agrees with the databases, and every 200 view is stored, in bounded time.
    let checker = e2e::http_client(Duration::from_secs(5));
    let converging = Instant::now();
    let mut last = String::new();
    let mut printed = 0;
    let converged = loop {
        match disagreement(&checker, &stack, &users, &tally.views).await {
            None => break Some(converging.elapsed()),
            Some(d) => {
                // what is still catching up, as it changes (a few lines at most)
                if d != last && printed < 8 {
                    eprintln!("crash:   at {:.1} s still waiting: {d}", converging.elapsed().as_secs_f64());
                    printed += 1;
                }
                last = d;
            }
        }
        if converging.elapsed() > CONVERGE_WITHIN {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match converged {
        Some(t) => eprintln!("crash: converged {:.1} s after the last restart", t.as_secs_f64()),
        None => panic!(
            "not converged within {CONVERGE_WITHIN:?} after the last restart: {last}\n(logs in {})",
            stack.run_dir.join("logs").display()
        ),
    }
    // No view is stored more often than it was asked for (a 200 or an unknown outcome).
    let user_db = stack.db(Component::UserDb).await;
    let ids: Vec<i64> = users.iter().map(|(id, _)| *id).collect();
    let rows = user_db
        .query(
            "SELECT user_id, item_id, count(*), count(DISTINCT event_id) FROM visit WHERE user_id = ANY($1) GROUP BY 1, 2",
            &[&ids],
        )
        .await
        .expect("user_db");
    let mut stored_views = 0;
    let mut extra = Vec::new();
    let mut seen = BTreeSet::new();
    let mut duplicated = Vec::new();
    for r in &rows {
        let (user, item, n, distinct): (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        stored_views += n;
        if distinct != n {
            duplicated.push(format!("user {user} item {item}: {n} rows, {distinct} distinct views"));
        }
        seen.insert((user, item as u64));
        let (ok, unknown) = tally.views.get(&(user, item as u64)).copied().unwrap_or((0, 0));
        if n as u64 > ok + unknown {
            extra.push(format!("user {user} item {item}: {n} stored, {ok} answered 200, {unknown} unknown"));
        }
    }
    eprintln!(
        "crash: views stored {stored_views} (answered 200: {}, unknown: {})",
        tally.views_ok, tally.views_unknown
    );
    assert!(extra.is_empty(), "views stored that nobody made:\n{}", extra.join("\n"));
    assert!(duplicated.is_empty(), "each view stored once:\n{}", duplicated.join("\n"));
    // Nothing was dead-lettered: no crash makes a healthy message poison (counted exactly).
    let amqp = format!("amqp://guest:guest@127.0.0.1:{}/%2f", stack.port(Component::Rabbitmq));
    assert_eq!(e2e::queue_depth_at(&amqp, "dead-letters").await, 0, "nothing dead-lettered");
    assert!(
        tally.unexpected.is_empty(),
        "answers no crash excuses (a 4xx on a valid request, a 500): {:?}\n(logs in {})",
        tally.unexpected,
        stack.run_dir.join("logs").display()
    );
}
