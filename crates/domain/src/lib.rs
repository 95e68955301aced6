//! The payments domain of cardplane: what an issuer, a card product, a key id *is*, and which values of
//! them are valid. Pure Rust: no I/O, no async, no serialisation. Adapters parse untrusted input into
//! these types once ("parse, don't validate"); everything past that boundary can trust them.
//!
//! # Layout
//! - [`auth`]: the rules an issuer's token assertion must meet.
//! - [`card`]: cards, their states, reason codes and the life-cycle state machine.
//! - [`consumer`]: consumers and their personal information.
//! - [`digital_card`]: digital cards (wallet tokens) and how they follow their card.
//! - [`credentials`]: PAN (Luhn), expiry, CVV: card data that never prints.
//! - [`delivery`]: where a notification to the issuer stands, and the retry schedule.
//! - [`field`]: [`FieldError`], the one way a value is refused, naming the field (becomes a D1 400).
//! - [`ids`]: the identifier newtypes of D1 (`issuerId`, `consumerId`, `cardId`, `cardProductId`, `kid`).
//! - [`scheme`]: card schemes, and which scheme a PAN prefix belongs to.
//! - [`product`]: card products: scheme, authorisation mode, BIN range, validity.
//! - [`operation`]: operations (what the issuer is notified of) and card history entries.
//! - [`issuer`]: an onboarded issuer and its settings (assertion keys, callback, wallet server).
//! - [`pending`]: an operation acknowledged as `PENDING` that waits for the issuer (its card credentials
//!   for a renew or replace, its consumer information for a digitization).
//! - [`keys`]: public-key material as the domain sees it (P-256 points, key status).

pub mod auth;
pub mod card;
pub mod consumer;
pub mod credentials;
pub mod delivery;
pub mod digital_card;
pub mod field;
pub mod ids;
pub mod issuer;
pub mod keys;
pub mod operation;
pub mod pending;
pub mod product;
pub mod scheme;

pub use field::FieldError;
