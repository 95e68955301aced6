//! Wire types of the banking API v2, and their parsing into domain types.

use crate::error::ApiError;
use cardplane_app::cards::{CardOperation, CreateCard, RegisterCard};
use cardplane_domain::FieldError;
use cardplane_domain::card::{Card, InitialState, OperationKind, ReasonCode, cardholder_name, reason_text};
use cardplane_domain::consumer::{Address, Consumer, PersonalInformation};
use cardplane_domain::digital_card::{DigitalCard, Wallet, device_name};
use cardplane_domain::ids::{CardId, CardProductId, ConsumerId};
use cardplane_domain::operation::{HistoryEntry, Operation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("a UTC timestamp formats as RFC 3339")
}

fn within<T>(result: Result<T, FieldError>, parent: &str) -> Result<T, FieldError> {
    result.map_err(|e| e.within(parent))
}

// ---- consumers ----

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = Address)]
pub struct AddressWire {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub line1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub line2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub line3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub zip_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Z]{2}$", example = "FR")]
    pub country_code: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PersonalInformation)]
pub struct PersonalInformationWire {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 40)]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[\w ,.'#;:/-]{1,128}$", max_length = 128, example = "Ada")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[\w ,.'#;:/-]{1,128}$", max_length = 128)]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[\w ,.'#;:/-]{1,128}$", max_length = 128, example = "Lovelace")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Email, max_length = 254, example = "ada@example.com")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$", example = "+12125550123")]
    pub mobile_phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z]{2}-[a-zA-Z]{2}$", example = "en-US")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Date, example = "1990-12-31")]
    pub date_of_birth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressWire>,
}

impl PersonalInformationWire {
    pub fn into_domain(self) -> Result<PersonalInformation, FieldError> {
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
        .validated()
    }

    fn of(info: &PersonalInformation) -> Self {
        Self {
            title: info.title.clone(),
            first_name: info.first_name.clone(),
            middle_name: info.middle_name.clone(),
            last_name: info.last_name.clone(),
            email: info.email.clone(),
            mobile_phone_number: info.mobile_phone_number.clone(),
            language: info.language.clone(),
            date_of_birth: info.date_of_birth.clone(),
            address: info.address.as_ref().map(|a| AddressWire {
                line1: a.line1.clone(),
                line2: a.line2.clone(),
                line3: a.line3.clone(),
                city: a.city.clone(),
                state: a.state.clone(),
                zip_code: a.zip_code.clone(),
                country_code: a.country_code.clone(),
            }),
        }
    }
}

/// Register and Update consumer body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsumerBody {
    pub personal_information: Option<PersonalInformationWire>,
}

impl ConsumerBody {
    pub fn into_domain(self) -> Result<Option<PersonalInformation>, ApiError> {
        Ok(self.personal_information.map(|p| within(p.into_domain(), "personalInformation")).transpose()?)
    }
}

/// Delete consumer body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteConsumerBody {
    #[schema(pattern = "^[a-zA-Z0-9 ]{1,64}$", max_length = 64)]
    pub reason: Option<String>,
}

impl DeleteConsumerBody {
    pub fn into_domain(self) -> Result<Option<String>, ApiError> {
        Ok(self.reason.as_deref().map(|r| reason_text("reason", r)).transpose()?)
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Consumer)]
pub struct ConsumerView {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    consumer_id: String,
    #[schema(value_type = crate::openapi::ConsumerState)]
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    personal_information: Option<PersonalInformationWire>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<&Consumer> for ConsumerView {
    fn from(consumer: &Consumer) -> Self {
        Self {
            consumer_id: consumer.id.to_string(),
            state: consumer.state.as_str(),
            personal_information: consumer.personal_information.as_ref().map(PersonalInformationWire::of),
            created_at: rfc3339(consumer.created_at),
            updated_at: rfc3339(consumer.updated_at),
        }
    }
}

// ---- cards ----

fn initial_state(field: &str, state: Option<String>) -> Result<InitialState, FieldError> {
    match state {
        None => Ok(InitialState::Active),
        Some(s) => InitialState::parse(&s).ok_or_else(|| FieldError::invalid(field, "must be ACTIVE or INACTIVE")),
    }
}

fn names(first: Option<String>, second: Option<String>) -> Result<(Option<String>, Option<String>), FieldError> {
    Ok((
        first.as_deref().map(|n| cardholder_name("cardholderName", n)).transpose()?,
        second.as_deref().map(|n| cardholder_name("cardholderName2", n)).transpose()?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterCardBody {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "consumer-1")]
    pub consumer_id: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,48}$", example = "PRODUCT_VISA")]
    pub card_product_id: String,
    #[schema(value_type = Option<crate::openapi::InitialCardState>)]
    pub state: Option<String>,
    #[schema(pattern = "^[a-zA-Z. -]{0,26}$", max_length = 26)]
    pub cardholder_name: Option<String>,
    #[schema(pattern = "^[a-zA-Z. -]{0,26}$", max_length = 26)]
    pub cardholder_name2: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$")]
    pub encrypted_data: String,
}

impl RegisterCardBody {
    pub fn into_domain(self) -> Result<RegisterCard, ApiError> {
        let (cardholder_name, cardholder_name2) = names(self.cardholder_name, self.cardholder_name2)?;
        Ok(RegisterCard {
            consumer_id: ConsumerId::parse(self.consumer_id)?,
            product_id: CardProductId::parse(self.card_product_id)?,
            state: initial_state("state", self.state)?,
            cardholder_name,
            cardholder_name2,
            encrypted_data: self.encrypted_data,
        })
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = Account)]
pub struct AccountWire {
    pub default: bool,
    #[schema(pattern = "^[A-Za-z0-9 -]{1,34}$", max_length = 34)]
    pub number: String,
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency_code: String,
    #[serde(rename = "type")]
    #[schema(pattern = "^(CHECKING|SAVINGS|CREDIT|PREPAID)$", example = "CHECKING")]
    pub kind: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateCardBody {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,48}$")]
    pub card_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "consumer-1")]
    pub consumer_id: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,48}$", example = "PRODUCT_VISA")]
    pub card_product_id: String,
    #[schema(value_type = Option<crate::openapi::InitialCardState>)]
    pub state: Option<String>,
    #[schema(pattern = "^[a-zA-Z. -]{0,26}$", max_length = 26)]
    pub cardholder_name: Option<String>,
    #[schema(pattern = "^[a-zA-Z. -]{0,26}$", max_length = 26)]
    pub cardholder_name2: Option<String>,
    #[schema(min_items = 1)]
    pub accounts: Vec<AccountWire>,
}

impl CreateCardBody {
    pub fn into_domain(self) -> Result<CreateCard, ApiError> {
        let (cardholder_name, cardholder_name2) = names(self.cardholder_name, self.cardholder_name2)?;
        if self.accounts.is_empty() {
            return Err(FieldError::invalid("accounts", "must hold at least one account").into());
        }
        for (i, account) in self.accounts.iter().enumerate() {
            let at = |e: FieldError| e.within(&format!("accounts[{i}]"));
            let number_ok = (1..=34).contains(&account.number.len())
                && account.number.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b' ');
            if !number_ok {
                return Err(at(FieldError::invalid("number", "must be 1 to 34 letters, digits, spaces or -")).into());
            }
            if account.currency_code.len() != 3 || !account.currency_code.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(at(FieldError::invalid("currencyCode", "must be an ISO 4217 code such as EUR")).into());
            }
            if !["CHECKING", "SAVINGS", "CREDIT", "PREPAID"].contains(&account.kind.as_str()) {
                return Err(at(FieldError::invalid("type", "must be CHECKING, SAVINGS, CREDIT or PREPAID")).into());
            }
        }
        if self.accounts.iter().filter(|a| a.default).count() != 1 {
            return Err(FieldError::invalid("accounts", "must have exactly one default account").into());
        }
        Ok(CreateCard {
            card_id: self.card_id.map(CardId::parse).transpose()?,
            consumer_id: ConsumerId::parse(self.consumer_id)?,
            product_id: CardProductId::parse(self.card_product_id)?,
            state: initial_state("state", self.state)?,
            cardholder_name,
            cardholder_name2,
            accounts: serde_json::to_string(&self.accounts).expect("accounts serialise"),
        })
    }
}

/// The body of a life-cycle operation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OperationBody {
    #[schema(value_type = crate::openapi::ReasonCode)]
    pub reason_code: Option<String>,
    #[schema(pattern = "^[a-zA-Z0-9 ]{1,64}$", max_length = 64)]
    pub reason: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,48}$")]
    pub new_card_id: Option<String>,
    #[schema(value_type = Option<crate::openapi::InitialCardState>)]
    pub new_card_state: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$")]
    pub encrypted_data: Option<String>,
}

impl OperationBody {
    pub fn into_domain(self, kind: OperationKind) -> Result<CardOperation, ApiError> {
        let reason_code = self.reason_code.ok_or_else(|| FieldError::missing("reasonCode"))?;
        let reason_code = ReasonCode::parse(&reason_code).ok_or_else(|| {
            let allowed: Vec<&str> = kind.allowed_reasons().iter().map(|r| r.as_str()).collect();
            FieldError::invalid("reasonCode", format!("must be one of {}", allowed.join(", ")))
        })?;
        let renews = matches!(kind, OperationKind::Renew | OperationKind::Replace);
        if !renews {
            for (field, given) in
                [("newCardId", self.new_card_id.is_some()), ("newCardState", self.new_card_state.is_some())]
            {
                if given {
                    return Err(FieldError::invalid(field, "is only taken by renew and replace").into());
                }
            }
        }
        Ok(CardOperation {
            kind,
            reason_code,
            reason: self.reason.as_deref().map(|r| reason_text("reason", r)).transpose()?,
            new_card_id: self
                .new_card_id
                .map(|id| CardId::parse(id).map_err(|e| FieldError { field: "newCardId".into(), ..e }))
                .transpose()?,
            new_card_state: initial_state("newCardState", self.new_card_state)?,
            encrypted_data: self.encrypted_data,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Card)]
pub struct CardView {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,48}$")]
    card_id: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    consumer_id: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,48}$")]
    card_product_id: String,
    #[schema(value_type = crate::openapi::Scheme)]
    scheme: &'static str,
    #[schema(pattern = "^[0-9]{4}$")]
    last4: String,
    #[schema(pattern = "^(0[1-9]|1[0-2])[0-9]{2}$")]
    expiry: String,
    #[schema(value_type = crate::openapi::CardState)]
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^RENEW$")]
    ongoing_operation: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cardholder_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cardholder_name2: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<&Card> for CardView {
    fn from(card: &Card) -> Self {
        Self {
            card_id: card.id.to_string(),
            consumer_id: card.consumer_id.to_string(),
            card_product_id: card.product_id.to_string(),
            scheme: card.scheme.as_str(),
            last4: card.last4.clone(),
            expiry: card.expiry.mmyy(),
            state: card.state.as_str(),
            ongoing_operation: card.ongoing.map(|_| "RENEW"),
            cardholder_name: card.cardholder_name.clone(),
            cardholder_name2: card.cardholder_name2.clone(),
            created_at: rfc3339(card.created_at),
            updated_at: rfc3339(card.updated_at),
        }
    }
}

/// The body of a sandbox digitization (push provisioning).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DigitizeBody {
    #[schema(value_type = crate::openapi::WalletName)]
    pub wallet: String,
    #[schema(min_length = 1, max_length = 64)]
    pub device: Option<String>,
}

impl DigitizeBody {
    pub fn into_domain(self) -> Result<(Wallet, String), ApiError> {
        let wallet = Wallet::parse(&self.wallet)
            .ok_or_else(|| FieldError::invalid("wallet", "must be APPLE_PAY, GOOGLE_PAY, SAMSUNG_PAY or HUAWEI_PAY"))?;
        let device = device_name(self.device.as_deref().unwrap_or("sandbox device"))?;
        Ok((wallet, device))
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DigitalCard)]
pub struct DigitalCardView {
    digital_card_id: String,
    card_id: String,
    #[schema(value_type = crate::openapi::WalletName)]
    wallet: &'static str,
    device: String,
    #[schema(value_type = crate::openapi::DigitalCardState)]
    state: &'static str,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<&DigitalCard> for DigitalCardView {
    fn from(digital_card: &DigitalCard) -> Self {
        Self {
            digital_card_id: digital_card.id.as_str().to_owned(),
            card_id: digital_card.card_id.to_string(),
            wallet: digital_card.wallet.as_str(),
            device: digital_card.device.clone(),
            state: digital_card.state.as_str(),
            created_at: rfc3339(digital_card.created_at),
            updated_at: rfc3339(digital_card.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigitalCardList {
    pub digital_cards: Vec<DigitalCardView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedDigitalCard {
    pub digital_card_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardList {
    pub cards: Vec<CardView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedCard {
    pub card_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = HistoryEntry)]
pub struct HistoryEntryView {
    operation_id: String,
    #[schema(value_type = crate::openapi::OperationName)]
    operation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openapi::CardState>)]
    from_state: Option<&'static str>,
    #[schema(value_type = crate::openapi::CardState)]
    to_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openapi::ReasonCode>)]
    reason_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    actor: String,
    correlation_id: String,
    #[schema(format = DateTime)]
    at: String,
}

impl From<&HistoryEntry> for HistoryEntryView {
    fn from(entry: &HistoryEntry) -> Self {
        Self {
            operation_id: entry.operation_id.clone(),
            operation: entry.operation.as_str(),
            from_state: entry.from_state.map(|s| s.as_str()),
            to_state: entry.to_state.as_str(),
            reason_code: entry.reason_code.map(|r| r.as_str()),
            reason: entry.reason.clone(),
            actor: entry.actor.clone(),
            correlation_id: entry.correlation_id.clone(),
            at: rfc3339(entry.at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    pub entries: Vec<HistoryEntryView>,
}

/// An operation as notified (outbound.md §2).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Operation)]
pub struct OperationView {
    operation_id: String,
    #[schema(value_type = crate::openapi::OperationName)]
    operation: &'static str,
    #[schema(value_type = crate::openapi::OperationStatus)]
    status: &'static str,
    #[schema(format = DateTime)]
    start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    end_time: Option<String>,
    card_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Value>,
    /// Set when the notification is about one digital card (sent to the digital-card endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    digital_card_id: Option<String>,
}

impl From<&Operation> for OperationView {
    fn from(operation: &Operation) -> Self {
        Self {
            operation_id: operation.operation_id.clone(),
            operation: operation.kind.as_str(),
            status: operation.status.as_str(),
            start_time: rfc3339(operation.start_time),
            end_time: operation.end_time.map(rfc3339),
            card_id: operation.card_id.to_string(),
            details: operation.details.as_deref().and_then(|d| serde_json::from_str(d).ok()),
            digital_card_id: operation.digital_card_id.as_ref().map(|d| d.as_str().to_owned()),
        }
    }
}
