//! Deterministic generator of the HomeShopping Moa PostgreSQL seed dumps.
//!
//! Produces `<out>/item/init_database.sql`, `<out>/user/init_database.sql` and
//! `<out>/alarm/init_database.sql` in the exact `pg_dump` text format (and
//! DDL) of the reference dumps, with synthetic, seeded data rows.

pub mod cli;
pub mod ddl;
pub mod gen;
pub mod rng;
pub mod words;

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub use cli::{parse_args, Command, Config, USAGE};

/// Buffer size of the file writers.
const BUF_SIZE: usize = 1 << 20;

/// Escapes a value for the COPY text format: backslash, and the control
/// characters PostgreSQL itself escapes (`\b \f \n \r \t \v`).
pub fn copy_escape(value: &str) -> Cow<'_, str> {
    let needs = |c: char| matches!(c, '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' | '\u{b}');
    if !value.contains(needs) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Writes one COPY text field (`\N` for NULL), escaped.
fn write_field<W: Write>(w: &mut W, value: Option<&str>) -> io::Result<()> {
    match value {
        Some(v) => w.write_all(copy_escape(v).as_bytes()),
        None => w.write_all(b"\\N"),
    }
}

/// The `setval` statement exactly as `pg_dump` writes it: an empty table keeps
/// the sequence unused (`1, false`), otherwise its last value is `rows`.
pub fn setval_line(sequence: &str, rows: u64) -> String {
    if rows == 0 {
        format!("SELECT pg_catalog.setval('{sequence}', 1, false);\n")
    } else {
        format!("SELECT pg_catalog.setval('{sequence}', {rows}, true);\n")
    }
}

/// Writes everything after the COPY rows: terminator, `setval` and the tail.
fn write_trailer<W: Write>(w: &mut W, seq_header: &str, sequence: &str, rows: u64, tail: &str) -> io::Result<()> {
    w.write_all(b"\\.\n")?;
    w.write_all(seq_header.as_bytes())?;
    w.write_all(setval_line(sequence, rows).as_bytes())?;
    w.write_all(tail.as_bytes())
}

/// Writes the complete `item` dump with `items` rows.
pub fn write_item_dump<W: Write>(w: &mut W, seed: u64, items: u64) -> io::Result<()> {
    w.write_all(ddl::PREAMBLE.as_bytes())?;
    w.write_all(ddl::ITEM_HEAD.as_bytes())?;
    for item in gen::ItemGen::new(seed, items) {
        write!(w, "{}\t", item.id)?;
        write_field(w, Some(&item.name))?;
        w.write_all(b"\t")?;
        write_field(w, Some(item.broadcaster))?;
        w.write_all(b"\t")?;
        write_field(w, item.category)?;
        writeln!(w, "\t{}", item.price)?;
    }
    write_trailer(w, ddl::ITEM_SEQ_HEADER, ddl::ITEM_SEQ, items, ddl::ITEM_TAIL)
}

/// Writes the complete `user` dump with `users` rows.
pub fn write_user_dump<W: Write>(w: &mut W, seed: u64, users: u64) -> io::Result<()> {
    w.write_all(ddl::PREAMBLE.as_bytes())?;
    w.write_all(ddl::USER_HEAD.as_bytes())?;
    for user in gen::UserGen::new(seed, users) {
        write!(w, "{}\t", user.id)?;
        write_field(w, Some(&user.name))?;
        w.write_all(b"\t")?;
        write_field(w, Some(&user.access_token))?;
        w.write_all(b"\n")?;
    }
    write_trailer(w, ddl::USER_SEQ_HEADER, ddl::USER_SEQ, users, ddl::USER_TAIL)
}

/// Writes the complete `alarm` dump with `alarms` rows over `items` x `users`.
pub fn write_alarm_dump<W: Write>(w: &mut W, seed: u64, items: u64, users: u64, alarms: u64) -> io::Result<()> {
    w.write_all(ddl::PREAMBLE.as_bytes())?;
    w.write_all(ddl::ALARM_HEAD.as_bytes())?;
    let mut rows = 0;
    for a in gen::AlarmGen::new(seed, items, users, alarms) {
        writeln!(w, "{}\t{}\t{}\t{}", a.id, a.item_id, a.user_id, gen::format_timestamp(a.created_us))?;
        rows += 1;
    }
    write_trailer(w, ddl::ALARM_SEQ_HEADER, ddl::ALARM_SEQ, rows, ddl::ALARM_TAIL)
}

/// One written dump file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

/// Path of the dump of `domain` (`item`, `user` or `alarm`) under `out`.
pub fn dump_path(out: &Path, domain: &str) -> PathBuf {
    out.join(domain).join("init_database.sql")
}

fn write_file(
    out: &Path,
    domain: &str,
    rows: u64,
    body: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<Written> {
    let path = dump_path(out, domain);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut w = BufWriter::with_capacity(BUF_SIZE, File::create(&path)?);
    body(&mut w)?;
    w.flush()?;
    drop(w);
    let bytes = fs::metadata(&path)?.len();
    Ok(Written { path, rows, bytes })
}

/// Generates the three dump files described by `cfg`.
pub fn generate(cfg: &Config) -> io::Result<Vec<Written>> {
    let item = write_file(&cfg.out, "item", cfg.items, |w| write_item_dump(w, cfg.seed, cfg.items))?;
    let user = write_file(&cfg.out, "user", cfg.users, |w| write_user_dump(w, cfg.seed, cfg.users))?;
    let alarm =
        write_file(&cfg.out, "alarm", cfg.alarms, |w| write_alarm_dump(w, cfg.seed, cfg.items, cfg.users, cfg.alarms))?;
    Ok(vec![item, user, alarm])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn escape_plain_is_borrowed() {
        assert!(matches!(copy_escape("데싱디바 ★ 1+1"), Cow::Borrowed(_)));
    }

    #[test]
    fn escape_special_characters() {
        assert_eq!(copy_escape("a\tb\\c"), "a\\tb\\\\c");
        assert_eq!(copy_escape("line1\nline2\r"), "line1\\nline2\\r");
        assert_eq!(copy_escape("\u{8}\u{b}\u{c}"), "\\b\\v\\f");
        assert_eq!(copy_escape("\\N"), "\\\\N");
        assert_eq!(copy_escape("한글\t탭"), "한글\\t탭");
    }

    #[test]
    fn field_writer() {
        let mut buf = Vec::new();
        write_field(&mut buf, None).unwrap();
        buf.push(b'|');
        write_field(&mut buf, Some("x\ty")).unwrap();
        assert_eq!(buf, b"\\N|x\\ty");
    }

    #[test]
    fn setval_forms() {
        assert_eq!(
            setval_line("public.alarm_id_seq", 0),
            "SELECT pg_catalog.setval('public.alarm_id_seq', 1, false);\n"
        );
        assert_eq!(
            setval_line("public.item_id_seq", 100),
            "SELECT pg_catalog.setval('public.item_id_seq', 100, true);\n"
        );
    }

    #[test]
    fn output_is_deterministic() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_alarm_dump(&mut a, 5, 30, 20, 300).unwrap();
        write_alarm_dump(&mut b, 5, 30, 20, 300).unwrap();
        assert_eq!(a, b);
        let mut c = Vec::new();
        write_alarm_dump(&mut c, 6, 30, 20, 300).unwrap();
        assert_ne!(a, c);
    }
}
