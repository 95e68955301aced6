//! What an accepted change leaves behind: the operation the issuer is notified of (outbound.md §2)
//! and the line in the card's history.

use crate::card::{CardState, OperationKind, ReasonCode};
use crate::digital_card::DigitalCardId;
use crate::ids::CardId;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationStatus {
    Pending,
    Successful,
    Failed,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Pending => "PENDING",
            OperationStatus::Successful => "SUCCESSFUL",
            OperationStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<OperationStatus> {
        [OperationStatus::Pending, OperationStatus::Successful, OperationStatus::Failed]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// An operation on a card, as notified to the issuer. `operation_id` is stable across retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub operation_id: String,
    pub card_id: CardId,
    pub kind: OperationKind,
    pub status: OperationStatus,
    pub start_time: OffsetDateTime,
    pub end_time: Option<OffsetDateTime>,
    /// Operation-specific details as a JSON object, e.g. `{"newCardId": "..."}` for REPLACE.
    pub details: Option<String>,
    /// Set when the notification is about one digital card of the card (outbound.md §4b: `CREATE`,
    /// `DELETE`, `RENEW`), sent on its own to the digital-card endpoint.
    pub digital_card_id: Option<DigitalCardId>,
}

/// One line of a card's history: who did what, why, and what it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub operation_id: String,
    pub operation: OperationKind,
    pub from_state: Option<CardState>,
    pub to_state: CardState,
    pub reason_code: Option<ReasonCode>,
    pub reason: Option<String>,
    /// `x-user-id` when the caller sent one, else the issuerId.
    pub actor: String,
    pub correlation_id: String,
    pub at: OffsetDateTime,
}
