use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cardplane::cli::Cli::parse();
    match cardplane::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Rust's allocations go to mimalloc: glibc's malloc and free were about a fifth of a card
/// registration's instructions outside the ECDH (callgrind, docs/PERFORMANCE.md). SQLite and
/// aws-lc keep glibc's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
