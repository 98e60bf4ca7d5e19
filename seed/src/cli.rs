//! Command-line parsing for `seedgen` (std only).

use std::path::PathBuf;

/// Usage text printed by `--help`.
pub const USAGE: &str = "\
Usage: seedgen --out DIR [--items N] [--users M] [--alarms K] [--seed S]

Writes deterministic PostgreSQL dumps (pg_dump text format) to
  DIR/item/init_database.sql
  DIR/user/init_database.sql
  DIR/alarm/init_database.sql

Options:
  --out DIR     output directory (required)
  --items N     number of items            [default: 100]
  --users M     number of users            [default: 50]
  --alarms K    number of alarms, K <= N*M [default: 0]
  --seed S      PRNG seed (u64)            [default: 42]
  -h, --help    print this help

N, M and K are at most 2147483647 (the alarm columns are `integer`).
The same arguments always produce byte-for-byte identical files.
";

/// Largest id that fits the `integer` columns of `public.alarm`.
pub const MAX_COUNT: u64 = i32::MAX as u64;

/// Generation parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub out: PathBuf,
    pub items: u64,
    pub users: u64,
    pub alarms: u64,
    pub seed: u64,
}

impl Config {
    pub const DEFAULT_ITEMS: u64 = 100;
    pub const DEFAULT_USERS: u64 = 50;
    pub const DEFAULT_ALARMS: u64 = 0;
    pub const DEFAULT_SEED: u64 = 42;

    /// Configuration with default counts writing to `out`.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            items: Self::DEFAULT_ITEMS,
            users: Self::DEFAULT_USERS,
            alarms: Self::DEFAULT_ALARMS,
            seed: Self::DEFAULT_SEED,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Run(Config),
}

fn parse_count(flag: &str, value: &str) -> Result<u64, String> {
    let n: u64 = value.parse().map_err(|_| format!("{flag}: expected a non-negative integer, got {value:?}"))?;
    if n > MAX_COUNT {
        return Err(format!("{flag}: {n} exceeds the maximum {MAX_COUNT}"));
    }
    Ok(n)
}

/// Parses the arguments (without the program name).
///
/// Accepts `--flag value` and `--flag=value`. Errors are human-readable
/// messages; the caller exits with status 2.
pub fn parse_args<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut out: Option<PathBuf> = None;
    let mut items = None;
    let mut users = None;
    let mut alarms = None;
    let mut seed = None;
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if !matches!(flag.as_str(), "--out" | "--items" | "--users" | "--alarms" | "--seed") {
            return Err(format!("unknown argument {arg:?}"));
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{flag}: missing value"))?,
        };
        let duplicate = match flag.as_str() {
            "--out" => {
                if value.is_empty() {
                    return Err("--out: empty path".to_string());
                }
                out.replace(PathBuf::from(value)).is_some()
            }
            "--items" => items.replace(parse_count(&flag, &value)?).is_some(),
            "--users" => users.replace(parse_count(&flag, &value)?).is_some(),
            "--alarms" => alarms.replace(parse_count(&flag, &value)?).is_some(),
            _ => seed
                .replace(
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("{flag}: expected an unsigned 64-bit integer, got {value:?}"))?,
                )
                .is_some(),
        };
        if duplicate {
            return Err(format!("{flag} given more than once"));
        }
    }
    let out = out.ok_or_else(|| "--out DIR is required".to_string())?;
    let cfg = Config {
        out,
        items: items.unwrap_or(Config::DEFAULT_ITEMS),
        users: users.unwrap_or(Config::DEFAULT_USERS),
        alarms: alarms.unwrap_or(Config::DEFAULT_ALARMS),
        seed: seed.unwrap_or(Config::DEFAULT_SEED),
    };
    let pairs = u128::from(cfg.items) * u128::from(cfg.users);
    if u128::from(cfg.alarms) > pairs {
        return Err(format!("--alarms {} exceeds items*users = {pairs} distinct (user_id, item_id) pairs", cfg.alarms));
    }
    Ok(Command::Run(cfg))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().copied())? {
            Command::Run(c) => Ok(c),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults() {
        assert_eq!(run(&["--out", "d"]).unwrap(), Config::new("d"));
    }

    #[test]
    fn all_flags() {
        let c = run(&["--out=x", "--items", "7", "--users=3", "--alarms", "21", "--seed", "9"]).unwrap();
        assert_eq!(c, Config { out: "x".into(), items: 7, users: 3, alarms: 21, seed: 9 });
    }

    #[test]
    fn help() {
        assert_eq!(parse_args(["--out", "x", "-h"]), Ok(Command::Help));
        assert_eq!(parse_args(["--help"]), Ok(Command::Help));
    }

    #[test]
    fn errors() {
        assert!(run(&[]).is_err());
        assert!(run(&["--out"]).is_err());
        assert!(run(&["--out", "d", "--items", "-1"]).is_err());
        assert!(run(&["--out", "d", "--items", "abc"]).is_err());
        assert!(run(&["--out", "d", "--items", "2147483648"]).is_err());
        assert!(run(&["--out", "d", "--bogus", "1"]).is_err());
        assert!(run(&["--out", "d", "extra"]).is_err());
        assert!(run(&["--out", "d", "--out", "e"]).is_err());
        assert!(run(&["--out", "d", "--items", "2", "--users", "3", "--alarms", "7"]).is_err());
        assert!(run(&["--out", "d", "--items", "2", "--users", "3", "--alarms", "6"]).is_ok());
        assert!(run(&["--out", "d", "--users", "0", "--alarms", "1"]).is_err());
    }
}
