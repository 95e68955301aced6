//! Finding the master key at start (platform.md §Running).

use crate::config::{MasterKeySource, sqlite_path};
use anyhow::{Context, bail};
use cardplane_jose::MasterKey;
use std::path::PathBuf;

/// The file a generated master key is kept in for a SQLite database: `cardplane.db` →
/// `cardplane.master.key` in the same directory.
pub fn key_file_beside(database: &std::path::Path) -> PathBuf {
    let stem = database.file_stem().map_or_else(|| "cardplane".into(), |s| s.to_string_lossy().into_owned());
    database.with_file_name(format!("{stem}.master.key"))
}

/// Loads the master key; for a SQLite database being created without one, makes one beside it.
pub fn load_master_key(source: &MasterKeySource, database_url: &str) -> anyhow::Result<MasterKey> {
    match source {
        MasterKeySource::Value(text) => MasterKey::parse(text).context("CARDPLANE_MASTER_KEY"),
        MasterKeySource::File(path) => Ok(MasterKey::read_file(path)?),
        MasterKeySource::BesideDatabase => {
            if cardplane_store::Backend::of(database_url) != Some(cardplane_store::Backend::Sqlite) {
                bail!("a master key is required with PostgreSQL: set CARDPLANE_MASTER_KEY or --master-key-file");
            }
            let Some(database) = sqlite_path(database_url) else {
                tracing::warn!("in-memory database: using a throw-away master key");
                return Ok(MasterKey::generate());
            };
            let key_file = key_file_beside(&database);
            if key_file.exists() {
                return Ok(MasterKey::read_file(&key_file)?);
            }
            if database.exists() {
                bail!(
                    "{} exists but its master key file {} does not: give the key with CARDPLANE_MASTER_KEY or \
                     --master-key-file",
                    database.display(),
                    key_file.display()
                );
            }
            let key = MasterKey::create_file(&key_file)?;
            tracing::warn!(
                path = %key_file.display(),
                "no master key was given: created one beside the new database; back it up, it encrypts every key and PAN"
            );
            Ok(key)
        }
    }
}
