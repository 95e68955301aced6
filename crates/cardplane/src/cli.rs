//! The command line.

use crate::config::{CommonArgs, ServeArgs, Settings};
use anyhow::{Context, bail};
use cardplane_api::admin::wire::{IssuerView, JwkSet, OnboardingRequest, PublicJwk};
use cardplane_domain::ids::IssuerId;
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;

/// A wire-compatible, self-hostable implementation of the Thales D1 card platform.
#[derive(Debug, Parser)]
#[command(name = "cardplane", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (migrations run first).
    Serve {
        /// Address to listen on, HOST:PORT.
        #[arg(long, env = "CARDPLANE_LISTEN")]
        listen: Option<String>,
        /// Run the worker (notification delivery) in this process too; `--worker=false` (or
        /// CARDPLANE_WORKER=0) for API-only instances beside separate `cardplane worker` processes.
        #[arg(long, env = "CARDPLANE_WORKER", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
        worker: Option<bool>,
        /// Threads serving HTTP, each with the connections handed to it (default: one per core).
        #[arg(long, env = "CARDPLANE_HTTP_THREADS")]
        http_threads: Option<usize>,
    },
    /// Run only the worker: deliver notifications to issuers until SIGTERM. Any number may share
    /// one PostgreSQL database.
    Worker,
    /// Run the database migrations and exit.
    Migrate,
    /// Measure the banking API under load, beside the no-op route as a baseline (docs/PERFORMANCE.md).
    Bench(crate::bench::BenchArgs),
    /// Print the OpenAPI 3.1 document of the HTTP surface (what `GET /openapi.json` serves).
    Openapi,
    /// Onboard and inspect issuers, straight on the database.
    #[command(subcommand)]
    Issuer(IssuerCommand),
}

#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Onboard an issuer (or replace its onboarding) from the admin API's JSON body, or from a
    /// TOML file with the same keys.
    Add {
        issuer_id: String,
        /// The onboarding: a .json or .toml file, or - for JSON on standard input.
        #[arg(long = "from", value_name = "FILE")]
        from: PathBuf,
    },
    /// Print an issuer as the admin API shows it.
    Show { issuer_id: String },
    /// Print every issuer.
    List,
    /// Make a new encryption key the issuer's active one; older keys keep decrypting.
    RotateKey { issuer_id: String },
}

/// Runs the command; returns once it is done (for `serve`: once the server stopped).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let serving = match &cli.command {
        Command::Serve { listen, worker, http_threads } => {
            ServeArgs { listen: listen.clone(), worker: *worker, http_threads: *http_threads }
        }
        _ => ServeArgs::default(),
    };
    let settings = Settings::resolve(&cli.common, serving)?;
    let quiet = !matches!(cli.command, Command::Serve { .. } | Command::Worker);
    crate::logging::init(settings.log_format, if quiet { "warn" } else { "info" });
    match cli.command {
        Command::Serve { .. } => {
            let clock = std::sync::Arc::new(cardplane_app::ports::SystemClock);
            let server = crate::server::start_with(settings, clock, crate::server::termination()?).await?;
            server.wait().await
        }
        Command::Worker => {
            let terminated = crate::server::termination()?;
            let clock = std::sync::Arc::new(cardplane_app::ports::SystemClock);
            let platform = crate::platform(&settings, clock.clone()).await?;
            let worker = crate::server::worker(&platform, &settings, clock).start();
            terminated.await;
            tracing::info!("shutting down: finishing the batches in flight");
            worker.stop().await;
            platform.store().close().await;
            Ok(())
        }
        Command::Openapi => {
            println!("{}", cardplane_api::openapi::document().to_pretty_json()?);
            Ok(())
        }
        Command::Bench(args) => {
            let database_url = cli.common.database_url.clone();
            crate::bench::run(args, database_url).await
        }
        Command::Migrate => {
            cardplane_store::migrate(&settings.database_url).await?;
            println!("migrations applied to {}", crate::redact_url(&settings.database_url));
            Ok(())
        }
        Command::Issuer(command) => issuer(command, &settings).await,
    }
}

async fn issuer(command: IssuerCommand, settings: &Settings) -> anyhow::Result<()> {
    let platform = crate::platform(settings, std::sync::Arc::new(cardplane_app::ports::SystemClock)).await?;
    let parse_id = |raw: String| IssuerId::parse(raw).map_err(|e| anyhow::anyhow!("{e}"));
    let outcome = async {
        match command {
            IssuerCommand::Add { issuer_id, from } => {
                let id = parse_id(issuer_id)?;
                let request = read_onboarding(&from)?;
                if request.issuer_id.as_deref().is_some_and(|body| body != id.as_str()) {
                    bail!("issuerId in {} is not {id}", from.display());
                }
                let onboarding = request.into_domain().map_err(|e| anyhow::anyhow!(e.message))?;
                let onboarded = platform.onboard_issuer(id, onboarding).await?;
                print_json(&IssuerView::from(&onboarded))
            }
            IssuerCommand::Show { issuer_id } => {
                print_json(&IssuerView::from(&platform.issuer(parse_id(issuer_id)?).await?))
            }
            IssuerCommand::List => {
                let issuers = platform.issuers().await?;
                print_json(&issuers.iter().map(IssuerView::from).collect::<Vec<_>>())
            }
            IssuerCommand::RotateKey { issuer_id } => {
                let id = parse_id(issuer_id)?;
                let key = platform.rotate_encryption_key(id.clone()).await?;
                print_json(&PublicJwk::encryption(&key))?;
                let keys = platform.encryption_keys(id).await?;
                eprintln!("{} key(s); the first one of `keys` is active", JwkSet::encryption(&keys).keys.len());
                Ok(())
            }
        }
    }
    .await;
    platform.store().close().await;
    outcome
}

fn read_onboarding(from: &std::path::Path) -> anyhow::Result<OnboardingRequest> {
    let (text, toml) = if from.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
        (text, false)
    } else {
        let text = std::fs::read_to_string(from).with_context(|| format!("cannot read {}", from.display()))?;
        (text, from.extension().is_some_and(|e| e == "toml"))
    };
    if toml {
        toml::from_str(&text).with_context(|| format!("{} is not a valid onboarding", from.display()))
    } else {
        cardplane_api::extract::parse_json(text.as_bytes()).map_err(|e| anyhow::anyhow!("{}", e.message))
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
