//! cardplane's key handling: the master key, secrets sealed under it, and the P-256 encryption keys
//! issuers encrypt card data to. Built on aws-lc-rs, chosen for speed (ECDH P-256 is ~3x faster
//! than the pure-Rust stack on this hardware) as well as its FIPS-validated core.
//!
//! # Layout
//! - [`master`]: [`MasterKey`]: parsing it, reading it from a file, making one on first start.
//! - [`vault`]: [`Vault`], the [`KeyVault`](cardplane_app::ports::KeyVault) port: sealing secrets
//!   (AES-256-GCM under an HKDF-derived key) and making issuer encryption keys.
//! - [`jwe`]: compact JWE, `ECDH-ES` + `A256GCM` on P-256: the `encryptedData` of D1.
//! - [`vault`]: also the [`CardDataVault`](cardplane_app::ports::CardDataVault) port: decrypting
//!   `encryptedData` and the PAN vault (credentials sealed at rest, keyed PAN fingerprints).
//! - [`tokens`]: [`AccessTokens`], the [`TokenService`](cardplane_app::ports::TokenService) port:
//!   verifying issuers' ES256 assertions, granting and checking access tokens.
//! - [`jwk`]: JWK thumbprints (RFC 7638), used as key ids.

pub mod jwe;
pub mod jwk;
pub mod master;
pub mod tokens;
pub mod vault;

pub use master::MasterKey;
pub use tokens::AccessTokens;
pub use vault::{Purpose, Vault, derive};
