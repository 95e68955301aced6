//! Configuration: flags win over the environment, the environment over the TOML file (`--config`),
//! and the file over the defaults (platform.md §Running).

use anyhow::{Context, bail};
use cardplane_api::admin::wire::OnboardingRequest;
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://cardplane.db";

/// Options shared by every command. Each may also come from the environment variable named.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "CARDPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://FILE (created if missing) or postgres://...
    #[arg(long, global = true, env = "CARDPLANE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the master key (64 hex digits or base64 of 32 bytes). The key itself may be
    /// given in CARDPLANE_MASTER_KEY instead; it has no flag so that it never shows in `ps`.
    #[arg(long, global = true, env = "CARDPLANE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// The `aud` issuers' token assertions must carry (when they carry one).
    #[arg(long, global = true, env = "CARDPLANE_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,
    /// Open the sandbox calls (digitizing cards); also CARDPLANE_SANDBOX=1.
    #[arg(long, global = true, env = "CARDPLANE_SANDBOX", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub sandbox: Option<bool>,
    /// Log format: json (default) or text.
    #[arg(long, global = true, env = "CARDPLANE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// The TOML file. Keys are the environment variables' names without `CARDPLANE_`, in lower case;
/// `[[issuers]]` entries take the admin API's onboarding body (camelCase), with `issuerId`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub master_key: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub admin_token: Option<String>,
    pub token_audience: Option<String>,
    pub sandbox: Option<bool>,
    pub log_format: Option<LogFormat>,
    pub worker: Option<bool>,
    pub http_threads: Option<usize>,
    #[serde(default)]
    pub issuers: Vec<OnboardingRequest>,
}

impl FileConfig {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is not a valid configuration", path.display()))
    }
}

/// What `serve`'s own flags (or their environment variables) said; every other command leaves them
/// to the file and the defaults.
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    pub listen: Option<String>,
    pub worker: Option<bool>,
    pub http_threads: Option<usize>,
}

/// Where the master key comes from, in order of preference.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// The key itself (CARDPLANE_MASTER_KEY or `master_key` in the file).
    Value(String),
    /// A file holding it.
    File(PathBuf),
    /// None given: for a SQLite database, a file beside it, made when the database is created.
    BesideDatabase,
}

/// Everything a command needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub master_key: MasterKeySource,
    pub admin_token: Option<String>,
    pub token_audience: String,
    pub sandbox: bool,
    pub log_format: LogFormat,
    pub issuers: Vec<OnboardingRequest>,
    /// Whether `serve` runs the worker (notification delivery) in-process. Off for API-only nodes
    /// beside separate `cardplane worker` processes.
    pub worker: bool,
    /// Threads serving HTTP (at least one): each serves the connections handed to it on a runtime
    /// of its own (`serving`). One per core unless set.
    pub http_threads: usize,
    /// How the worker paces itself, and how outbound calls behave (not configurable from outside:
    /// the tests shorten them).
    pub worker_settings: cardplane_worker::WorkerSettings,
    pub outbound: cardplane_connectors::OutboundSettings,
}

/// D1's production host, the audience its integrations put in their assertions [D1, seen in a
/// public integration].
pub const DEFAULT_TOKEN_AUDIENCE: &str = "https://api.d1.thalescloud.io";

impl Settings {
    /// Resolves the settings from flags/environment (`common`, `serve`) over the file over defaults.
    pub fn resolve(common: &CommonArgs, serve: ServeArgs) -> anyhow::Result<Self> {
        let file = match &common.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let listen = serve.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr =
            listen.parse().with_context(|| format!("listen address {listen:?} is not HOST:PORT"))?;
        let database_url =
            common.database_url.clone().or(file.database_url).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if cardplane_store::Backend::of(&database_url).is_none() {
            bail!("the database URL must start with sqlite: or postgres://");
        }
        let master_key =
            match (env("CARDPLANE_MASTER_KEY"), &common.master_key_file, file.master_key, file.master_key_file) {
                (Some(key), _, _, _) => MasterKeySource::Value(key),
                (None, Some(path), _, _) => MasterKeySource::File(path.clone()),
                (None, None, Some(key), _) => MasterKeySource::Value(key),
                (None, None, None, Some(path)) => MasterKeySource::File(path),
                (None, None, None, None) => MasterKeySource::BesideDatabase,
            };
        Ok(Self {
            listen,
            database_url,
            master_key,
            admin_token: env("CARDPLANE_ADMIN_TOKEN").or(file.admin_token),
            token_audience: common
                .token_audience
                .clone()
                .or(file.token_audience)
                .unwrap_or_else(|| DEFAULT_TOKEN_AUDIENCE.to_owned()),
            sandbox: common.sandbox.or(file.sandbox).unwrap_or(false),
            log_format: common.log_format.or(file.log_format).unwrap_or(LogFormat::Json),
            issuers: file.issuers,
            worker: serve.worker.or(file.worker).unwrap_or(true),
            http_threads: match serve.http_threads.or(file.http_threads) {
                Some(0) => bail!("http_threads must be at least 1"),
                Some(threads) => threads,
                None => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            },
            worker_settings: Default::default(),
            outbound: Default::default(),
        })
    }
}

/// The file a SQLite URL names, or `None` for an in-memory database.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_threads_come_from_the_flag_over_the_file_and_are_never_zero() {
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("cardplane.toml");
        std::fs::write(&file, "http_threads = 3\n").expect("written");
        let common = CommonArgs { config: Some(file.clone()), ..Default::default() };
        let threads = |flag| Settings::resolve(&common, ServeArgs { http_threads: flag, ..Default::default() });
        assert_eq!(threads(None).expect("resolves").http_threads, 3);
        assert_eq!(threads(Some(1)).expect("resolves").http_threads, 1);
        let refused = threads(Some(0)).expect_err("zero threads would serve nothing");
        assert!(refused.to_string().contains("http_threads must be at least 1"), "{refused}");
        let defaults = Settings::resolve(&CommonArgs::default(), ServeArgs::default()).expect("resolves");
        assert!(defaults.http_threads >= 1);
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_path("sqlite://cardplane.db"), Some(PathBuf::from("cardplane.db")));
        assert_eq!(sqlite_path("sqlite:///var/lib/cp.db?mode=rwc"), Some(PathBuf::from("/var/lib/cp.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }
}
