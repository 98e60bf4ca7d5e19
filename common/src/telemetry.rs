//! Logging and metrics.
//!
//! Metrics are plain counters and histograms keyed by name and label set, rendered in the
//! Prometheus text format on `/metrics`. Labels never carry tokens or other user input.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::error::{Error, Result};

/// `RUST_LOG` (default `info`), one line per record with time, level and target.
pub fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info,lapin=warn,actix_server=warn");
    let _ = env_logger::Builder::from_env(env).format_timestamp_millis().try_init();
}

const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, String), f64>,
    gauges: BTreeMap<(&'static str, String), f64>,
    histograms: BTreeMap<(&'static str, String), Histogram>,
    help: BTreeMap<&'static str, (&'static str, &'static str)>,
}

#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<Registry>>);

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn describe(&self, name: &'static str, kind: &'static str, help: &'static str) {
        self.with(|r| r.help.insert(name, (kind, help)));
    }

    pub fn inc(&self, name: &'static str, labels: String, by: f64) {
        self.with(|r| *r.counters.entry((name, labels)).or_default() += by);
    }

    pub fn set(&self, name: &'static str, labels: String, value: f64) {
        self.with(|r| r.gauges.insert((name, labels), value));
    }

    pub fn observe(&self, name: &'static str, labels: String, seconds: f64) {
        self.with(|r| {
            let h = r.histograms.entry((name, labels)).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        });
    }

    pub fn counter_value(&self, name: &'static str, labels: &str) -> f64 {
        self.with(|r| r.counters.get(&(name, labels.to_string())).copied().unwrap_or(0.0))
    }

    pub fn rpc_call<T>(&self, owner: &str, result: &Result<T>, took: Duration) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(Error::RpcTimeout(_)) => "timeout",
            Err(Error::BusDown) => "bus_down",
            Err(_) => "error",
        };
        self.inc("moa_rpc_calls_total", format!("owner=\"{owner}\",outcome=\"{outcome}\""), 1.0);
        self.observe("moa_rpc_call_seconds", format!("owner=\"{owner}\""), took.as_secs_f64());
    }

    pub fn outbox_published(&self, n: u64) {
        self.inc("moa_outbox_published_total", String::new(), n as f64);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        self.with(|r| {
            let mut out = String::new();
            let mut described = std::collections::BTreeSet::new();
            let mut head = |out: &mut String, name: &'static str, default_kind: &str| {
                if described.insert(name) {
                    let (kind, help) = r.help.get(name).copied().unwrap_or((default_kind, ""));
                    let _ = writeln!(out, "# HELP {name} {help}");
                    let _ = writeln!(out, "# TYPE {name} {kind}");
                }
            };
            let braces = |l: &str| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{{{l}}}")
                }
            };
            for ((name, labels), v) in &r.counters {
                head(&mut out, name, "counter");
                let _ = writeln!(out, "{name}{} {v}", braces(labels));
            }
            for ((name, labels), v) in &r.gauges {
                head(&mut out, name, "gauge");
                let _ = writeln!(out, "{name}{} {v}", braces(labels));
            }
            for ((name, labels), h) in &r.histograms {
                head(&mut out, name, "histogram");
                let sep = if labels.is_empty() { "" } else { "," };
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}", h.counts[i]);
                }
                let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{} {}", braces(labels), h.sum);
                let _ = writeln!(out, "{name}_count{} {}", braces(labels), h.count);
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_prometheus_text() {
        let m = Metrics::default();
        m.describe("moa_x_total", "counter", "things");
        m.inc("moa_x_total", "a=\"1\"".into(), 2.0);
        m.observe("moa_lat_seconds", "route=\"/\"".into(), 0.003);
        let text = m.render();
        assert!(text.contains("# TYPE moa_x_total counter"));
        assert!(text.contains("moa_x_total{a=\"1\"} 2"));
        assert!(text.contains("moa_lat_seconds_bucket{route=\"/\",le=\"0.005\"} 1"));
        assert!(text.contains("moa_lat_seconds_bucket{route=\"/\",le=\"0.0025\"} 0"));
        assert!(text.contains("moa_lat_seconds_count{route=\"/\"} 1"));
    }
}
