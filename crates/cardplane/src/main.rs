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

/// Every allocation goes to mimalloc: glibc's malloc and free were about a fifth of a card
/// registration's instructions outside the ECDH (callgrind, docs/PERFORMANCE.md). Its `override`
/// feature also takes the C libraries' `malloc` and `free` (SQLite's 80-odd allocations per card
/// operation, aws-lc's), which took 2% of a registration's instructions and 5% of a life-cycle
/// operation's off again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
