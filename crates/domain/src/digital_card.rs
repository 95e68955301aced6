//! Digital cards (tokens in a wallet) as D1 keeps them per card (outbound.md §5). Their life follows
//! the card's: deleted with it, moved to the new card on replace; untouched by suspend and resume [D1].

use crate::FieldError;
use crate::ids::CardId;
use time::OffsetDateTime;

/// `digitalCardId`: 1–64 characters `[A-Za-z0-9_-]` [ours].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DigitalCardId(String);

impl DigitalCardId {
    pub fn parse(value: impl Into<String>) -> Result<Self, FieldError> {
        let value = value.into();
        let ok = (1..=64).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then_some(Self(value))
            .ok_or_else(|| FieldError::invalid("digitalCardId", "must be 1 to 64 of A-Z, a-z, 0-9, _ and -"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wallet {
    ApplePay,
    GooglePay,
    SamsungPay,
    HuaweiPay,
}

impl Wallet {
    pub fn as_str(self) -> &'static str {
        match self {
            Wallet::ApplePay => "APPLE_PAY",
            Wallet::GooglePay => "GOOGLE_PAY",
            Wallet::SamsungPay => "SAMSUNG_PAY",
            Wallet::HuaweiPay => "HUAWEI_PAY",
        }
    }

    pub fn parse(s: &str) -> Option<Wallet> {
        [Wallet::ApplePay, Wallet::GooglePay, Wallet::SamsungPay, Wallet::HuaweiPay]
            .into_iter()
            .find(|w| w.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitalCardState {
    /// Waiting for the issuer's consumer information before the wallet gets it [ours].
    Pending,
    Active,
    Suspended,
    Deleted,
}

impl DigitalCardState {
    pub fn as_str(self) -> &'static str {
        match self {
            DigitalCardState::Pending => "PENDING",
            DigitalCardState::Active => "ACTIVE",
            DigitalCardState::Suspended => "SUSPENDED",
            DigitalCardState::Deleted => "DELETED",
        }
    }

    pub fn parse(s: &str) -> Option<DigitalCardState> {
        [DigitalCardState::Pending, DigitalCardState::Active, DigitalCardState::Suspended, DigitalCardState::Deleted]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// A device name as a wallet reports it: 1–64 printable characters [ours].
pub fn device_name(name: &str) -> Result<String, FieldError> {
    let ok = (1..=64).contains(&name.chars().count()) && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned()).ok_or_else(|| FieldError::invalid("device", "must be 1 to 64 characters"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitalCard {
    pub id: DigitalCardId,
    /// The card it is linked to; changes when the card is replaced or moved to a new cardId.
    pub card_id: CardId,
    pub wallet: Wallet,
    pub device: String,
    pub state: DigitalCardState,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}
