//! The benchmark's yardstick: the smallest actix-web server that answers `GET /` with the
//! exact bytes the item list returned for one token (read from a file at start), with the
//! same content type, on as many workers as the services use (`HTTP_WORKERS`, default: the
//! number of CPUs). No token check, no replica, no logging, no metrics: whatever a service
//! does beyond this is what the ratio to this server measures.
//!
//! ```sh
//! bench-baseline --body FILE [--port 5999] [--host 127.0.0.1]
//! ```

use std::process::ExitCode;

use actix_web::{web, App, HttpResponse, HttpServer};
use bench_tools::ArgIter;

const CONTENT_TYPE: &str = "application/json; charset=utf-8";

struct Args {
    body: String,
    host: String,
    port: u16,
}

fn parse_args() -> Result<Args, String> {
    let mut body = None;
    let mut host = "127.0.0.1".to_string();
    let mut port = 5999u16;
    let mut it = ArgIter::default();
    while let Some((key, inline)) = it.next_key() {
        match key.as_str() {
            "--body" => body = Some(it.value(&key, inline)?),
            "--host" => host = it.value(&key, inline)?,
            "--port" => port = it.value(&key, inline)?.parse().map_err(|_| "--port must be a TCP port".to_string())?,
            "-h" | "--help" => {
                println!("usage: bench-baseline --body FILE [--port 5999] [--host 127.0.0.1]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args { body: body.ok_or("--body FILE is required")?, host, port })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-baseline: {e}");
            return ExitCode::from(2);
        }
    };
    let bytes = match std::fs::read(&args.body) {
        Ok(b) => web::Bytes::from(b),
        Err(e) => {
            eprintln!("bench-baseline: cannot read {}: {e}", args.body);
            return ExitCode::FAILURE;
        }
    };
    let workers = std::env::var("HTTP_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    eprintln!("bench-baseline: {} bytes on http://{}:{}/ ({workers} workers)", bytes.len(), args.host, args.port);
    let result = actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let bytes = bytes.clone();
            App::new().route(
                "/",
                web::get().to(move || {
                    let bytes = bytes.clone();
                    async move { HttpResponse::Ok().content_type(CONTENT_TYPE).body(bytes) }
                }),
            )
        })
        .workers(workers)
        .bind((args.host.as_str(), args.port))?
        .run()
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-baseline: {e}");
            ExitCode::FAILURE
        }
    }
}
