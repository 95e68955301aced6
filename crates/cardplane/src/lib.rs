//! The `cardplane` binary: it reads the configuration, builds the adapters, wires them into the
//! use cases, and runs a command.
//!
//! # Layout
//! - [`cli`]: the commands (`serve`, `worker`, `migrate`, `bench`, `issuer add|show|list|rotate-key`).
//! - [`bench`]: the load generator, with the no-op route as its in-run baseline.
//! - [`config`]: flags over environment over TOML file over defaults.
//! - [`keys`]: finding (or, for a new SQLite database, making) the master key.
//! - [`server`]: starting and stopping the HTTP server and its worker; used by `serve` and by the tests.
//! - [`serving`]: the HTTP serving threads, a current-thread runtime per core, each serving the
//!   connections the accept loop hands it in turn.
//! - [`logging`]: JSON (or text) logs through `tracing`.

pub mod bench;
pub mod cli;
pub mod config;
pub mod keys;
pub mod logging;
pub mod server;
pub mod serving;

use anyhow::Context;
use cardplane_app::ports::Clock;
use cardplane_app::{Adapters, Platform, PlatformSettings};
use cardplane_jose::{AccessTokens, Purpose, Vault, derive};
use config::Settings;
use std::sync::Arc;

/// Opens the store and the vault the settings name, and builds the use cases on them.
pub async fn platform(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Platform> {
    let master_key = keys::load_master_key(&settings.master_key, &settings.database_url)?;
    let vault = Arc::new(Vault::new(&master_key));
    let tokens = Arc::new(AccessTokens::new(&derive(&master_key, Purpose::AccessTokens)));
    let store = cardplane_store::open(&settings.database_url, vault.clone())
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(&settings.database_url)))?;
    let adapters = Adapters { store, keys: vault.clone(), card_data: vault, tokens, clock };
    let platform = Platform::new(adapters, PlatformSettings { token_audience: settings.token_audience.clone() });
    platform.check_master_key().await?;
    Ok(platform)
}

/// Onboards the `[[issuers]]` of the configuration file, through the same code as the admin API.
pub async fn onboard_configured_issuers(platform: &Platform, settings: &Settings) -> anyhow::Result<()> {
    for (i, request) in settings.issuers.iter().enumerate() {
        let id = request.issuer_id.clone().with_context(|| format!("issuers[{i}]: issuerId is required"))?;
        let onboard = async {
            let id = cardplane_domain::ids::IssuerId::parse(id.clone())?;
            let onboarding = request.clone().into_domain().map_err(|e| anyhow::anyhow!(e.message))?;
            platform.onboard_issuer(id, onboarding).await?;
            anyhow::Ok(())
        };
        onboard.await.with_context(|| format!("issuers[{i}] ({id}) in the configuration file"))?;
        tracing::info!(issuer = %id, "issuer onboarded from the configuration file");
    }
    Ok(())
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_hidden() {
        assert_eq!(super::redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite://cardplane.db"), "sqlite://cardplane.db");
    }
}
