//! The JSON bodies cardplane sends to the issuer.

use cardplane_domain::operation::Operation;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `{"operations": [...]}` [outbound.md §2].
#[derive(Serialize)]
pub(crate) struct NotifyOperations<'a> {
    pub operations: Vec<OperationItem<'a>>,
}

/// One notified operation [outbound.md §2]. `operationId` is the outbox's, stable across retries,
/// so the issuer can drop duplicates.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OperationItem<'a> {
    operation_id: &'a str,
    operation: &'static str,
    status: &'static str,
    start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<String>,
    card_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Value>,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("a UTC time formats as RFC 3339")
}

impl<'a> From<&'a Operation> for OperationItem<'a> {
    fn from(operation: &'a Operation) -> Self {
        Self {
            operation_id: &operation.operation_id,
            operation: operation.kind.as_str(),
            status: operation.status.as_str(),
            start_time: rfc3339(operation.start_time),
            end_time: operation.end_time.map(rfc3339),
            card_id: operation.card_id.as_str(),
            details: operation.details.as_deref().and_then(|d| serde_json::from_str(d).ok()),
        }
    }
}
