//! How a use case fails.

use crate::ports::{Conflict, StoreError};
use cardplane_domain::FieldError;
use cardplane_domain::auth::AssertionRefusal;
use cardplane_domain::card::CardRefusal;
use cardplane_domain::ids::{CardId, CardProductId, ConsumerId, IssuerId};

/// The failure of a use case. The API maps each variant to one status and error code; the
/// `Unexpected` variant is a fault of ours and is answered with a bare 500.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The caller sent a value the domain refuses (400).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// No issuer is onboarded under this id (404 on the admin API).
    #[error("issuer {0} is not onboarded")]
    IssuerNotFound(IssuerId),
    /// A banking request the rules refuse (404, 403, 409, 422, each with its D1 code).
    #[error("{0}")]
    Refused(Refusal),
    /// A token request's assertion was refused (400 `invalid_grant` / `invalid_request`).
    #[error("the assertion was refused: {0}")]
    AssertionRefused(AssertionRefusal),
    /// Anything that is not the caller's fault: storage down, a bug, corrupt data (500).
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why the rules refuse a banking request. Each maps to one status and error code (inbound.md §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    CardNotFound(CardId),
    ConsumerNotFound(ConsumerId),
    CardProductNotFound(CardProductId),
    /// The card, consumer or product state forbids the operation; the text names the state.
    OperationNotAllowed(String),
    ConsumerDeleted(ConsumerId),
    /// The PAN was deleted or replaced once: it can never be registered again.
    PanNotAllowed,
    CardIdInUse(CardId),
    PanAlreadyRegistered,
    /// The same idempotency key came with another request.
    IdempotencyKeyReused,
    /// The card state machine refused the command.
    Card(CardRefusal),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::CardNotFound(id) => write!(f, "card {id} not found"),
            Refusal::ConsumerNotFound(id) => write!(f, "consumer {id} not found"),
            Refusal::CardProductNotFound(id) => write!(f, "card product {id} not found"),
            Refusal::OperationNotAllowed(why) => f.write_str(why),
            Refusal::ConsumerDeleted(id) => write!(f, "consumer {id} is deleted"),
            Refusal::PanNotAllowed => f.write_str("this PAN was deleted or replaced and cannot be registered again"),
            Refusal::CardIdInUse(id) => write!(f, "cardId {id} is in use"),
            Refusal::PanAlreadyRegistered => f.write_str("this PAN is registered under another cardId"),
            Refusal::IdempotencyKeyReused => f.write_str("this Idempotency-Key was used with a different request"),
            Refusal::Card(refusal) => write!(f, "{refusal}"),
        }
    }
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        AppError::Refused(refusal)
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        AppError::Unexpected(anyhow::Error::new(error))
    }
}

/// Maps a write's uniqueness conflict to what the caller is told; other store errors stay faults.
pub(crate) fn conflict(card_id: &CardId) -> impl Fn(StoreError) -> AppError + '_ {
    move |error| match error {
        StoreError::Conflict(Conflict::CardId) => Refusal::CardIdInUse(card_id.clone()).into(),
        StoreError::Conflict(Conflict::LivePan) => Refusal::PanAlreadyRegistered.into(),
        other => other.into(),
    }
}
