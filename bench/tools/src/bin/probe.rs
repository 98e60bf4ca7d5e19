//! Propagation probe. N times, alternately sets and clears one user's alarm on one item
//! through the alarm service and polls the item service's list (with the same token) until
//! that item's `is_alarm_set` flips. Reports p50/p95/p99/max of
//!
//! - `e2e`: from sending the write to the first poll answer that shows it, and
//! - `after_ack`: from the write's 2xx answer to that poll answer,
//!
//! plus the write's own latency. The polled item is the one with the highest id, read with
//! `GET /?limit=1` (cheap even with 100k items, and it records no view). Polls are 1 ms apart
//! (`--poll-ms`), so latencies are upper bounds with about that resolution.
//!
//! ```sh
//! bench-probe --token TOKEN [--alarm http://127.0.0.1:6001] [--item http://127.0.0.1:5001]
//!             [-n 200] [--poll-ms 1] [--timeout-ms 5000] [--pause-ms 20]
//! ```
//! The last line of output is machine-readable: `PROBE key=value ...` (milliseconds).

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use bench_tools::{millis, ms, quantiles, Services};
use serde_json::Value;

/// Propagation probe: how soon an alarm write shows in the item list.
#[derive(clap::Parser, Debug)]
#[command(name = "bench-probe")]
struct Args {
    #[command(flatten)]
    services: Services,
    /// The user whose alarm is set and cleared.
    #[arg(long)]
    token: String,
    /// Writes (alternately set and clear).
    #[arg(short = 'n', default_value_t = 200)]
    n: usize,
    /// Between two polls of the item list.
    #[arg(long = "poll-ms", value_name = "MS", default_value = "1", value_parser = millis)]
    poll: Duration,
    /// How long a write may take to show before the probe fails.
    #[arg(long = "timeout-ms", value_name = "MS", default_value = "5000", value_parser = millis)]
    timeout: Duration,
    /// Between two writes.
    #[arg(long = "pause-ms", value_name = "MS", default_value = "20", value_parser = millis)]
    pause: Duration,
}

struct Probe {
    http: reqwest::Client,
    args: Args,
}

impl Probe {
    /// The first item of the list (highest id): its id and `is_alarm_set`.
    async fn top_item(&self) -> Result<(i64, bool), String> {
        let res = self
            .http
            .get(format!("{}/?limit=1", self.args.services.item))
            .header("USER-TOKEN", &self.args.token)
            .send()
            .await
            .map_err(|e| format!("item list: {e}"))?;
        let status = res.status();
        let body = res.bytes().await.map_err(|e| format!("item list body: {e}"))?;
        if !status.is_success() {
            return Err(format!("item list answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("item list JSON: {e}"))?;
        let first = &v["payload"][0];
        match (first["id"].as_i64(), first["is_alarm_set"].as_bool()) {
            (Some(id), Some(flag)) => Ok((id, flag)),
            _ => Err(format!("item list has no first item: {v}")),
        }
    }

    async fn write(&self, item_id: i64, set: bool) -> Result<(), String> {
        let req = if set {
            self.http.post(format!("{}/", self.args.services.alarm))
        } else {
            self.http.delete(format!("{}/", self.args.services.alarm))
        };
        let res = req
            .header("USER-TOKEN", &self.args.token)
            .header("content-type", "application/json")
            .body(format!("{{\"item_id\": {item_id}}}"))
            .send()
            .await
            .map_err(|e| format!("alarm write: {e}"))?;
        let status = res.status();
        let _ = res.bytes().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("alarm write answered {status}"))
        }
    }

    /// Polls until the top item's flag is `want`; the instant of the answer that showed it.
    async fn wait_for(&self, item_id: i64, want: bool) -> Result<Instant, String> {
        let deadline = Instant::now() + self.args.timeout;
        loop {
            let (id, flag) = self.top_item().await?;
            let at = Instant::now();
            if id != item_id {
                return Err(format!("the first item changed from {item_id} to {id}"));
            }
            if flag == want {
                return Ok(at);
            }
            if at >= deadline {
                return Err(format!("is_alarm_set did not become {want} within {:?}", self.args.timeout));
            }
            tokio::time::sleep(self.args.poll).await;
        }
    }
}

fn summary(name: &str, mut v: Vec<f64>) -> (String, String) {
    let [p50, p95, p99, max] = quantiles(&mut v);
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    (
        format!("{name:<10} n={:<4} p50 {p50:>7.2} ms  p95 {p95:>7.2} ms  p99 {p99:>7.2} ms  max {max:>7.2} ms  mean {mean:>7.2} ms", v.len()),
        format!("{name}_p50={p50:.2} {name}_p95={p95:.2} {name}_p99={p99:.2} {name}_max={max:.2}"),
    )
}

async fn run(args: Args) -> Result<bool, String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    let probe = Probe { http, args };
    let (item_id, initial) = probe.top_item().await?;
    eprintln!("probe: item {item_id}, is_alarm_set={initial}; {} samples", probe.args.n);
    // start from a cleared alarm
    if initial {
        probe.write(item_id, false).await?;
        probe.wait_for(item_id, false).await?;
    }
    let (mut e2e, mut after_ack, mut write) = (Vec::new(), Vec::new(), Vec::new());
    let mut errors = 0usize;
    let mut set = true;
    for i in 0..probe.args.n {
        tokio::time::sleep(probe.args.pause).await;
        let t0 = Instant::now();
        let outcome = async {
            probe.write(item_id, set).await?;
            let t1 = Instant::now();
            let t2 = probe.wait_for(item_id, set).await?;
            Ok::<_, String>((t1, t2))
        }
        .await;
        match outcome {
            Ok((t1, t2)) => {
                write.push(ms(t1 - t0));
                e2e.push(ms(t2 - t0));
                after_ack.push(ms(t2 - t1));
            }
            Err(e) => {
                errors += 1;
                eprintln!("probe: sample {i}: {e}");
                // resynchronise with what the item service shows
                if let Ok((_, flag)) = probe.top_item().await {
                    set = flag;
                }
            }
        }
        set = !set;
    }
    // leave the alarm as it was found: the last write left it at `!set`
    if initial == set {
        let _ = probe.write(item_id, initial).await;
    }
    let (a, ka) = summary("e2e", e2e);
    let (b, kb) = summary("after_ack", after_ack);
    let (c, kc) = summary("write", write);
    println!("{a}\n{b}\n{c}\nerrors     {errors}");
    println!("PROBE n={} errors={errors} {ka} {kb} {kc}", probe.args.n);
    Ok(errors == 0)
}

fn main() -> ExitCode {
    bench_tools::run_main("bench-probe", run)
}
