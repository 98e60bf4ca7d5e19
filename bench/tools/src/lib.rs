//! What the probe and the load generator share: argument parsing, percentiles, token files.

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

/// `--key value` and `--key=value` arguments, in order.
pub struct ArgIter {
    it: std::iter::Skip<std::env::Args>,
}

impl Default for ArgIter {
    fn default() -> Self {
        ArgIter { it: std::env::args().skip(1) }
    }
}

impl ArgIter {
    /// The next key and a way to take its value.
    pub fn next_key(&mut self) -> Option<(String, Option<String>)> {
        let arg = self.it.next()?;
        Some(match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (arg, None),
        })
    }

    pub fn value(&mut self, key: &str, inline: Option<String>) -> Result<String, String> {
        inline.or_else(|| self.it.next()).ok_or(format!("{key} needs a value"))
    }

    pub fn number<T: std::str::FromStr>(&mut self, key: &str, inline: Option<String>) -> Result<T, String> {
        self.value(key, inline)?.parse().map_err(|_| format!("{key} must be a number"))
    }

    /// A value given in milliseconds.
    pub fn millis(&mut self, key: &str, inline: Option<String>) -> Result<Duration, String> {
        self.value(key, inline)?
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{key} must be a number of milliseconds"))
    }
}

/// A tool's `main`: parses the arguments (exit 2 on bad ones), runs on one thread (as drill
/// does), exits 0 when the run saw no errors, 1 when it did, and fails on anything else.
pub fn run_main<A, Fut>(name: &str, parse_args: fn() -> Result<A, String>, run: fn(A) -> Fut) -> ExitCode
where
    Fut: Future<Output = Result<bool, String>>,
{
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
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
