//! `seedgen`: writes deterministic PostgreSQL seed dumps. See `--help`.

use std::process::ExitCode;
use std::time::Instant;

use seed::{generate, parse_args, Command, USAGE};

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(a) => args.push(a),
            Err(bad) => {
                eprintln!("seedgen: argument is not valid UTF-8: {bad:?}");
                eprintln!("Try 'seedgen --help'.");
                return ExitCode::from(2);
            }
        }
    }
    let cfg = match parse_args(args) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(cfg)) => cfg,
        Err(msg) => {
            eprintln!("seedgen: {msg}");
            eprintln!("Try 'seedgen --help'.");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    match generate(&cfg) {
        Ok(files) => {
            for f in &files {
                eprintln!("seedgen: wrote {} ({} rows, {} bytes)", f.path.display(), f.rows, f.bytes);
            }
            eprintln!(
                "seedgen: {} items, {} users, {} alarms (seed {}) in {:.2}s",
                cfg.items,
                cfg.users,
                cfg.alarms,
                cfg.seed,
                start.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seedgen: cannot write to {}: {e}", cfg.out.display());
            ExitCode::FAILURE
        }
    }
}
