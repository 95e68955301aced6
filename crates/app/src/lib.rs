//! cardplane's use cases, and the ports (traits) through which they reach the outside world.
//!
//! A use case is one async function per operation on [`Platform`]. It opens one store transaction,
//! asks the domain what happens, and stores the outcome, so that a change and everything it causes
//! commit together or not at all. It never touches SQL, HTTP or key bytes itself: those are behind
//! the ports, implemented by the adapter crates and wired together by the `cardplane` binary.
//!
//! # Layout
//! - [`ports`]: the traits adapters implement: [`ports::Store`] and its unit of work [`ports::Tx`],
//!   [`ports::Clock`], [`ports::KeyVault`].
//! - [`error`]: [`AppError`], how a use case fails, and [`ports::StoreError`].
//! - [`issuers`]: onboarding, reading issuers, encryption keys and their rotation.

pub mod error;
pub mod issuers;
pub mod ports;

pub use error::AppError;
pub use issuers::OnboardedIssuer;

use ports::{Clock, KeyVault, Store};
use std::sync::Arc;

/// The use cases, with the adapters they run on. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Platform {
    store: Arc<dyn Store>,
    keys: Arc<dyn KeyVault>,
    clock: Arc<dyn Clock>,
}

impl Platform {
    pub fn new(store: Arc<dyn Store>, keys: Arc<dyn KeyVault>, clock: Arc<dyn Clock>) -> Self {
        Self { store, keys, clock }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}
