//! Item list over many distinct users: what drill cannot do (every drill iteration repeats the
//! same few tokens, so after the first iterations every user is cached). With bounded caches of
//! users and alarms, a user's first request costs one RPC per cache (token -> user at the user
//! service, user -> alarmed item ids at the alarm service) and later requests none: the two cost
//! differently, so they are measured apart.
//!
//! Each pass sends `GET PATH` once per token in the file, in file order, from `-c` closed-loop
//! workers on one thread (as drill and bench-load run) that take the next token from a shared
//! counter. The first pass is the cold pass (no token has been used before, if the caller
//! chose users nothing else touched), the next ones are warm passes over the same users.
//!
//! ```sh
//! bench-users --tokens FILE [--item http://127.0.0.1:5001] [--path /] [-c 64] [--passes 2]
//! ```
//! The last lines are machine-readable (milliseconds), one per pass:
//! `LOAD name=item_list_cold requests=.. errors=.. rps=.. p50=.. p95=.. p99=.. max=.. secs=..`
//! (then `item_list_warm`, `item_list_warm2`, ...). An error is any answer but 200.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    process::ExitCode,
    rc::Rc,
    time::{Duration, Instant},
};

use bench_tools::{ms, positive, quantiles, read_tokens, Services, Workers};

/// The item list once per token: a cold pass (first requests), then warm passes.
#[derive(clap::Parser, Debug)]
#[command(name = "bench-users")]
struct Args {
    #[command(flatten)]
    services: Services,
    #[command(flatten)]
    workers: Workers,
    /// The path requested (the item list, with its query).
    #[arg(long, default_value = "/", value_parser = path)]
    path: String,
    /// Passes over the tokens: the first cold, the others warm.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    passes: usize,
}

fn path(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        Ok(s.to_string())
    } else {
        Err("must start with /".into())
    }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    errors: usize,
    statuses: BTreeMap<u16, usize>,
}

/// One pass: every token once. Returns the tally and the pass's wall time.
async fn pass(http: &reqwest::Client, url: &str, tokens: Rc<Vec<String>>, concurrency: usize) -> (Tally, Duration) {
    let next = Rc::new(RefCell::new(0usize));
    let tally = Rc::new(RefCell::new(Tally::default()));
    let started = Instant::now();
    let local = tokio::task::LocalSet::new();
    for _ in 0..concurrency {
        let (next, tally, tokens, http, url) =
            (next.clone(), tally.clone(), tokens.clone(), http.clone(), url.to_string());
        local.spawn_local(async move {
            loop {
                let k = {
                    let mut n = next.borrow_mut();
                    if *n >= tokens.len() {
                        break;
                    }
                    *n += 1;
                    *n - 1
                };
                let start = Instant::now();
                let status = match http.get(&url).header("USER-TOKEN", &tokens[k]).send().await {
                    // the whole body is part of the request's time
                    Ok(r) => {
                        let s = r.status().as_u16();
                        r.bytes().await.ok().map(|_| s)
                    }
                    Err(_) => None,
                };
                let took = start.elapsed();
                let mut t = tally.borrow_mut();
                t.latencies.push(ms(took));
                let code = status.unwrap_or(0);
                *t.statuses.entry(code).or_default() += 1;
                if code != 200 {
                    t.errors += 1;
                }
            }
        });
    }
    local.await;
    let elapsed = started.elapsed();
    let tally = std::mem::take(&mut *tally.borrow_mut());
    (tally, elapsed)
}

async fn run(a: Args) -> Result<bool, String> {
    let tokens = read_tokens(&a.workers.tokens)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(a.workers.concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}{}", a.services.item, a.path);
    let tokens = Rc::new(tokens);
    eprintln!(
        "bench-users: GET {url}, {} passes over {} tokens, concurrency {}",
        a.passes,
        tokens.len(),
        a.workers.concurrency
    );
    let mut lines = Vec::new();
    let mut total_errors = 0;
    for p in 0..a.passes {
        let name = match p {
            0 => "item_list_cold".to_string(),
            1 => "item_list_warm".to_string(),
            n => format!("item_list_warm{n}"),
        };
        let (mut t, elapsed) = pass(&http, &url, tokens.clone(), a.workers.concurrency).await;
        let secs = elapsed.as_secs_f64();
        let n = t.latencies.len();
        let [p50, p95, p99, max] = quantiles(&mut t.latencies);
        let rps = n as f64 / secs;
        total_errors += t.errors;
        println!(
            "{name:<16} requests {n:>7}  errors {:>5}  {rps:>9.1} req/s  p50 {p50:>6.2} ms  p95 {p95:>6.2} ms  p99 {p99:>6.2} ms  max {max:>7.2} ms  statuses {:?}",
            t.errors, t.statuses
        );
        lines.push(format!(
            "LOAD name={name} requests={n} errors={} rps={rps:.1} p50={p50:.3} p95={p95:.3} p99={p99:.3} max={max:.3} secs={secs:.2}",
            t.errors
        ));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(total_errors == 0)
}

fn main() -> ExitCode {
    bench_tools::run_main("bench-users", run)
}
