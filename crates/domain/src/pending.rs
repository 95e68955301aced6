//! Operations acknowledged as `PENDING` that wait for the issuer's backend: a renew or replace sent
//! without card data waits for Get Card Credentials (outbound.md §4), a digitization of a card whose
//! consumer data cardplane does not hold waits for Get Consumer Information (§3). The worker
//! completes each, and the issuer gets a `SUCCESSFUL` or `FAILED` notification after the `PENDING`
//! one (inbound.md §4).

use crate::card::{InitialState, OperationKind, ReasonCode};
use crate::digital_card::DigitalCardId;
use crate::ids::CardId;
use time::OffsetDateTime;

/// An operation waiting for the issuer: everything its request said, so that the worker can
/// complete it as the request would have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOperation {
    /// The operationId of its `PENDING` notification.
    pub operation_id: String,
    pub card_id: CardId,
    /// `RENEW`, `REPLACE` or `DIGITIZE`.
    pub kind: OperationKind,
    /// The request's `reasonCode` (renew and replace).
    pub reason_code: Option<ReasonCode>,
    pub reason: Option<String>,
    pub new_card_id: Option<CardId>,
    pub new_card_state: InitialState,
    /// The digital card a digitization made (in state `PENDING` until the look-up succeeds).
    pub digital_card_id: Option<DigitalCardId>,
    pub actor: String,
    pub correlation_id: String,
    pub requested_at: OffsetDateTime,
    /// Calls to the issuer made so far.
    pub attempts: u32,
}
