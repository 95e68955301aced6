//! Cards and their life cycle (inbound.md §4): the state machine as a pure function from (card,
//! command, time) to the card after it and the operation it causes, or a typed refusal.

use crate::credentials::Expiry;
use crate::ids::{CardId, CardProductId, ConsumerId};
use crate::scheme::Scheme;
use std::fmt;
use time::OffsetDateTime;

/// The state of a card. `Deleted` and `Replaced` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardState {
    Inactive,
    Active,
    Suspended,
    Deleted,
    Replaced,
}

impl CardState {
    pub const ALL: [CardState; 5] =
        [CardState::Inactive, CardState::Active, CardState::Suspended, CardState::Deleted, CardState::Replaced];

    pub fn as_str(self) -> &'static str {
        match self {
            CardState::Inactive => "INACTIVE",
            CardState::Active => "ACTIVE",
            CardState::Suspended => "SUSPENDED",
            CardState::Deleted => "DELETED",
            CardState::Replaced => "REPLACED",
        }
    }

    pub fn parse(s: &str) -> Option<CardState> {
        CardState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Whether no operation can ever change the card again.
    pub fn is_final(self) -> bool {
        matches!(self, CardState::Deleted | CardState::Replaced)
    }
}

impl fmt::Display for CardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state a card is registered, created, renewed or replaced into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    Active,
    Inactive,
}

impl InitialState {
    pub fn as_str(self) -> &'static str {
        self.state().as_str()
    }

    pub fn parse(s: &str) -> Option<InitialState> {
        match s {
            "ACTIVE" => Some(InitialState::Active),
            "INACTIVE" => Some(InitialState::Inactive),
            _ => None,
        }
    }

    pub fn state(self) -> CardState {
        match self {
            InitialState::Active => CardState::Active,
            InitialState::Inactive => CardState::Inactive,
        }
    }
}

/// Why an operation was asked for (`reasonCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    CardLost,
    CardStolen,
    CardBroken,
    CardFound,
    Fraud,
    UserDecision,
    IssuerDecision,
    ClosedAccount,
    ClosedCard,
    CardExpiring,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 10] = [
        ReasonCode::CardLost,
        ReasonCode::CardStolen,
        ReasonCode::CardBroken,
        ReasonCode::CardFound,
        ReasonCode::Fraud,
        ReasonCode::UserDecision,
        ReasonCode::IssuerDecision,
        ReasonCode::ClosedAccount,
        ReasonCode::ClosedCard,
        ReasonCode::CardExpiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::CardLost => "CARD_LOST",
            ReasonCode::CardStolen => "CARD_STOLEN",
            ReasonCode::CardBroken => "CARD_BROKEN",
            ReasonCode::CardFound => "CARD_FOUND",
            ReasonCode::Fraud => "FRAUD",
            ReasonCode::UserDecision => "USER_DECISION",
            ReasonCode::IssuerDecision => "ISSUER_DECISION",
            ReasonCode::ClosedAccount => "CLOSED_ACCOUNT",
            ReasonCode::ClosedCard => "CLOSED_CARD",
            ReasonCode::CardExpiring => "CARD_EXPIRING",
        }
    }

    pub fn parse(s: &str) -> Option<ReasonCode> {
        ReasonCode::ALL.into_iter().find(|reason| reason.as_str() == s)
    }
}

/// A card operation, as named on the wire and in notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    Register,
    Create,
    Activate,
    Suspend,
    Resume,
    Delete,
    Renew,
    Replace,
    Digitize,
}

impl OperationKind {
    pub const LIFE_CYCLE: [OperationKind; 6] = [
        OperationKind::Activate,
        OperationKind::Suspend,
        OperationKind::Resume,
        OperationKind::Delete,
        OperationKind::Renew,
        OperationKind::Replace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Register => "REGISTER",
            OperationKind::Create => "CREATE",
            OperationKind::Activate => "ACTIVATE",
            OperationKind::Suspend => "SUSPEND",
            OperationKind::Resume => "RESUME",
            OperationKind::Delete => "DELETE",
            OperationKind::Renew => "RENEW",
            OperationKind::Replace => "REPLACE",
            OperationKind::Digitize => "DIGITIZE",
        }
    }

    pub fn parse(s: &str) -> Option<OperationKind> {
        [OperationKind::Register, OperationKind::Create, OperationKind::Digitize]
            .into_iter()
            .chain(OperationKind::LIFE_CYCLE)
            .find(|k| k.as_str() == s)
    }

    /// The path segment of a life-cycle operation (`operations:suspend`).
    pub fn from_path(op: &str) -> Option<OperationKind> {
        OperationKind::LIFE_CYCLE.into_iter().find(|kind| kind.as_str().eq_ignore_ascii_case(op))
    }

    /// The reason codes this operation accepts [D1 + ours, inbound.md §4].
    pub fn allowed_reasons(self) -> &'static [ReasonCode] {
        use ReasonCode::*;
        match self {
            OperationKind::Activate => &[IssuerDecision, UserDecision],
            OperationKind::Suspend => &[CardLost, CardStolen, CardBroken, Fraud, UserDecision, IssuerDecision],
            OperationKind::Resume => &[CardFound, UserDecision, IssuerDecision],
            OperationKind::Delete => &[ClosedAccount, ClosedCard, CardLost, CardStolen, Fraud, IssuerDecision],
            OperationKind::Renew => &[CardExpiring, IssuerDecision],
            OperationKind::Replace => &[CardLost, CardStolen, CardBroken, Fraud, IssuerDecision],
            OperationKind::Register | OperationKind::Create | OperationKind::Digitize => &[],
        }
    }
}

/// A renewal or replacement still waiting for something: `RENEW` while a renewed card awaits
/// activation [D1 property].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OngoingOperation {
    Renew,
}

/// How the card came to D1: registered (issued by the issuer's CMS) or created by D1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardOrigin {
    Registered,
    Created,
}

impl CardOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            CardOrigin::Registered => "REGISTERED",
            CardOrigin::Created => "CREATED",
        }
    }

    pub fn parse(s: &str) -> Option<CardOrigin> {
        [CardOrigin::Registered, CardOrigin::Created].into_iter().find(|o| o.as_str() == s)
    }
}

/// A card as the domain sees it. The credentials themselves live sealed in the store; the card
/// carries what may be shown: the last four digits and the expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub id: CardId,
    pub consumer_id: ConsumerId,
    pub product_id: CardProductId,
    pub scheme: Scheme,
    pub last4: String,
    pub expiry: Expiry,
    pub state: CardState,
    /// Why the card is suspended, while it is: decides how it may be resumed.
    pub suspended_for: Option<ReasonCode>,
    pub ongoing: Option<OngoingOperation>,
    pub origin: CardOrigin,
    pub cardholder_name: Option<String>,
    pub cardholder_name2: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A life-cycle command on one card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardCommand {
    Activate {
        reason: ReasonCode,
    },
    Suspend {
        reason: ReasonCode,
    },
    Resume {
        reason: ReasonCode,
    },
    Delete {
        reason: ReasonCode,
    },
    /// New expiry (and PAN, when `new_last4` is given) on the same card; the card takes
    /// `new_state`, with `ongoingOperation = RENEW` when that is `INACTIVE`. A suspended card stays
    /// suspended.
    Renew {
        reason: ReasonCode,
        new_expiry: Expiry,
        new_last4: Option<String>,
        new_state: InitialState,
    },
    /// The card ends `REPLACED`; the caller makes the new card from [`Card::replacement`].
    Replace {
        reason: ReasonCode,
    },
}

impl CardCommand {
    pub fn kind(&self) -> OperationKind {
        match self {
            CardCommand::Activate { .. } => OperationKind::Activate,
            CardCommand::Suspend { .. } => OperationKind::Suspend,
            CardCommand::Resume { .. } => OperationKind::Resume,
            CardCommand::Delete { .. } => OperationKind::Delete,
            CardCommand::Renew { .. } => OperationKind::Renew,
            CardCommand::Replace { .. } => OperationKind::Replace,
        }
    }

    pub fn reason(&self) -> ReasonCode {
        match self {
            CardCommand::Activate { reason }
            | CardCommand::Suspend { reason }
            | CardCommand::Resume { reason }
            | CardCommand::Delete { reason }
            | CardCommand::Renew { reason, .. }
            | CardCommand::Replace { reason } => *reason,
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardRefusal {
    /// The reason code is not one this operation takes (400).
    ReasonNotAllowed { operation: OperationKind, reason: ReasonCode },
    /// The card's state forbids the operation (403 `OPERATION_NOT_ALLOWED`, naming the state).
    NotAllowedInState { operation: OperationKind, state: CardState },
    /// A suspended card may only be resumed with a reason its suspension allows (403).
    ResumeNotAllowed { suspended_for: ReasonCode, reason: ReasonCode },
}

impl fmt::Display for CardRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CardRefusal::ReasonNotAllowed { operation, reason } => {
                let allowed: Vec<&str> = operation.allowed_reasons().iter().map(|r| r.as_str()).collect();
                write!(
                    f,
                    "reasonCode {} is not allowed for {}; use one of {}",
                    reason.as_str(),
                    operation.as_str(),
                    allowed.join(", ")
                )
            }
            CardRefusal::NotAllowedInState { operation, state } => {
                write!(f, "{} is not allowed on a card in state {state}", operation.as_str())
            }
            CardRefusal::ResumeNotAllowed { suspended_for, reason } => match suspended_for {
                ReasonCode::CardStolen | ReasonCode::CardBroken | ReasonCode::Fraud => write!(
                    f,
                    "a card suspended for {} cannot be resumed, only replaced (state SUSPENDED)",
                    suspended_for.as_str()
                ),
                _ => write!(
                    f,
                    "a card suspended for {} cannot be resumed with {} (state SUSPENDED)",
                    suspended_for.as_str(),
                    reason.as_str()
                ),
            },
        }
    }
}

/// Whether a card suspended for `suspended_for` may be resumed for `reason` [D1].
pub fn resume_allowed(suspended_for: ReasonCode, reason: ReasonCode) -> bool {
    use ReasonCode::*;
    match reason {
        CardFound => suspended_for == CardLost,
        UserDecision => suspended_for == UserDecision,
        IssuerDecision => matches!(suspended_for, UserDecision | IssuerDecision | CardLost),
        _ => false,
    }
}

impl Card {
    /// Applies `command` at `now`: the card after it, or why it is refused. Pure.
    pub fn apply(&self, command: &CardCommand, now: OffsetDateTime) -> Result<Card, CardRefusal> {
        let operation = command.kind();
        let reason = command.reason();
        if !operation.allowed_reasons().contains(&reason) {
            return Err(CardRefusal::ReasonNotAllowed { operation, reason });
        }
        let refused = || CardRefusal::NotAllowedInState { operation, state: self.state };
        let mut next = Card { updated_at: now, ..self.clone() };
        match command {
            CardCommand::Activate { .. } => {
                if self.state != CardState::Inactive {
                    return Err(refused());
                }
                next.state = CardState::Active;
                next.ongoing = None;
            }
            CardCommand::Suspend { reason } => {
                if self.state != CardState::Active {
                    return Err(refused());
                }
                next.state = CardState::Suspended;
                next.suspended_for = Some(*reason);
            }
            CardCommand::Resume { reason } => {
                if self.state != CardState::Suspended {
                    return Err(refused());
                }
                // A card suspended before this model kept reasons resumes like an issuer suspension.
                let suspended_for = self.suspended_for.unwrap_or(ReasonCode::IssuerDecision);
                if !resume_allowed(suspended_for, *reason) {
                    return Err(CardRefusal::ResumeNotAllowed { suspended_for, reason: *reason });
                }
                next.state = CardState::Active;
                next.suspended_for = None;
            }
            CardCommand::Delete { .. } => {
                if self.state.is_final() {
                    return Err(refused());
                }
                next.state = CardState::Deleted;
                next.ongoing = None;
            }
            CardCommand::Renew { new_expiry, new_last4, new_state, .. } => {
                if self.state.is_final() {
                    return Err(refused());
                }
                next.expiry = *new_expiry;
                if let Some(last4) = new_last4 {
                    next.last4 = last4.clone();
                }
                // Renewal changes the credentials, not a suspension [ours]: a suspended card stays
                // suspended for its reason (so a stolen card is never revived by a renewal).
                if self.state != CardState::Suspended {
                    next.state = new_state.state();
                    next.ongoing = (*new_state == InitialState::Inactive).then_some(OngoingOperation::Renew);
                }
            }
            CardCommand::Replace { .. } => {
                if self.state.is_final() {
                    return Err(refused());
                }
                next.state = CardState::Replaced;
                next.ongoing = None;
            }
        }
        Ok(next)
    }

    /// The card that takes over from this one on replace (or on a renew that moves the card to a
    /// new id): same consumer and product, the new credentials, in `state`.
    pub fn replacement(
        &self,
        id: CardId,
        last4: String,
        expiry: Expiry,
        state: InitialState,
        now: OffsetDateTime,
    ) -> Card {
        Card {
            id,
            consumer_id: self.consumer_id.clone(),
            product_id: self.product_id.clone(),
            scheme: self.scheme,
            last4,
            expiry,
            state: state.state(),
            suspended_for: None,
            ongoing: None,
            origin: self.origin,
            cardholder_name: self.cardholder_name.clone(),
            cardholder_name2: self.cardholder_name2.clone(),
            created_at: now,
            updated_at: now,
        }
    }
}

/// A cardholder name as embossed: `^[a-zA-Z. -]{0,26}$` [D1].
pub fn cardholder_name(field: &str, name: &str) -> Result<String, crate::FieldError> {
    let ok = name.len() <= 26 && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'.' || b == b' ' || b == b'-');
    ok.then(|| name.to_owned())
        .ok_or_else(|| crate::FieldError::invalid(field, "must be at most 26 of A-Z, a-z, '.', ' ' and '-'"))
}

/// The free-text `reason` of an operation: `^[a-zA-Z0-9 ]{1,64}$` [D1].
pub fn reason_text(field: &str, text: &str) -> Result<String, crate::FieldError> {
    let ok = (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ');
    ok.then(|| text.to_owned())
        .ok_or_else(|| crate::FieldError::invalid(field, "must be 1 to 64 of A-Z, a-z, 0-9 and space"))
}
