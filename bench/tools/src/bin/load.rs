//! Alarm set/clear load: what drill cannot send (its DELETE carries no body, and every drill
//! iteration repeats the same requests, so 64 concurrent iterations would all write the same
//! (user, item) row). `-c` closed-loop workers on one thread (as drill runs) take pair numbers
//! from a shared counter; pair `k` is user `k % U` and item `first + (k / U) % items`, so
//! concurrent workers always write different rows. Each pair is set (`POST /`, expects 201) and
//! then cleared (`DELETE /`, expects 200). Pairs the user already had an alarm on (read with
//! `GET /` at start) are skipped, so the run leaves the alarm table as it found it.
//!
//! ```sh
//! bench-load --tokens FILE [--alarm http://127.0.0.1:6001] [--items 1-100] [-c 64] [-n 40000]
//! ```
//! `-n` counts requests (set + clear). The last lines are machine-readable:
//! `LOAD name=... requests=.. errors=.. rps=.. p50=.. p95=.. p99=.. max=..` (milliseconds).

use std::{
    cell::RefCell,
    collections::{BTreeSet, HashMap},
    process::ExitCode,
    rc::Rc,
    time::{Duration, Instant},
};

use bench_tools::{ms, quantiles, read_tokens, Services, Workers};
use serde_json::Value;

/// Alarm set + clear load on distinct (user, item) rows, closed loop on one thread.
#[derive(clap::Parser, Debug)]
#[command(name = "bench-load")]
struct Args {
    #[command(flatten)]
    services: Services,
    #[command(flatten)]
    workers: Workers,
    /// The items written, FIRST-LAST.
    #[arg(long, value_name = "FIRST-LAST", default_value = "1-100", value_parser = item_range)]
    items: (i64, i64),
    /// Requests in all (set + clear).
    #[arg(short = 'n', long, default_value_t = 40_000)]
    requests: usize,
}

fn item_range(s: &str) -> Result<(i64, i64), String> {
    let bad = || "must be FIRST-LAST with FIRST <= LAST".to_string();
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (i64, i64) = (lo.parse().map_err(|_| bad())?, hi.parse().map_err(|_| bad())?);
    if hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
}

#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    errors: usize,
    statuses: HashMap<u16, usize>,
}

#[derive(Default)]
struct Results {
    set: Tally,
    clear: Tally,
}

async fn send(http: &reqwest::Client, url: &str, token: &str, item: i64, set: bool) -> (Duration, Option<u16>) {
    let req = if set { http.post(url) } else { http.delete(url) };
    let start = Instant::now();
    let res = req
        .header("USER-TOKEN", token)
        .header("content-type", "application/json")
        .body(format!("{{\"item_id\": {item}}}"))
        .send()
        .await;
    let status = match res {
        Ok(r) => {
            let s = r.status().as_u16();
            match r.bytes().await {
                Ok(_) => Some(s),
                Err(_) => None,
            }
        }
        Err(_) => None,
    };
    (start.elapsed(), status)
}

fn record(t: &mut Tally, took: Duration, status: Option<u16>, want: u16) {
    t.latencies.push(ms(took));
    let code = status.unwrap_or(0);
    *t.statuses.entry(code).or_default() += 1;
    if code != want {
        t.errors += 1;
    }
}

async fn run(a: Args) -> Result<bool, String> {
    let (concurrency, (first_item, last_item)) = (a.workers.concurrency, a.items);
    let tokens = read_tokens(&a.workers.tokens)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/", a.services.alarm);
    // what each user already has: never touched
    let mut existing: Vec<BTreeSet<i64>> = Vec::new();
    for t in &tokens {
        let res = http.get(&url).header("USER-TOKEN", t).send().await.map_err(|e| format!("alarm list: {e}"))?;
        let status = res.status();
        let v: Value = res.json().await.map_err(|e| format!("alarm list JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!("alarm list answered {status}: {v}"));
        }
        existing.push(
            v["payload"].as_array().map(|a| a.iter().filter_map(|i| i["id"].as_i64()).collect()).unwrap_or_default(),
        );
    }
    let users = tokens.len();
    let items = (last_item - first_item + 1) as usize;
    let pairs = a.requests / 2;
    eprintln!("bench-load: {pairs} set+clear pairs over {users} users x {items} items, concurrency {concurrency}");
    let next = Rc::new(RefCell::new(0usize));
    let results = Rc::new(RefCell::new(Results::default()));
    let tokens = Rc::new(tokens);
    let existing = Rc::new(existing);
    let started = Instant::now();
    let local = tokio::task::LocalSet::new();
    for _ in 0..concurrency {
        let (next, results, tokens, existing, http, url) =
            (next.clone(), results.clone(), tokens.clone(), existing.clone(), http.clone(), url.clone());
        let first = first_item;
        local.spawn_local(async move {
            loop {
                let k = {
                    let mut n = next.borrow_mut();
                    if *n >= pairs {
                        break;
                    }
                    *n += 1;
                    *n - 1
                };
                let user = k % users;
                // walk this user's items; skip the ones it already had
                let mut item = first + ((k / users) % items) as i64;
                let mut tries = 0;
                while existing[user].contains(&item) && tries < items {
                    item = first + ((item - first + 1) as usize % items) as i64;
                    tries += 1;
                }
                let token = &tokens[user];
                let (took, status) = send(&http, &url, token, item, true).await;
                record(&mut results.borrow_mut().set, took, status, 201);
                let (took, status) = send(&http, &url, token, item, false).await;
                record(&mut results.borrow_mut().clear, took, status, 200);
            }
        });
    }
    local.await;
    let secs = started.elapsed().as_secs_f64();
    let r = results.borrow_mut();
    let total_errors = r.set.errors + r.clear.errors;
    let mut all: Vec<f64> = r.set.latencies.iter().chain(&r.clear.latencies).copied().collect();
    let mut lines = Vec::new();
    for (name, lat, errors, statuses) in [
        ("alarm set+clear", &mut all, total_errors, None),
        ("alarm set", &mut r.set.latencies.clone(), r.set.errors, Some(&r.set.statuses)),
        ("alarm clear", &mut r.clear.latencies.clone(), r.clear.errors, Some(&r.clear.statuses)),
    ] {
        let n = lat.len();
        let [p50, p95, p99, max] = quantiles(lat);
        let rps = n as f64 / secs;
        println!(
            "{name:<16} requests {n:>7}  errors {errors:>5}  {rps:>9.1} req/s  p50 {p50:>6.2} ms  p95 {p95:>6.2} ms  p99 {p99:>6.2} ms  max {max:>7.2} ms{}",
            statuses.map(|s| format!("  statuses {s:?}")).unwrap_or_default()
        );
        lines.push(format!(
            "LOAD name={} requests={n} errors={errors} rps={rps:.1} p50={p50:.3} p95={p95:.3} p99={p99:.3} max={max:.3} secs={secs:.2}",
            name.replace(' ', "_")
        ));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(total_errors == 0)
}

fn main() -> ExitCode {
    bench_tools::run_main("bench-load", run)
}
