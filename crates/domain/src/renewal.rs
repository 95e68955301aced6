//! A renew or replace sent without card data: it waits for the issuer's Get Card Credentials
//! (outbound.md §4) and completes asynchronously, with a `PENDING` then a `SUCCESSFUL` or `FAILED`
//! notification (inbound.md §4).

use crate::card::{InitialState, OperationKind, ReasonCode};
use crate::ids::CardId;
use time::OffsetDateTime;

/// A renewal or replacement waiting for the issuer's new credentials: everything the request
/// said, so that the worker can complete it as the request would have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRenewal {
    /// The operationId of its `PENDING` notification.
    pub operation_id: String,
    pub card_id: CardId,
    /// `RENEW` or `REPLACE`.
    pub kind: OperationKind,
    pub reason_code: ReasonCode,
    pub reason: Option<String>,
    pub new_card_id: Option<CardId>,
    pub new_card_state: InitialState,
    pub actor: String,
    pub correlation_id: String,
    pub requested_at: OffsetDateTime,
    /// Calls to Get Card Credentials made so far.
    pub attempts: u32,
}
