//! The master key: 32 random bytes from which every key-encrypting key is derived.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use std::fmt;
use std::io::Write;
use std::path::Path;

/// The master key. `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key must be 32 bytes, written as 64 hex digits or in base64")]
    Malformed,
    #[error("cannot read the master key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot create the master key file {path}: {source}")]
    Create { path: String, source: std::io::Error },
}

impl MasterKey {
    /// Parses a key written as 64 hex digits or as base64 (standard or URL-safe, padded or not).
    pub fn parse(text: &str) -> Result<Self, MasterKeyError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16)).collect::<Result<Vec<u8>, _>>().ok()
        } else {
            use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|engine| engine.decode(text).ok())
        };
        let key: [u8; 32] = bytes.and_then(|b| b.try_into().ok()).ok_or(MasterKeyError::Malformed)?;
        Ok(Self(key))
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).expect("the system random source works");
        Self(key)
    }

    pub fn read_file(path: &Path) -> Result<Self, MasterKeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| MasterKeyError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// Writes a new random key to `path` (mode 0600, never over an existing file) and returns it.
    pub fn create_file(path: &Path) -> Result<Self, MasterKeyError> {
        let key = Self::generate();
        let create = |source| MasterKeyError::Create { path: path.display().to_string(), source };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(create)?;
        file.write_all(format!("{}\n", key.to_hex()).as_bytes()).map_err(create)?;
        file.sync_all().map_err(create)?;
        Ok(key)
    }

    fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_base64() {
        let hex = "00".repeat(31) + "ff";
        assert_eq!(MasterKey::parse(&hex).unwrap().bytes()[31], 0xff);
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(MasterKey::parse(&b64).unwrap().bytes(), &[7u8; 32]);
        assert!(MasterKey::parse("too short").is_err());
        assert!(MasterKey::parse(&"00".repeat(31)).is_err());
    }

    #[test]
    fn created_files_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::create_file(&path).unwrap();
        assert_eq!(MasterKey::read_file(&path).unwrap().bytes(), key.bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(MasterKey::create_file(&path).is_err(), "never overwrites a key");
        assert!(!format!("{key:?}").contains("00"));
    }
}
