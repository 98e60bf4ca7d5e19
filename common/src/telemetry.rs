//! Logging and metrics.
//!
//! Metrics are recorded with the `metrics` crate into a `metrics-exporter-prometheus`
//! recorder owned by this process's [`Metrics`] handle and rendered on `/metrics` (see
//! `docs/decisions.md` for why these crates). Every label value comes from a fixed set —
//! HTTP methods are one of seven or `other`, routes are the matched route pattern or
//! `unmatched`, entities and owners are our own names — so no request can add a series:
//! labels never carry tokens, paths or other client input.
//!
//! Logging caps every library at `info`, whatever `RUST_LOG` says: tokio-postgres logs the
//! parameters of every statement at debug (tokens, in a user `Lookup`), lapin logs whole frames
//! at trace (RPC requests carry tokens), and other libraries may log request heads.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use log::{LevelFilter, Log, Metadata as LogMetadata, Record};
use metrics::{Counter, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::error::{Error, Result};

/// Targets (module paths) of the platform's own code: only these and each domain's crates
/// (`<domain>` the binary, `<domain>_service` its library, `<domain>_kind` its kinds, for every
/// domain of `domains.tsv`) may log below `info`.
const OWN_TARGETS: [&str; 2] = ["moa", "common"];

fn is_own(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    OWN_TARGETS.contains(&krate)
        || crate::settings::Domain::all()
            .iter()
            .any(|d| krate.strip_prefix(d.name()).is_some_and(|rest| matches!(rest, "" | "_service" | "_kind")))
}

/// The most a record of `target` may show: anything for our code, `info` for libraries.
fn cap(target: &str) -> LevelFilter {
    if is_own(target) {
        LevelFilter::Trace
    } else if target == "lapin::returned_messages" {
        // "Server returned us a message" at warn for every RPC question sent before its owner
        // declared its queue: the RPC client counts and reports those itself (`no_owner`).
        LevelFilter::Error
    } else if target.starts_with("tracing::span") {
        // lapin's tracing spans, bridged to log records: "io_loop;" at every connection, no news.
        LevelFilter::Warn
    } else {
        LevelFilter::Info
    }
}

/// env_logger, with every library capped at `info` (see the module doc).
struct CappedLogger(env_logger::Logger);

impl Log for CappedLogger {
    fn enabled(&self, metadata: &LogMetadata<'_>) -> bool {
        metadata.level() <= cap(metadata.target()) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if record.level() <= cap(record.target()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// `RUST_LOG` (default `info`), one line per record with time, level and target; libraries
/// are capped at `info` whatever `RUST_LOG` asks for.
pub fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info,lapin=warn,actix_server=warn");
    let logger = env_logger::Builder::from_env(env).format_timestamp_millis().build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(CappedLogger(logger))).is_ok() {
        log::set_max_level(max);
    }
}

const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Histogram samples wait in the recorder until an upkeep folds them into the buckets; one
/// runs every this many observations (and at each scrape), so memory stays bounded even
/// when nobody scrapes `/metrics`.
const UPKEEP_EVERY: u64 = 4096;

/// The label set of one series. From a fixed set of values, always: see the module doc.
/// Built from pairs (`[("entity", "item")]`) or from Prometheus label text
/// (`entity="item",owner="user"`; values without quotes or commas), as the call sites have it.
#[derive(Default)]
pub struct Labels(Vec<Label>);

impl<const N: usize> From<[(&'static str, &'static str); N]> for Labels {
    fn from(pairs: [(&'static str, &'static str); N]) -> Self {
        Labels(pairs.into_iter().map(|(k, v)| Label::new(k, v)).collect())
    }
}

impl From<Vec<(&'static str, SharedString)>> for Labels {
    fn from(pairs: Vec<(&'static str, SharedString)>) -> Self {
        Labels(pairs.into_iter().map(|(k, v)| Label::new(k, v)).collect())
    }
}

impl From<String> for Labels {
    fn from(text: String) -> Self {
        Labels::from(text.as_str())
    }
}

impl From<&str> for Labels {
    fn from(text: &str) -> Self {
        let mut labels = Vec::new();
        let mut rest = text.trim();
        while let Some((key, after)) = rest.split_once("=\"") {
            let Some((value, tail)) = after.split_once('"') else { break };
            labels.push(Label::new(key.trim_start_matches(',').trim().to_string(), value.to_string()));
            rest = tail;
        }
        Labels(labels)
    }
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    observations: AtomicU64,
    /// The HTTP series by (route pattern, method, status), registered once each: a lookup
    /// in the recorder builds and hashes a key with its labels, at every request otherwise.
    http: Mutex<HashMap<String, HttpSeries>>,
}

/// One route's HTTP series: by (method, status), its request counter and its route's
/// latency histogram.
type HttpSeries = HashMap<(&'static str, u16), (Counter, Histogram)>;

/// This process's metrics: counters, gauges and histograms by name and bounded labels.
/// Cheap to clone; every clone records into the same recorder. The recorder is not
/// installed as the `metrics` global: each handle owns its own, so unit tests (and two
/// services in one process) never collide over the one global slot.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        let builder = PrometheusBuilder::new();
        // Rendered as real Prometheus histograms (`_bucket`), as dashboards and tests read them.
        let builder = match builder.set_buckets(&BUCKETS) {
            Ok(b) => b,
            Err(e) => {
                log::error!("metrics: histogram buckets refused ({e}); rendering summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Metrics(Arc::new(Inner { recorder, handle, observations: AtomicU64::new(0), http: Mutex::default() }))
    }
}

static METADATA: Metadata<'static> = Metadata::new("moa", Level::INFO, None);

impl Metrics {
    fn key(name: &'static str, labels: Labels) -> Key {
        Key::from_parts(name, labels.0)
    }

    pub fn describe(&self, name: &'static str, kind: &'static str, help: &'static str) {
        let (name, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
        match kind {
            "counter" => self.0.recorder.describe_counter(name, None, help),
            "gauge" => self.0.recorder.describe_gauge(name, None, help),
            _ => self.0.recorder.describe_histogram(name, None, help),
        }
    }

    /// The counter `name` with `labels`, to keep and increment on a hot path (looked up
    /// once, not at every increment as [`Self::inc`] does).
    pub fn counter(&self, name: &'static str, labels: impl Into<Labels>) -> Counter {
        self.0.recorder.register_counter(&Self::key(name, labels.into()), &METADATA)
    }

    /// One answered HTTP request: `moa_http_requests_total` by route, method and status, and
    /// `moa_http_request_seconds` by route. `route` is the matched pattern, never the path.
    pub fn http_request(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        let (counter, histogram) = {
            let mut routes = self.0.http.lock().unwrap_or_else(|p| p.into_inner());
            match routes.get(route).and_then(|by_outcome| by_outcome.get(&(method, status))) {
                Some(series) => series.clone(),
                None => {
                    let labels: Vec<(&'static str, SharedString)> = vec![
                        ("route", route.to_string().into()),
                        ("method", method.into()),
                        ("status", status.to_string().into()),
                    ];
                    let latency: Vec<(&'static str, SharedString)> = vec![("route", route.to_string().into())];
                    let series = (
                        self.counter("moa_http_requests_total", labels),
                        self.0
                            .recorder
                            .register_histogram(&Self::key("moa_http_request_seconds", latency.into()), &METADATA),
                    );
                    routes.entry(route.to_string()).or_default().insert((method, status), series.clone());
                    series
                }
            }
        };
        counter.increment(1);
        self.record(&histogram, seconds);
    }

    /// Adds `by` (a count) to a counter.
    pub fn inc(&self, name: &'static str, labels: impl Into<Labels>, by: f64) {
        let counter = self.0.recorder.register_counter(&Self::key(name, labels.into()), &METADATA);
        counter.increment(by.max(0.0) as u64);
    }

    pub fn set(&self, name: &'static str, labels: impl Into<Labels>, value: f64) {
        self.0.recorder.register_gauge(&Self::key(name, labels.into()), &METADATA).set(value);
    }

    pub fn observe(&self, name: &'static str, labels: impl Into<Labels>, seconds: f64) {
        self.record(&self.0.recorder.register_histogram(&Self::key(name, labels.into()), &METADATA), seconds);
    }

    fn record(&self, histogram: &Histogram, seconds: f64) {
        histogram.record(seconds);
        if self.0.observations.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.0.handle.run_upkeep();
        }
    }

    pub fn rpc_call<T>(&self, owner: &'static str, result: &Result<T>, took: Duration) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(Error::RpcTimeout(_)) => "timeout",
            Err(Error::RpcNoOwner(_)) => "no_owner",
            Err(Error::BusDown) => "bus_down",
            Err(_) => "error",
        };
        self.inc("moa_rpc_calls_total", [("owner", owner), ("outcome", outcome)], 1.0);
        self.observe("moa_rpc_call_seconds", [("owner", owner)], took.as_secs_f64());
    }

    pub fn outbox_published(&self, n: u64) {
        self.inc("moa_outbox_published_total", Labels::default(), n as f64);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        self.0.handle.run_upkeep();
        self.0.handle.render()
    }
}

/// The HTTP method as a metric label: one of the seven the services can meet, else `other`
/// (a client can send any token as a method; each would otherwise be a new series).
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_prometheus_text() {
        let m = Metrics::default();
        m.describe("moa_x_total", "counter", "things");
        m.inc("moa_x_total", "a=\"1\"".to_string(), 2.0);
        m.observe("moa_lat_seconds", [("route", "/")], 0.003);
        m.set("moa_g", "", 1.0);
        let text = m.render();
        assert!(text.contains("# TYPE moa_x_total counter"), "{text}");
        assert!(text.contains("# HELP moa_x_total things"), "{text}");
        assert!(text.contains("moa_x_total{a=\"1\"} 2"), "{text}");
        assert!(text.contains("moa_lat_seconds_bucket{route=\"/\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("moa_lat_seconds_bucket{route=\"/\",le=\"0.0025\"} 0"), "{text}");
        assert!(text.contains("moa_lat_seconds_count{route=\"/\"} 1"), "{text}");
        assert!(text.contains("moa_g 1"), "{text}");
    }

    #[test]
    fn http_series_are_registered_once_and_counted_every_time() {
        let m = Metrics::default();
        m.http_request("/", "GET", 200, 0.001);
        m.http_request("/", "GET", 200, 0.003);
        m.http_request("/", "GET", 401, 0.002);
        m.http_request("/{item_id}", "GET", 200, 0.002);
        let text = m.render();
        assert!(text.contains("moa_http_requests_total{route=\"/\",method=\"GET\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("moa_http_requests_total{route=\"/\",method=\"GET\",status=\"401\"} 1"), "{text}");
        assert!(text.contains("moa_http_request_seconds_count{route=\"/\"} 3"), "{text}");
        assert!(text.contains("moa_http_request_seconds_count{route=\"/{item_id}\"} 1"), "{text}");
    }

    #[test]
    fn two_handles_do_not_share_series() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.inc("moa_only_in_a_total", Labels::default(), 1.0);
        assert!(a.render().contains("moa_only_in_a_total"));
        assert!(!b.render().contains("moa_only_in_a_total"));
    }

    #[test]
    fn label_text_is_parsed_into_pairs() {
        let Labels(l) = Labels::from("entity=\"item\",owner=\"user\"");
        let pairs: Vec<(&str, &str)> = l.iter().map(|l| (l.key(), l.value())).collect();
        assert_eq!(pairs, vec![("entity", "item"), ("owner", "user")]);
        assert!(Labels::from("").0.is_empty());
    }

    #[test]
    fn unknown_methods_share_one_label() {
        let odd = actix_web::http::Method::from_bytes(b"XYZZY").unwrap();
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&actix_web::http::Method::DELETE), "DELETE");
    }

    #[test]
    fn libraries_are_capped_at_info_and_our_code_is_not() {
        assert_eq!(cap("tokio_postgres::query"), LevelFilter::Info);
        assert_eq!(cap("lapin::channels"), LevelFilter::Info);
        assert_eq!(cap("actix_http::h1::dispatcher"), LevelFilter::Info);
        assert_eq!(cap("common::amqp::relay"), LevelFilter::Trace);
        assert_eq!(cap("moa::access"), LevelFilter::Trace);
        for d in crate::settings::Domain::all() {
            for krate in [d.name().to_string(), format!("{}_service::store", d.name()), format!("{}_kind", d.name())] {
                assert_eq!(cap(&krate), LevelFilter::Trace, "{krate}");
            }
        }
        // A library whose name starts like ours is still a library.
        assert_eq!(cap("users_lib::x"), LevelFilter::Info);
        assert_eq!(cap("item_services::x"), LevelFilter::Info);
    }
}
