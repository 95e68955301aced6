//! The JSON bodies cardplane sends to the issuer.

use cardplane_domain::consumer::{Address, PersonalInformation};
use cardplane_domain::operation::Operation;
use serde::{Deserialize, Serialize};
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

/// `{operationId, operation, status}` about one digital card [outbound.md §4b].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DigitalCardNotification<'a> {
    operation_id: &'a str,
    operation: &'static str,
    status: &'static str,
}

impl<'a> From<&'a Operation> for DigitalCardNotification<'a> {
    fn from(operation: &'a Operation) -> Self {
        Self {
            operation_id: &operation.operation_id,
            operation: operation.kind.as_str(),
            status: operation.status.as_str(),
        }
    }
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

/// Get Consumer Information's answer: personal information in the shape of inbound.md §3 (fields the
/// issuer adds beyond it are ignored, as a client should).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConsumerAnswer {
    title: Option<String>,
    first_name: Option<String>,
    middle_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    mobile_phone_number: Option<String>,
    language: Option<String>,
    date_of_birth: Option<String>,
    address: Option<AddressAnswer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddressAnswer {
    line1: Option<String>,
    line2: Option<String>,
    line3: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zip_code: Option<String>,
    country_code: Option<String>,
}

impl ConsumerAnswer {
    /// The answer as the domain's type, not yet checked (see [`PersonalInformation::validated`]).
    pub(crate) fn into_domain(self) -> PersonalInformation {
        PersonalInformation {
            title: self.title,
            first_name: self.first_name,
            middle_name: self.middle_name,
            last_name: self.last_name,
            email: self.email,
            mobile_phone_number: self.mobile_phone_number,
            language: self.language,
            date_of_birth: self.date_of_birth,
            address: self.address.map(|a| Address {
                line1: a.line1,
                line2: a.line2,
                line3: a.line3,
                city: a.city,
                state: a.state,
                zip_code: a.zip_code,
                country_code: a.country_code,
            }),
        }
    }
}
