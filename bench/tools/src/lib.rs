//! What the bench tools share: argument parsing (clap: the common options as `Services` and
//! `Workers`, flattened into each tool's own), percentiles, token files.

use std::{future::Future, process::ExitCode, time::Duration};

/// Nearest-rank percentile of an ascending slice (`q` in 0..=1); NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// p50, p95, p99 and max of unsorted samples (sorts them).
pub fn quantiles(v: &mut [f64]) -> [f64; 4] {
    v.sort_by(f64::total_cmp);
    [percentile(v, 0.5), percentile(v, 0.95), percentile(v, 0.99), v.last().copied().unwrap_or(f64::NAN)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The services a tool talks to: `--alarm URL` and `--item URL` (a trailing `/` is dropped).
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct Services {
    /// The alarm service's base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:6001", value_parser = base_url)]
    pub alarm: String,
    /// The item service's base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:5001", value_parser = base_url)]
    pub item: String,
}

/// The closed loop of the load tools: `--tokens FILE` and `-c`/`--concurrency` workers on one
/// thread (as drill runs).
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct Workers {
    /// Tokens: one per line, or a CSV whose header names a `token` column.
    #[arg(long, value_name = "FILE")]
    pub tokens: String,
    /// Requests in flight.
    #[arg(short = 'c', long, default_value_t = 64, value_parser = positive)]
    pub concurrency: usize,
}

/// A base URL without its trailing `/`.
pub fn base_url(s: &str) -> Result<String, String> {
    Ok(s.trim_end_matches('/').to_string())
}

/// A number above 0.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a number above 0".into()),
    }
}

/// A value given in milliseconds.
pub fn millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>().map(Duration::from_millis).map_err(|_| "must be a number of milliseconds".into())
}

/// A tool's `main`: parses the arguments (clap: exit 2 with the usage on bad ones, 0 after
/// `--help`), runs on one thread (as drill does), exits 0 when the run saw no errors, 1 when
/// it did, and fails on anything else.
pub fn run_main<A, Fut>(name: &str, run: fn(A) -> Fut) -> ExitCode
where
    A: clap::Parser,
    Fut: Future<Output = Result<bool, String>>,
{
    let args = A::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Tokens from a file: one per line, or a CSV whose first line is a header naming a
/// `token` column (the drill plans' `tokens.csv`).
pub fn read_tokens(path: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return Err(format!("{path} is empty"));
    };
    let header: Vec<&str> = first.split(',').map(str::trim).collect();
    let (col, rest): (usize, Vec<&str>) = match header.iter().position(|h| *h == "token") {
        Some(i) => (i, lines.collect()),
        None => (0, std::iter::once(first).chain(lines).collect()),
    };
    let tokens: Vec<String> = rest
        .iter()
        .filter_map(|l| l.split(',').nth(col).map(|t| t.trim().trim_matches('"').to_string()))
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.is_empty() {
        return Err(format!("{path} has no tokens"));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, path::Path};

    /// The CSVs in bench/plans are for the demo seed (for running the plans by hand against
    /// a plain `scripts/up`): every token must be a demo user's, every item id a demo item.
    #[test]
    fn the_committed_plan_csvs_fit_the_demo_seed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let users = std::fs::read_to_string(root.join("seed/demo/user/init_database.sql")).unwrap();
        let tokens: HashSet<&str> = users.lines().filter_map(|l| l.split('\t').nth(2)).collect();
        for csv in ["tokens", "tokens-load", "alarmed", "pairs", "mix"] {
            let path = root.join(format!("bench/plans/{csv}.csv"));
            let text = std::fs::read_to_string(&path).unwrap();
            let mut lines = text.lines();
            assert!(lines.next().unwrap().starts_with("token"), "{csv}: header");
            let mut n = 0;
            for line in lines {
                let mut cols = line.split(',');
                let token = cols.next().unwrap();
                assert!(tokens.contains(token), "{csv}: {token} is no demo user's token");
                for item in cols {
                    let id: i64 = item.parse().unwrap();
                    assert!((1..=100).contains(&id), "{csv}: item {id} is not a demo item");
                }
                n += 1;
            }
            assert!(n >= 8, "{csv}: {n} rows");
        }
        assert_eq!(super::read_tokens(root.join("bench/plans/tokens-load.csv").to_str().unwrap()).unwrap().len(), 50);
    }
}

#[cfg(test)]
mod args_tests {
    use std::time::Duration;

    use clap::Parser;

    use super::{millis, Services, Workers};

    #[derive(Parser, Debug)]
    struct Tool {
        #[command(flatten)]
        services: Services,
        #[command(flatten)]
        workers: Workers,
        #[arg(long = "pause-ms", default_value = "20", value_parser = millis)]
        pause: Duration,
    }

    #[test]
    fn the_shared_options_have_the_documented_defaults() {
        let t = Tool::try_parse_from(["tool", "--tokens", "t.csv"]).unwrap();
        assert_eq!(t.services.alarm, "http://127.0.0.1:6001");
        assert_eq!(t.services.item, "http://127.0.0.1:5001");
        assert_eq!((t.workers.tokens.as_str(), t.workers.concurrency), ("t.csv", 64));
        assert_eq!(t.pause, Duration::from_millis(20));
    }

    #[test]
    fn both_spellings_are_accepted_and_urls_lose_their_trailing_slash() {
        let t =
            Tool::try_parse_from(["tool", "--tokens=a", "-c", "16", "--alarm=http://h:1/", "--item", "http://h:2/"])
                .unwrap();
        assert_eq!((t.services.alarm.as_str(), t.services.item.as_str()), ("http://h:1", "http://h:2"));
        assert_eq!(t.workers.concurrency, 16);
        assert_eq!(
            Tool::try_parse_from(["tool", "--tokens", "a", "--concurrency", "8"]).unwrap().workers.concurrency,
            8
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(Tool::try_parse_from(["tool"]).is_err(), "--tokens is required");
        assert!(Tool::try_parse_from(["tool", "--tokens", "a", "-c", "0"]).is_err());
        assert!(Tool::try_parse_from(["tool", "--tokens", "a", "--pause-ms", "x"]).is_err());
        assert!(Tool::try_parse_from(["tool", "--tokens", "a", "--what"]).is_err());
    }
}
