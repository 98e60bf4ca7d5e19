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
use clap::Parser;

const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The yardstick: actix-web answering GET / with precomputed bytes.
#[derive(clap::Parser, Debug)]
#[command(name = "bench-baseline")]
struct Args {
    /// The bytes `GET /` answers with (the item list's body for one token).
    #[arg(long, value_name = "FILE")]
    body: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port to listen on.
    #[arg(long, default_value_t = 5999)]
    port: u16,
}

fn main() -> ExitCode {
    // clap: exit 2 with the usage on bad arguments, as the other bench tools
    let args = Args::parse();
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
