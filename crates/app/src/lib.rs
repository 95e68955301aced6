//! cardplane's use cases, and the ports (traits) through which they reach the outside world.
//!
//! A use case is one async function per operation on [`Platform`]. It opens one store transaction,
//! asks the domain what happens, and stores the outcome, so that a change and everything it causes
//! commit together or not at all. It never touches SQL, HTTP or key bytes itself: those are behind
//! the ports, implemented by the adapter crates and wired together by the `cardplane` binary.
//!
//! # Layout
//! - [`ports`]: the traits adapters implement: [`ports::Store`] and its unit of work [`ports::Tx`]
//!   (with the outbox, [`ports::OutboxTx`], and operations waiting for the issuer, [`ports::PendingTx`]),
//!   [`ports::Clock`], [`ports::KeyVault`], [`ports::CardDataVault`], [`ports::TokenService`], and
//!   [`ports::IssuerBackend`] (the calls to the issuer, made only by the worker).
//! - [`error`]: [`AppError`], how a use case fails, and [`ports::StoreError`].
//! - [`issuers`]: onboarding, reading issuers, encryption keys and their rotation.
//! - `issuer_cache`: the issuers and keys card requests need, kept in memory (forgotten on change,
//!   read again after a second, or when a product or key is missing).
//! - [`auth`]: granting access tokens for JWT-bearer assertions, and authenticating bearer tokens.
//! - [`context`]: who is asking ([`context::RequestContext`]) and idempotency keys.
//! - [`consumers`]: consumers v2: register, update, delete (cascading), get, card list.
//! - [`cards`]: cards v2: register, create, get, history, and the life-cycle operations.
//! - [`notifications`]: delivering the outbox to the issuer one batch at a time (for the worker),
//!   the deliveries view and redelivery (for the admin API).
//! - [`pending`]: operations acknowledged as `PENDING` and completed by the worker: renew and replace
//!   without card data (Get Card Credentials), digitization needing consumer data (Get Consumer Information).

pub mod auth;
pub mod cards;
pub mod consumers;
pub mod context;
pub mod error;
mod issuer_cache;
pub mod issuers;
pub mod notifications;
pub mod pending;
pub mod ports;

pub use error::AppError;
pub use issuers::OnboardedIssuer;

use ports::{CardDataVault, Clock, KeyVault, Store, TokenService};
use std::sync::Arc;

/// The adapters the use cases run on.
#[derive(Clone)]
pub struct Adapters {
    pub store: Arc<dyn Store>,
    pub keys: Arc<dyn KeyVault>,
    pub card_data: Arc<dyn CardDataVault>,
    pub tokens: Arc<dyn TokenService>,
    pub clock: Arc<dyn Clock>,
}

/// Settings the use cases need.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// The `aud` an issuer's assertion must carry when it carries one.
    pub token_audience: String,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        Self { token_audience: "https://api.d1.thalescloud.io".to_owned() }
    }
}

/// The use cases, with the adapters they run on. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Platform {
    store: Arc<dyn Store>,
    keys: Arc<dyn KeyVault>,
    card_data: Arc<dyn CardDataVault>,
    tokens: Arc<dyn TokenService>,
    clock: Arc<dyn Clock>,
    settings: Arc<PlatformSettings>,
    /// Issuers and their keys, as card requests need them (`issuer_cache`).
    issuers: Arc<issuer_cache::IssuerCache>,
}

impl Platform {
    pub fn new(adapters: Adapters, settings: PlatformSettings) -> Self {
        let Adapters { store, keys, card_data, tokens, clock } = adapters;
        Self { store, keys, card_data, tokens, clock, settings: Arc::new(settings), issuers: Arc::default() }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}
