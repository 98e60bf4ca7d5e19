//! End-to-end checks of the generated dumps and of the `seedgen` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DOMAINS: [&str; 3] = ["item", "user", "alarm"];

/// Fresh, unique temporary directory (removed on drop).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("seedgen-test-{name}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn seedgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seedgen")).args(args).output().unwrap()
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lines outside the COPY data blocks, with the `setval` arguments blanked.
fn structure(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_copy = false;
    for line in text.split('\n') {
        if in_copy {
            if line == "\\." {
                in_copy = false;
                out.push(line.to_string());
            }
            continue;
        }
        if line.starts_with("COPY ") && line.ends_with(" FROM stdin;") {
            in_copy = true;
        }
        if let Some(rest) = line.strip_prefix("SELECT pg_catalog.setval(") {
            let seq = rest.split(", ").next().unwrap_or("");
            out.push(format!("SELECT pg_catalog.setval({seq}, <n>, <called>);"));
            continue;
        }
        out.push(line.to_string());
    }
    out
}

/// Data rows of the (single) COPY block, split into raw fields.
fn copy_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut in_copy = false;
    for line in text.lines() {
        if in_copy {
            if line == "\\." {
                break;
            }
            rows.push(line.split('\t').map(str::to_string).collect());
        } else if line.starts_with("COPY ") {
            in_copy = true;
        }
    }
    rows
}

fn setval(text: &str) -> String {
    text.lines().find(|l| l.starts_with("SELECT pg_catalog.setval(")).unwrap().to_string()
}

/// (a) The committed demo seed is exactly what the default arguments produce.
#[test]
fn committed_demo_matches_generator() {
    let tmp = TempDir::new("demo");
    let out = seedgen(&["--out", tmp.0.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for domain in DOMAINS {
        let committed = manifest_dir().join("demo").join(domain).join("init_database.sql");
        let generated = seed::dump_path(&tmp.0, domain);
        assert!(
            fs::read(&committed).unwrap() == fs::read(&generated).unwrap(),
            "{} is out of date; regenerate it with \
             `cargo run -q -p seed --bin seedgen -- --out seed/demo --items 100 --users 50 --alarms 0`",
            committed.display()
        );
    }
}

/// (b) Everything but the data (and the setval numbers) equals the reference dumps.
#[test]
fn structure_matches_provided_dumps() {
    let mut references = Vec::new();
    for domain in DOMAINS {
        let reference = manifest_dir().join("../../shared/seed").join(domain).join("init_database.sql");
        if reference.exists() {
            references.push((domain, structure(&read(&reference))));
        } else {
            eprintln!("SKIP: provided seed not found at {}", reference.display());
        }
    }
    if references.is_empty() {
        return;
    }
    let tmp = TempDir::new("structure");
    for (i, args) in [&["--alarms", "0"][..], &["--alarms", "777", "--seed", "3"][..]].iter().enumerate() {
        let dir = tmp.0.join(i.to_string());
        let mut full = vec!["--out", dir.to_str().unwrap()];
        full.extend_from_slice(args);
        assert!(seedgen(&full).status.success());
        for (domain, expected) in &references {
            let actual = structure(&read(&seed::dump_path(&dir, domain)));
            assert_eq!(&actual, expected, "{domain} with {args:?}");
        }
    }
}

/// (c) Row counts, uniqueness, NULL/zero values, setval numbers.
#[test]
fn content_invariants() {
    let tmp = TempDir::new("content");
    let dir = tmp.0.to_str().unwrap();
    let (items, users, alarms) = (300usize, 120usize, 9000usize);
    let out = seedgen(&[
        "--out",
        dir,
        "--items",
        &items.to_string(),
        "--users",
        &users.to_string(),
        "--alarms",
        &alarms.to_string(),
        "--seed",
        "1234",
    ]);
    assert!(out.status.success());

    let item_text = read(&seed::dump_path(&tmp.0, "item"));
    let item_rows = copy_rows(&item_text);
    assert_eq!(item_rows.len(), items);
    assert_eq!(setval(&item_text), format!("SELECT pg_catalog.setval('public.item_id_seq', {items}, true);"));
    for (i, r) in item_rows.iter().enumerate() {
        assert_eq!(r.len(), 5);
        assert_eq!(r[0], (i + 1).to_string());
        let price: u32 = r[4].parse().unwrap();
        assert!(price <= 2_000_000 && price.is_multiple_of(100));
        assert!(["cjmall", "gsshop", "hmall", "lottemall", "hnsmall", "nsmall"].contains(&r[2].as_str()));
    }
    let first30 = &item_rows[..30];
    assert!(first30.iter().any(|r| r[3] == "\\N"), "NULL category in ids 1..=30");
    assert!(first30.iter().any(|r| r[4] == "0"), "price 0 in ids 1..=30");

    let user_text = read(&seed::dump_path(&tmp.0, "user"));
    let user_rows = copy_rows(&user_text);
    assert_eq!(user_rows.len(), users);
    assert_eq!(setval(&user_text), format!("SELECT pg_catalog.setval('public.user_id_seq', {users}, true);"));
    let tokens: HashSet<&str> = user_rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(tokens.len(), users, "tokens are unique");
    for t in &tokens {
        let parts: Vec<&str> = t.split('-').collect();
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12], "{t}");
        assert!(t.chars().all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert!(parts[2].starts_with('4'));
        assert!(parts[3].starts_with(['8', '9', 'a', 'b']));
    }

    let alarm_text = read(&seed::dump_path(&tmp.0, "alarm"));
    let alarm_rows = copy_rows(&alarm_text);
    assert_eq!(alarm_rows.len(), alarms);
    assert_eq!(setval(&alarm_text), format!("SELECT pg_catalog.setval('public.alarm_id_seq', {alarms}, true);"));
    let mut pairs = HashSet::new();
    for (i, r) in alarm_rows.iter().enumerate() {
        assert_eq!(r[0], (i + 1).to_string());
        let item: usize = r[1].parse().unwrap();
        let user: usize = r[2].parse().unwrap();
        assert!((1..=items).contains(&item) && (1..=users).contains(&user));
        assert!(pairs.insert((user, item)), "duplicate pair {user},{item}");
        assert!(r[3].starts_with("2020-"), "{}", r[3]);
    }
}

#[test]
fn default_run_has_empty_alarm_table() {
    let tmp = TempDir::new("empty");
    assert!(seedgen(&["--out", tmp.0.to_str().unwrap()]).status.success());
    let text = read(&seed::dump_path(&tmp.0, "alarm"));
    assert!(copy_rows(&text).is_empty());
    assert_eq!(setval(&text), "SELECT pg_catalog.setval('public.alarm_id_seq', 1, false);");
}

#[test]
fn every_pair_can_be_used() {
    let tmp = TempDir::new("full");
    let out = seedgen(&["--out", tmp.0.to_str().unwrap(), "--items", "13", "--users", "11", "--alarms", "143"]);
    assert!(out.status.success());
    let rows = copy_rows(&read(&seed::dump_path(&tmp.0, "alarm")));
    let pairs: HashSet<(&str, &str)> = rows.iter().map(|r| (r[1].as_str(), r[2].as_str())).collect();
    assert_eq!(pairs.len(), 143);
}

#[test]
fn cli_help_and_errors() {
    let help = seedgen(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: seedgen --out DIR"));

    for bad in [
        &[][..],
        &["--out"][..],
        &["--out", "x", "--items", "many"][..],
        &["--out", "x", "--what"][..],
        &["--out", "x", "--items", "2", "--users", "2", "--alarms", "5"][..],
    ] {
        let out = seedgen(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("seedgen: "));
    }
}
