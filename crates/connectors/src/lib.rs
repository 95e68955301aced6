//! cardplane's outbound connections: the systems it calls, behind the ports of `app`.
//!
//! # Layout
//! - [`issuer`]: [`HttpIssuerBackend`], the issuer's backend over HTTP (outbound.md §1–§2): the
//!   OAuth2 client-credentials token cached per issuer, operation notifications, and Get Card
//!   Credentials (§4).
//! - `oauth`: the issuer's token endpoint: the request, the lenient reading of its answer, the cache.
//! - `wire`: the JSON bodies cardplane sends.
//!
//! Every call has a deadline ([`OutboundSettings::call_timeout`]) and ends in an
//! [`AttemptOutcome`](cardplane_domain::delivery::AttemptOutcome); deciding what happens next (retry,
//! dead letter) is the domain's job, not the connector's.

pub mod issuer;
mod oauth;
mod wire;

pub use issuer::HttpIssuerBackend;

use std::time::Duration;

/// How cardplane calls out.
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    /// The longest one HTTP call may take, connection included [outbound.md §2: 10 s].
    pub call_timeout: Duration,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self { call_timeout: Duration::from_secs(10) }
    }
}

/// Makes aws-lc-rs (the crypto stack of `jose`) the process's TLS provider. reqwest's rustls is
/// built without a provider of its own, so every process that makes an HTTP client calls this
/// first; calling it again is harmless.
pub fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
