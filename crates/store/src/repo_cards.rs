//! The consumer and card queries, written once for both backends (see [`crate::repo`]).

use crate::repo::{corrupt, from_micros};
use cardplane_app::ports::{CardDataVault, Conflict, StoreError, StoredCard};
use cardplane_domain::card::{Card, CardOrigin, CardState, OngoingOperation, OperationKind, ReasonCode};
use cardplane_domain::consumer::{Address, Consumer, ConsumerState, PersonalInformation};
use cardplane_domain::digital_card::{DigitalCard, DigitalCardId, DigitalCardState, Wallet};
use cardplane_domain::ids::{CardId, CardProductId, ConsumerId};
use cardplane_domain::operation::{HistoryEntry, Operation, OperationStatus};
use serde::{Deserialize, Serialize};

/// Personal information as stored (JSON). Field names follow the wire.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PersonalInformationJson {
    title: Option<String>,
    first_name: Option<String>,
    middle_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    mobile_phone_number: Option<String>,
    language: Option<String>,
    date_of_birth: Option<String>,
    address: Option<AddressJson>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddressJson {
    line1: Option<String>,
    line2: Option<String>,
    line3: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zip_code: Option<String>,
    country_code: Option<String>,
}

pub(crate) fn personal_information_json(info: &PersonalInformation) -> String {
    let address = info.address.as_ref().map(|a| AddressJson {
        line1: a.line1.clone(),
        line2: a.line2.clone(),
        line3: a.line3.clone(),
        city: a.city.clone(),
        state: a.state.clone(),
        zip_code: a.zip_code.clone(),
        country_code: a.country_code.clone(),
    });
    serde_json::to_string(&PersonalInformationJson {
        title: info.title.clone(),
        first_name: info.first_name.clone(),
        middle_name: info.middle_name.clone(),
        last_name: info.last_name.clone(),
        email: info.email.clone(),
        mobile_phone_number: info.mobile_phone_number.clone(),
        language: info.language.clone(),
        date_of_birth: info.date_of_birth.clone(),
        address,
    })
    .expect("personal information serialises")
}

fn personal_information(json: &str) -> Result<PersonalInformation, StoreError> {
    let stored: PersonalInformationJson = serde_json::from_str(json).map_err(corrupt)?;
    Ok(PersonalInformation {
        title: stored.title,
        first_name: stored.first_name,
        middle_name: stored.middle_name,
        last_name: stored.last_name,
        email: stored.email,
        mobile_phone_number: stored.mobile_phone_number,
        language: stored.language,
        date_of_birth: stored.date_of_birth,
        address: stored.address.map(|a| Address {
            line1: a.line1,
            line2: a.line2,
            line3: a.line3,
            city: a.city,
            state: a.state,
            zip_code: a.zip_code,
            country_code: a.country_code,
        }),
    })
}

pub(crate) fn consumer_from_row(
    id: String,
    state: String,
    info: Option<String>,
    created_at: i64,
    updated_at: i64,
) -> Result<Consumer, StoreError> {
    Ok(Consumer {
        id: ConsumerId::parse(id).map_err(corrupt)?,
        state: ConsumerState::parse(&state).ok_or_else(|| corrupt("consumer state"))?,
        personal_information: info.as_deref().map(personal_information).transpose()?,
        created_at: from_micros(created_at)?,
        updated_at: from_micros(updated_at)?,
    })
}

/// The columns of a `cards` row the domain needs (a macro so that queries stay `&'static str`).
macro_rules! card_columns {
    () => {
        "card_id, consumer_id, card_product_id, scheme, last4, pan_fingerprint, credentials_sealed, state, \
         suspended_for, ongoing_operation, origin, cardholder_name, cardholder_name2, created_at, updated_at"
    };
}
pub(crate) use card_columns;

/// The columns and values of a new `operations` row (`insert_operation`).
macro_rules! operation_insert {
    () => {
        "(issuer_id, operation_id, card_id, operation, status, start_time, end_time, details, created_at, \
         digital_card_id, delivery_state, attempts, next_attempt_at, last_attempt_at, last_error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $6, $9, $10, $11, $12, $13, $14)"
    };
}
pub(crate) use operation_insert;

/// Binds the first nine parameters of [`operation_insert!`] (`$1`–`$9`: the issuer and the
/// operation's own columns; `$6`, its start, is `created_at` too), for both backends' inserts and
/// for PostgreSQL's one-statement notification, which sets the delivery columns its own way.
macro_rules! bind_operation {
    ($query:expr, $issuer:expr, $operation:expr) => {
        $query
            .bind($issuer)
            .bind($operation.operation_id.as_str())
            .bind($operation.card_id.as_str())
            .bind($operation.kind.as_str())
            .bind($operation.status.as_str())
            .bind($crate::repo::micros($operation.start_time))
            .bind($operation.end_time.map($crate::repo::micros))
            .bind($operation.details.as_deref())
            .bind($operation.digital_card_id.as_ref().map(|d| d.as_str()))
    };
}
pub(crate) use bind_operation;

#[derive(sqlx::FromRow)]
pub(crate) struct CardRow {
    pub card_id: String,
    pub consumer_id: String,
    pub card_product_id: String,
    pub scheme: String,
    pub last4: String,
    pub pan_fingerprint: Vec<u8>,
    pub credentials_sealed: Vec<u8>,
    pub state: String,
    pub suspended_for: Option<String>,
    pub ongoing_operation: Option<String>,
    pub origin: String,
    pub cardholder_name: Option<String>,
    pub cardholder_name2: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

crate::native::struct_from_row!(CardRow {
    card_id,
    consumer_id,
    card_product_id,
    scheme,
    last4,
    pan_fingerprint,
    credentials_sealed,
    state,
    suspended_for,
    ongoing_operation,
    origin,
    cardholder_name,
    cardholder_name2,
    created_at,
    updated_at,
});

/// Cards from their rows (`card_from_row`).
pub(crate) fn cards_from_rows(rows: Vec<CardRow>, vault: &dyn CardDataVault) -> Result<Vec<StoredCard>, StoreError> {
    rows.into_iter().map(|row| card_from_row(row, vault)).collect()
}

/// Maps a row to a card; the expiry is read from the sealed credentials, the only place it is kept.
pub(crate) fn card_from_row(row: CardRow, vault: &dyn CardDataVault) -> Result<StoredCard, StoreError> {
    let credentials = vault.open_credentials(&row.credentials_sealed).map_err(corrupt)?;
    let card = Card {
        id: CardId::parse(row.card_id).map_err(corrupt)?,
        consumer_id: ConsumerId::parse(row.consumer_id).map_err(corrupt)?,
        product_id: CardProductId::parse(row.card_product_id).map_err(corrupt)?,
        scheme: row.scheme.parse().map_err(|()| corrupt("card scheme"))?,
        last4: row.last4,
        expiry: credentials.expiry,
        state: CardState::parse(&row.state).ok_or_else(|| corrupt("card state"))?,
        suspended_for: row
            .suspended_for
            .map(|r| ReasonCode::parse(&r).ok_or_else(|| corrupt("suspension reason")))
            .transpose()?,
        ongoing: match row.ongoing_operation.as_deref() {
            None => None,
            Some("RENEW") => Some(OngoingOperation::Renew),
            Some(_) => return Err(corrupt("ongoing operation")),
        },
        origin: CardOrigin::parse(&row.origin).ok_or_else(|| corrupt("card origin"))?,
        cardholder_name: row.cardholder_name,
        cardholder_name2: row.cardholder_name2,
        created_at: from_micros(row.created_at)?,
        updated_at: from_micros(row.updated_at)?,
    };
    Ok(StoredCard { card, pan_fingerprint: row.pan_fingerprint })
}

/// A failed card write: a broken uniqueness rule is a [`Conflict`], anything else a fault.
///
/// PostgreSQL names the constraint; SQLite names the columns in its message.
pub(crate) fn card_write_error(error: sqlx::Error) -> StoreError {
    if let Some(database) = error.as_database_error()
        && database.is_unique_violation()
    {
        let what = database.constraint().map_or_else(|| database.message().to_owned(), str::to_owned);
        if what.contains("cards_live_pan") || what.contains("pan_fingerprint") {
            return StoreError::Conflict(Conflict::LivePan);
        }
        if what.contains("cards_pkey") || what.contains("cards.card_id") {
            return StoreError::Conflict(Conflict::CardId);
        }
    }
    crate::repo::backend(error)
}

pub(crate) fn digital_card_from_row(
    (id, card_id, wallet, device, state, created_at, updated_at): (String, String, String, String, String, i64, i64),
) -> Result<DigitalCard, StoreError> {
    Ok(DigitalCard {
        id: DigitalCardId::parse(id).map_err(corrupt)?,
        card_id: CardId::parse(card_id).map_err(corrupt)?,
        wallet: Wallet::parse(&wallet).ok_or_else(|| corrupt("wallet"))?,
        device,
        state: DigitalCardState::parse(&state).ok_or_else(|| corrupt("digital card state"))?,
        created_at: from_micros(created_at)?,
        updated_at: from_micros(updated_at)?,
    })
}

pub(crate) fn ongoing(card: &Card) -> Option<&'static str> {
    card.ongoing.map(|OngoingOperation::Renew| "RENEW")
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn history_from_row(
    operation_id: String,
    operation: String,
    from_state: Option<String>,
    to_state: String,
    reason_code: Option<String>,
    reason: Option<String>,
    actor: String,
    correlation_id: String,
    at: i64,
) -> Result<HistoryEntry, StoreError> {
    let state = |s: &str| CardState::parse(s).ok_or_else(|| corrupt("history state"));
    Ok(HistoryEntry {
        operation_id,
        operation: OperationKind::parse(&operation).ok_or_else(|| corrupt("history operation"))?,
        from_state: from_state.as_deref().map(state).transpose()?,
        to_state: state(&to_state)?,
        reason_code: reason_code.map(|r| ReasonCode::parse(&r).ok_or_else(|| corrupt("reason code"))).transpose()?,
        reason,
        actor,
        correlation_id,
        at: from_micros(at)?,
    })
}

/// An `operations` row, as far as the operation goes (its delivery record aside).
#[derive(sqlx::FromRow)]
pub(crate) struct OperationRow {
    operation_id: String,
    card_id: String,
    operation: String,
    status: String,
    start_time: i64,
    end_time: Option<i64>,
    details: Option<String>,
    digital_card_id: Option<String>,
}

impl OperationRow {
    pub(crate) fn into_operation(self) -> Result<Operation, StoreError> {
        Ok(Operation {
            operation_id: self.operation_id,
            card_id: CardId::parse(self.card_id).map_err(corrupt)?,
            kind: OperationKind::parse(&self.operation).ok_or_else(|| corrupt("operation"))?,
            status: OperationStatus::parse(&self.status).ok_or_else(|| corrupt("operation status"))?,
            start_time: from_micros(self.start_time)?,
            end_time: self.end_time.map(from_micros).transpose()?,
            details: self.details,
            digital_card_id: self.digital_card_id.map(DigitalCardId::parse).transpose().map_err(corrupt)?,
        })
    }
}

crate::native::struct_from_row!(OperationRow {
    operation_id,
    card_id,
    operation,
    status,
    start_time,
    end_time,
    details,
    digital_card_id
});

/// Implements [`CardTx`](cardplane_app::ports::CardTx) for `SqlTx<'_, $conn>`, like `impl_tx!`.
macro_rules! impl_card_tx {
    ($conn:ty, $sql:ident $(, overrides: { $($overrides:tt)* })?) => {
        #[async_trait::async_trait]
        impl cardplane_app::ports::CardTx for $crate::repo::SqlTx<'_, $conn> {
            async fn consumer(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                id: &cardplane_domain::ids::ConsumerId,
            ) -> Result<Option<cardplane_domain::consumer::Consumer>, cardplane_app::ports::StoreError> {
                let row: Option<(String, String, Option<String>, i64, i64)> = $sql::query_as(
                    "SELECT consumer_id, state, personal_information, created_at, updated_at FROM consumers \
                     WHERE issuer_id = $1 AND consumer_id = $2",
                )
                .bind(issuer.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                row.map(|(id, state, info, created, updated)| {
                    $crate::repo_cards::consumer_from_row(id, state, info, created, updated)
                })
                .transpose()
            }

            async fn put_consumer(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                consumer: &cardplane_domain::consumer::Consumer,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                use $crate::repo::micros;
                $sql::query(
                    "INSERT INTO consumers (issuer_id, consumer_id, state, personal_information, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (issuer_id, consumer_id) DO UPDATE SET \
                     state = excluded.state, personal_information = excluded.personal_information, \
                     updated_at = excluded.updated_at",
                )
                .bind(issuer.as_str())
                .bind(consumer.id.as_str())
                .bind(consumer.state.as_str())
                .bind(consumer.personal_information.as_ref().map($crate::repo_cards::personal_information_json))
                .bind(micros(consumer.created_at))
                .bind(micros(consumer.updated_at))
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(())
            }

            async fn card(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                id: &cardplane_domain::ids::CardId,
            ) -> Result<Option<cardplane_app::ports::StoredCard>, cardplane_app::ports::StoreError> {
                let query = concat!("SELECT ", $crate::repo_cards::card_columns!(), " FROM cards WHERE issuer_id = $1 AND card_id = $2");
                let rows: Vec<$crate::repo_cards::CardRow> = $sql::query_as(query)
                    .bind(issuer.as_str())
                    .bind(id.as_str())
                    .fetch_all(&mut *self.conn)
                    .await
                    .map_err($crate::repo::backend)?;
                Ok($crate::repo_cards::cards_from_rows(rows, self.vault)?.into_iter().next())
            }

            async fn cards_of_consumer(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                consumer: &cardplane_domain::ids::ConsumerId,
            ) -> Result<Vec<cardplane_domain::card::Card>, cardplane_app::ports::StoreError> {
                let query = concat!(
                    "SELECT ", $crate::repo_cards::card_columns!(),
                    " FROM cards WHERE issuer_id = $1 AND consumer_id = $2 ORDER BY created_at, card_id"
                );
                let rows: Vec<$crate::repo_cards::CardRow> = $sql::query_as(query)
                    .bind(issuer.as_str())
                    .bind(consumer.as_str())
                    .fetch_all(&mut *self.conn)
                    .await
                    .map_err($crate::repo::backend)?;
                Ok($crate::repo_cards::cards_from_rows(rows, self.vault)?.into_iter().map(|stored| stored.card).collect())
            }

            async fn cards_with_pan(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                pan_fingerprint: &[u8],
            ) -> Result<Vec<cardplane_domain::card::Card>, cardplane_app::ports::StoreError> {
                // Two lookups, each exactly the condition of a partial index (`cards_live_pan`,
                // `cards_final_by_pan`): no index holds every card by PAN (migrations 0010, 0011).
                let query = concat!(
                    "SELECT ", $crate::repo_cards::card_columns!(),
                    " FROM cards WHERE issuer_id = $1 AND pan_fingerprint = $2 AND NOT pan_final \
                     UNION ALL SELECT ", $crate::repo_cards::card_columns!(),
                    " FROM cards WHERE issuer_id = $1 AND pan_fingerprint = $2 AND pan_final \
                     ORDER BY created_at"
                );
                let rows: Vec<$crate::repo_cards::CardRow> = $sql::query_as(query)
                    .bind(issuer.as_str())
                    .bind(pan_fingerprint)
                    .fetch_all(&mut *self.conn)
                    .await
                    .map_err($crate::repo::backend)?;
                Ok($crate::repo_cards::cards_from_rows(rows, self.vault)?.into_iter().map(|stored| stored.card).collect())
            }

            async fn insert_card(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                card: &cardplane_domain::card::Card,
                credentials: &cardplane_app::ports::VaultedCredentials,
                accounts: Option<&str>,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                use $crate::repo::micros;
                $sql::query(
                    "INSERT INTO cards (issuer_id, card_id, consumer_id, card_product_id, scheme, last4, pan_fingerprint, \
                     credentials_sealed, state, suspended_for, ongoing_operation, origin, cardholder_name, \
                     cardholder_name2, accounts, created_at, updated_at, pan_final) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
                )
                .bind(issuer.as_str())
                .bind(card.id.as_str())
                .bind(card.consumer_id.as_str())
                .bind(card.product_id.as_str())
                .bind(card.scheme.as_str())
                .bind(credentials.last4.as_str())
                .bind(credentials.pan_fingerprint.as_slice())
                .bind(credentials.sealed.as_slice())
                .bind(card.state.as_str())
                .bind(card.suspended_for.map(|r| r.as_str()))
                .bind($crate::repo_cards::ongoing(card))
                .bind(card.origin.as_str())
                .bind(card.cardholder_name.as_deref())
                .bind(card.cardholder_name2.as_deref())
                .bind(accounts)
                .bind(micros(card.created_at))
                .bind(micros(card.updated_at))
                .bind(card.state.is_final())
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo_cards::card_write_error)?;
                Ok(())
            }

            async fn rewrite_card(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                card: &cardplane_domain::card::Card,
                credentials: &cardplane_app::ports::VaultedCredentials,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                use $crate::repo::micros;
                $sql::query(
                    "UPDATE cards SET consumer_id = $1, card_product_id = $2, scheme = $3, last4 = $4, \
                     pan_fingerprint = $5, credentials_sealed = $6, state = $7, suspended_for = $8, \
                     ongoing_operation = $9, origin = $10, cardholder_name = $11, cardholder_name2 = $12, \
                     created_at = $13, updated_at = $14, pan_final = $17 WHERE issuer_id = $15 AND card_id = $16",
                )
                .bind(card.consumer_id.as_str())
                .bind(card.product_id.as_str())
                .bind(card.scheme.as_str())
                .bind(credentials.last4.as_str())
                .bind(credentials.pan_fingerprint.as_slice())
                .bind(credentials.sealed.as_slice())
                .bind(card.state.as_str())
                .bind(card.suspended_for.map(|r| r.as_str()))
                .bind($crate::repo_cards::ongoing(card))
                .bind(card.origin.as_str())
                .bind(card.cardholder_name.as_deref())
                .bind(card.cardholder_name2.as_deref())
                .bind(micros(card.created_at))
                .bind(micros(card.updated_at))
                .bind(issuer.as_str())
                .bind(card.id.as_str())
                .bind(card.state.is_final())
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo_cards::card_write_error)?;
                Ok(())
            }

            async fn update_card(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                card: &cardplane_domain::card::Card,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                // `pan_final` is set only when the card ends: a statement that names it takes the
                // card out of the PAN indexes and puts it back (SQLite), and is never a HOT update
                // (PostgreSQL), whatever the value (migration 0011).
                let sql = if card.state.is_final() {
                    "UPDATE cards SET state = $1, suspended_for = $2, ongoing_operation = $3, updated_at = $4, \
                     last4 = $5, pan_final = TRUE WHERE issuer_id = $6 AND card_id = $7"
                } else {
                    "UPDATE cards SET state = $1, suspended_for = $2, ongoing_operation = $3, updated_at = $4, \
                     last4 = $5 WHERE issuer_id = $6 AND card_id = $7"
                };
                $sql::query(sql)
                .bind(card.state.as_str())
                .bind(card.suspended_for.map(|r| r.as_str()))
                .bind($crate::repo_cards::ongoing(card))
                .bind($crate::repo::micros(card.updated_at))
                .bind(card.last4.as_str())
                .bind(issuer.as_str())
                .bind(card.id.as_str())
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(())
            }

            async fn digital_cards(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                card: &cardplane_domain::ids::CardId,
            ) -> Result<Vec<cardplane_domain::digital_card::DigitalCard>, cardplane_app::ports::StoreError> {
                let rows: Vec<(String, String, String, String, String, i64, i64)> = $sql::query_as(
                    "SELECT digital_card_id, card_id, wallet, device, state, created_at, updated_at FROM digital_cards \
                     WHERE issuer_id = $1 AND card_id = $2 ORDER BY created_at, digital_card_id",
                )
                .bind(issuer.as_str())
                .bind(card.as_str())
                .fetch_all(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                rows.into_iter().map($crate::repo_cards::digital_card_from_row).collect()
            }

            async fn insert_digital_card(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                digital_card: &cardplane_domain::digital_card::DigitalCard,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                use $crate::repo::micros;
                $sql::query(
                    "INSERT INTO digital_cards (issuer_id, digital_card_id, card_id, wallet, device, state, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(issuer.as_str())
                .bind(digital_card.id.as_str())
                .bind(digital_card.card_id.as_str())
                .bind(digital_card.wallet.as_str())
                .bind(digital_card.device.as_str())
                .bind(digital_card.state.as_str())
                .bind(micros(digital_card.created_at))
                .bind(micros(digital_card.updated_at))
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(())
            }

            async fn delete_digital_cards(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                card: &cardplane_domain::ids::CardId,
                at: time::OffsetDateTime,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                $sql::query(
                    "UPDATE digital_cards SET state = 'DELETED', updated_at = $1 \
                     WHERE issuer_id = $2 AND card_id = $3 AND state <> 'DELETED'",
                )
                .bind($crate::repo::micros(at))
                .bind(issuer.as_str())
                .bind(card.as_str())
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(())
            }

            async fn set_digital_card_state(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                id: &cardplane_domain::digital_card::DigitalCardId,
                from: cardplane_domain::digital_card::DigitalCardState,
                to: cardplane_domain::digital_card::DigitalCardState,
                at: time::OffsetDateTime,
            ) -> Result<bool, cardplane_app::ports::StoreError> {
                let done = $sql::query(
                    "UPDATE digital_cards SET state = $1, updated_at = $2 \
                     WHERE issuer_id = $3 AND digital_card_id = $4 AND state = $5",
                )
                .bind(to.as_str())
                .bind($crate::repo::micros(at))
                .bind(issuer.as_str())
                .bind(id.as_str())
                .bind(from.as_str())
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn relink_digital_cards(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                from: &cardplane_domain::ids::CardId,
                to: &cardplane_domain::ids::CardId,
                at: time::OffsetDateTime,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                $sql::query(
                    "UPDATE digital_cards SET card_id = $1, updated_at = $2 \
                     WHERE issuer_id = $3 AND card_id = $4 AND state <> 'DELETED'",
                )
                .bind(to.as_str())
                .bind($crate::repo::micros(at))
                .bind(issuer.as_str())
                .bind(from.as_str())
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(())
            }

            async fn is_pan_barred(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                pan_fingerprint: &[u8],
            ) -> Result<bool, cardplane_app::ports::StoreError> {
                let found: Option<(i64,)> =
                    $sql::query_as("SELECT barred_at FROM barred_pans WHERE issuer_id = $1 AND pan_fingerprint = $2")
                        .bind(issuer.as_str())
                        .bind(pan_fingerprint)
                        .fetch_optional(&mut *self.conn)
                        .await
                        .map_err($crate::repo::backend)?;
                Ok(found.is_some())
            }

            async fn bar_pan(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                pan_fingerprint: &[u8],
                at: time::OffsetDateTime,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                $sql::query(
                    "INSERT INTO barred_pans (issuer_id, pan_fingerprint, barred_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (issuer_id, pan_fingerprint) DO NOTHING",
                )
                .bind(issuer.as_str())
                .bind(pan_fingerprint)
                .bind($crate::repo::micros(at))
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(())
            }

            async fn append_history(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                card: &cardplane_domain::ids::CardId,
                entry: &cardplane_domain::operation::HistoryEntry,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                $sql::query(
                    "INSERT INTO card_history (issuer_id, card_id, operation_id, operation, from_state, to_state, \
                     reason_code, reason, actor, correlation_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(issuer.as_str())
                .bind(card.as_str())
                .bind(entry.operation_id.as_str())
                .bind(entry.operation.as_str())
                .bind(entry.from_state.map(|s| s.as_str()))
                .bind(entry.to_state.as_str())
                .bind(entry.reason_code.map(|r| r.as_str()))
                .bind(entry.reason.as_deref())
                .bind(entry.actor.as_str())
                .bind(entry.correlation_id.as_str())
                .bind($crate::repo::micros(entry.at))
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(())
            }

            async fn history(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                card: &cardplane_domain::ids::CardId,
            ) -> Result<Vec<cardplane_domain::operation::HistoryEntry>, cardplane_app::ports::StoreError> {
                #[allow(clippy::type_complexity)]
                let rows: Vec<(String, String, Option<String>, String, Option<String>, Option<String>, String, String, i64)> =
                    $sql::query_as(
                        "SELECT operation_id, operation, from_state, to_state, reason_code, reason, actor, correlation_id, at \
                         FROM card_history WHERE issuer_id = $1 AND card_id = $2 ORDER BY seq DESC",
                    )
                    .bind(issuer.as_str())
                    .bind(card.as_str())
                    .fetch_all(&mut *self.conn)
                    .await
                    .map_err($crate::repo::backend)?;
                rows.into_iter()
                    .map(|(id, op, from, to, code, reason, actor, correlation, at)| {
                        $crate::repo_cards::history_from_row(id, op, from, to, code, reason, actor, correlation, at)
                    })
                    .collect()
            }

            async fn enqueue_operation(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                operation: &cardplane_domain::operation::Operation,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                let seq = self.insert_operation(issuer.as_str(), operation, None).await?;
                let due = $crate::repo::micros(operation.start_time);
                self.queue_card(issuer.as_str(), operation.card_id.as_str(), seq, due).await
            }

            async fn dead_letter_operation(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                operation: &cardplane_domain::operation::Operation,
                at: time::OffsetDateTime,
                error: &str,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                let dead = Some(($crate::repo::micros(at), error));
                self.insert_operation(issuer.as_str(), operation, dead).await.map(|_| ())
            }

            async fn operations(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                card: Option<&cardplane_domain::ids::CardId>,
            ) -> Result<Vec<cardplane_domain::operation::Operation>, cardplane_app::ports::StoreError> {
                let rows: Vec<$crate::repo_cards::OperationRow> = $sql::query_as(
                    "SELECT operation_id, card_id, operation, status, start_time, end_time, details, digital_card_id \
                     FROM operations WHERE issuer_id = $1 AND ($2 IS NULL OR card_id = $2) ORDER BY seq",
                )
                .bind(issuer.as_str())
                .bind(card.map(|c| c.as_str()))
                .fetch_all(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                rows.into_iter().map($crate::repo_cards::OperationRow::into_operation).collect()
            }

            async fn claim_idempotency_key(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                route: &str,
                key: &str,
                claim: &cardplane_app::ports::IdempotencyRecord,
                expired_before: time::OffsetDateTime,
            ) -> Result<Option<cardplane_app::ports::IdempotencyRecord>, cardplane_app::ports::StoreError> {
                use $crate::repo::{backend, micros};
                $sql::query("DELETE FROM idempotency_keys WHERE issuer_id = $1 AND route = $2 AND key = $3 AND created_at < $4")
                    .bind(issuer.as_str())
                    .bind(route)
                    .bind(key)
                    .bind(micros(expired_before))
                    .execute(&mut *self.conn)
                    .await
                    .map_err(backend)?;
                let claimed = $sql::query(
                    "INSERT INTO idempotency_keys (issuer_id, route, key, request_hash, outcome, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (issuer_id, route, key) DO NOTHING",
                )
                .bind(issuer.as_str())
                .bind(route)
                .bind(key)
                .bind(claim.request_hash.as_slice())
                .bind(claim.outcome.as_str())
                .bind(micros(claim.created_at))
                .execute(&mut *self.conn)
                .await
                .map_err(backend)?;
                if claimed.rows_affected() == 1 {
                    return Ok(None);
                }
                let row: Option<(Vec<u8>, String, i64)> = $sql::query_as(
                    "SELECT request_hash, outcome, created_at FROM idempotency_keys \
                     WHERE issuer_id = $1 AND route = $2 AND key = $3",
                )
                .bind(issuer.as_str())
                .bind(route)
                .bind(key)
                .fetch_optional(&mut *self.conn)
                .await
                .map_err(backend)?;
                row.map(|(request_hash, outcome, created_at)| {
                    Ok(cardplane_app::ports::IdempotencyRecord {
                        request_hash,
                        outcome,
                        created_at: $crate::repo::from_micros(created_at)?,
                    })
                })
                .transpose()
            }

            async fn complete_idempotency_key(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                route: &str,
                key: &str,
                outcome: &str,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                $sql::query("UPDATE idempotency_keys SET outcome = $1 WHERE issuer_id = $2 AND route = $3 AND key = $4")
                    .bind(outcome)
                    .bind(issuer.as_str())
                    .bind(route)
                    .bind(key)
                    .execute(&mut *self.conn)
                    .await
                    .map_err($crate::repo::backend)?;
                Ok(())
            }
            $($($overrides)*)?
        }

        impl $crate::repo::SqlTx<'_, $conn> {
            /// Writes `operation` to the outbox with its delivery record as it starts: pending and due
            /// at its start, or `dead` already (as `dead_letter_sendable` leaves one: one attempt at
            /// the time given, for the reason given, no retry, no lease). Answers its place (`seq`).
            async fn insert_operation(
                &mut self,
                issuer: &str,
                operation: &cardplane_domain::operation::Operation,
                dead: Option<(i64, &str)>,
            ) -> Result<i64, cardplane_app::ports::StoreError> {
                use $crate::repo::micros;
                let start = micros(operation.start_time);
                let (state, attempts, next_attempt, last_attempt, error) = match dead {
                    None => ("PENDING", 0_i64, Some(start), None, None),
                    Some((at, error)) => ("DEAD", 1, None, Some(at), Some(error)),
                };
                use $crate::repo::Connection;
                const INSERT: &str = concat!("INSERT INTO operations ", $crate::repo_cards::operation_insert!());
                const INSERT_RETURNING: &str =
                    concat!("INSERT INTO operations ", $crate::repo_cards::operation_insert!(), " RETURNING seq");
                // `seq` is the row's key: SQLite tells it without `RETURNING` (see `last_insert_rowid`).
                let rowid_known = self.conn.last_insert_rowid().is_some();
                let query = $sql::query(if rowid_known { INSERT } else { INSERT_RETURNING });
                let row = $crate::repo_cards::bind_operation!(query, issuer, operation)
                .bind(state)
                .bind(attempts)
                .bind(next_attempt)
                .bind(last_attempt)
                .bind(error)
                .fetch_optional(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                match row {
                    Some(row) => {
                        use $sql::Row;
                        row.try_get::<i64, _>("seq").map_err($crate::repo::backend)
                    }
                    None => self
                        .conn
                        .last_insert_rowid()
                        .ok_or_else(|| $crate::repo::corrupt("an insert that returned no row")),
                }
            }
        }
    };
}

pub(crate) use impl_card_tx;
