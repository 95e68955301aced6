//! Cards v2 (inbound.md §4): register, create, get, history, and the life-cycle operations.
//!
//! Each change writes, in one unit of work: the card, a history line, the operation the issuer
//! will be notified of (the outbox), and the idempotency record.

use crate::consumers::{active_consumer, ensure_consumer};
use crate::context::{Done, Outcome, RequestContext, claim, complete};
use crate::error::{Refusal, conflict};
use crate::issuer_cache::{IssuerKeys, Needs};
use crate::ports::{RegistrationView, StoreExt, Tx, VaultedCredentials};
use crate::{AppError, Platform};
use cardplane_domain::FieldError;
use cardplane_domain::card::{Card, CardCommand, CardOrigin, CardState, InitialState, OperationKind, ReasonCode};
use cardplane_domain::credentials::{CardCredentials, Cvv, Expiry, Pan};
use cardplane_domain::digital_card::{DigitalCard, DigitalCardId, DigitalCardState, Wallet};
use cardplane_domain::ids::{CardId, CardProductId, ConsumerId, IssuerId};
use cardplane_domain::issuer::Issuer;
use cardplane_domain::operation::{HistoryEntry, Operation, OperationStatus};
use cardplane_domain::product::CardProduct;
use cardplane_domain::scheme::Scheme;
use std::sync::Arc;
use time::OffsetDateTime;

/// The body of Register card.
#[derive(Debug, Clone)]
pub struct RegisterCard {
    pub consumer_id: ConsumerId,
    pub product_id: CardProductId,
    pub state: InitialState,
    pub cardholder_name: Option<String>,
    pub cardholder_name2: Option<String>,
    pub encrypted_data: String,
}

/// The body of Create card. `accounts` arrives checked, as the JSON it is stored as.
#[derive(Debug, Clone)]
pub struct CreateCard {
    pub card_id: Option<CardId>,
    pub consumer_id: ConsumerId,
    pub product_id: CardProductId,
    pub state: InitialState,
    pub cardholder_name: Option<String>,
    pub cardholder_name2: Option<String>,
    pub accounts: String,
}

/// A life-cycle operation on a card.
#[derive(Debug, Clone)]
pub struct CardOperation {
    pub kind: OperationKind,
    pub reason_code: ReasonCode,
    pub reason: Option<String>,
    pub new_card_id: Option<CardId>,
    pub new_card_state: InitialState,
    pub encrypted_data: Option<String>,
}

/// One accepted change of a card, to be recorded.
pub(crate) struct CardChange<'a> {
    pub before: Option<&'a Card>,
    pub after: &'a Card,
    pub kind: OperationKind,
    pub reason_code: Option<ReasonCode>,
    pub reason: Option<String>,
    pub details: Option<String>,
}

impl<'a> CardChange<'a> {
    /// A life-cycle command that took `before` to `after`.
    pub fn of(before: &'a Card, after: &'a Card, command: &CardCommand, reason: Option<String>) -> Self {
        Self {
            before: Some(before),
            after,
            kind: command.kind(),
            reason_code: Some(command.reason()),
            reason,
            details: None,
        }
    }

    /// A card that came to be, by register or create.
    pub fn new_card(card: &'a Card) -> Self {
        let kind = match card.origin {
            CardOrigin::Registered => OperationKind::Register,
            CardOrigin::Created => OperationKind::Create,
        };
        Self { before: None, after: card, kind, reason_code: None, reason: None, details: None }
    }
}

/// Writes the history line and the outbox operation of a change.
/// A new `operationId`: a UUIDv7 (time first, then random), 32 hex digits. Ordered by time, new
/// ids land at the end of the outbox's unique index (and of `pending_operations`' key) instead of
/// on a random page of it: with random ids every notification of a group commit dirtied, and wrote
/// to the WAL, a 4 KiB index page of its own.
pub(crate) fn new_operation_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

pub(crate) async fn record_change(
    tx: &mut dyn Tx,
    ctx: &RequestContext,
    now: OffsetDateTime,
    change: CardChange<'_>,
) -> Result<String, AppError> {
    let operation_id = new_operation_id();
    let kind = change.kind;
    let entry = HistoryEntry {
        operation_id: operation_id.clone(),
        operation: kind,
        from_state: change.before.map(|card| card.state),
        to_state: change.after.state,
        reason_code: change.reason_code,
        reason: change.reason,
        actor: ctx.actor.clone(),
        correlation_id: ctx.correlation_id.clone(),
        at: now,
    };
    tx.append_history(&ctx.issuer, &change.after.id, &entry).await?;
    let operation = Operation {
        operation_id: operation_id.clone(),
        card_id: change.before.map_or(&change.after.id, |card| &card.id).clone(),
        kind,
        status: OperationStatus::Successful,
        start_time: now,
        end_time: Some(now),
        details: match &ctx.completes {
            Some(pending) => Some(crate::pending::pending_details(pending, change.details.as_deref())),
            None => change.details,
        },
        digital_card_id: None,
    };
    crate::notifications::notify(tx, &ctx.issuer, &operation, now).await?;
    Ok(operation_id)
}

/// The issuer's product, or 404.
fn product<'i>(issuer: &'i Issuer, id: &CardProductId) -> Result<&'i CardProduct, AppError> {
    issuer
        .onboarding
        .card_products
        .iter()
        .find(|p| &p.id == id)
        .ok_or_else(|| Refusal::CardProductNotFound(id.clone()).into())
}

/// Refuses credentials whose PAN belongs to another scheme than the card's.
fn check_scheme(credentials: &CardCredentials, scheme: Scheme) -> Result<(), AppError> {
    if Scheme::of_pan(credentials.pan.expose()) != Some(scheme) {
        let text = format!("the card number is not a {scheme} number, as the card product requires");
        return Err(FieldError::invalid("encryptedData", text).into());
    }
    Ok(())
}

/// Refuses a PAN that was ever retired. One that a live card holds is refused by the write of the
/// card itself: the store keeps live PANs unique (`Conflict::LivePan`, answered as
/// `PanAlreadyRegistered` by [`conflict`]), so looking for it first only read the same index twice,
/// on the writer.
async fn check_pan_not_barred(tx: &mut dyn Tx, ctx: &RequestContext, fingerprint: &[u8]) -> Result<(), AppError> {
    if tx.is_pan_barred(&ctx.issuer, fingerprint).await? {
        return Err(Refusal::PanNotAllowed.into());
    }
    Ok(())
}

/// Refuses a new cardId that is taken (by any card: ids of final cards are only reused by register).
pub(crate) async fn check_card_id_free(tx: &mut dyn Tx, ctx: &RequestContext, id: &CardId) -> Result<(), AppError> {
    if tx.card(&ctx.issuer, id).await?.is_some() {
        return Err(Refusal::CardIdInUse(id.clone()).into());
    }
    Ok(())
}

/// Queues a notification about each digital card of `card` the issuer knows of (active or
/// suspended) [outbound.md §4b]: `DELETE` when the card goes, `RENEW` when they move to a new card.
pub(crate) async fn notify_digital_cards(
    tx: &mut dyn Tx,
    issuer: &IssuerId,
    card: &CardId,
    kind: OperationKind,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    for digital_card in tx.digital_cards(issuer, card).await? {
        if matches!(digital_card.state, DigitalCardState::Active | DigitalCardState::Suspended) {
            notify_digital_card(tx, issuer, &digital_card, kind, now).await?;
        }
    }
    Ok(())
}

/// Queues a notification about one digital card, sent on its own to the digital-card endpoint.
pub(crate) async fn notify_digital_card(
    tx: &mut dyn Tx,
    issuer: &IssuerId,
    digital_card: &DigitalCard,
    kind: OperationKind,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    let operation = Operation {
        operation_id: new_operation_id(),
        card_id: digital_card.card_id.clone(),
        kind,
        status: OperationStatus::Successful,
        start_time: now,
        end_time: Some(now),
        details: None,
        digital_card_id: Some(digital_card.id.clone()),
    };
    Ok(crate::notifications::notify(tx, issuer, &operation, now).await?)
}

/// `details` of a `DIGITIZE` notification.
pub(crate) fn digitize_details(digital_card: &DigitalCard) -> String {
    // Digital card ids are [A-Za-z0-9_-] and wallets are fixed names: nothing to escape.
    format!(r#"{{"digitalCardId":"{}","wallet":"{}"}}"#, digital_card.id.as_str(), digital_card.wallet.as_str())
}

pub(crate) fn new_card_details(id: &CardId) -> String {
    // A cardId is [A-Za-z0-9_-]: nothing to escape.
    format!(r#"{{"newCardId":"{id}"}}"#)
}

impl Platform {
    /// The caller's issuer and its encryption keys, for decrypting card data outside the write
    /// transaction (the ECDH is the costliest step of a registration; the writer should not wait for
    /// it): as kept by the issuer cache, or read (and kept) when it has none fresh with what `needs`
    /// asks for. With it, whether it came from the cache (`true`), and so may predate a change made
    /// on another node.
    async fn issuer_with_keys(
        &self,
        ctx: &RequestContext,
        needs: Needs<'_>,
    ) -> Result<(Arc<IssuerKeys>, bool), AppError> {
        match self.issuers.get(&ctx.issuer, self.clock.now()).filter(|known| needs.met_by(known)) {
            Some(known) => Ok((known, true)),
            None => Ok((self.read_issuer_with_keys(ctx).await?, false)),
        }
    }

    /// The caller's issuer and its encryption keys as the store has them, kept for the next request.
    async fn read_issuer_with_keys(&self, ctx: &RequestContext) -> Result<Arc<IssuerKeys>, AppError> {
        let now = self.clock.now();
        let seen = self.issuers.generation();
        let id = ctx.issuer.clone();
        let known = self
            .store
            .read(move |tx| {
                Box::pin(async move {
                    let issuer = tx.issuer(&id).await?.ok_or_else(|| AppError::IssuerNotFound(id.clone()))?;
                    let keys = tx.encryption_keys(&id).await?;
                    Ok(IssuerKeys { issuer, keys })
                })
            })
            .await?;
        let known = Arc::new(known);
        self.issuers.keep(Arc::clone(&known), now, seen);
        Ok(known)
    }

    /// The card data the caller sent (`jwe`), decrypted with the key of `known` (its issuer) that
    /// the header names. When `known` came from the cache (`kept`) and lacks that key (rotated on
    /// another node since it was read), the issuer is read again and the decryption tried once
    /// more; one just read is not read twice. The header is read on its own only then, on a
    /// refusal: a request whose key is known parses it once.
    async fn decrypt(
        &self,
        ctx: &RequestContext,
        (known, kept): (&IssuerKeys, bool),
        jwe: &str,
    ) -> Result<CardCredentials, AppError> {
        let refusal = match self.card_data.decrypt_card_data(&ctx.issuer, &known.keys, jwe, "encryptedData") {
            Ok(credentials) => return Ok(credentials),
            Err(refusal) => refusal,
        };
        let lacks_the_key = kept
            && self
                .card_data
                .key_id_of(jwe)
                .is_some_and(|kid| !known.keys.iter().any(|key| key.key.kid.as_str() == kid));
        if !lacks_the_key {
            return Err(refusal.into());
        }
        let known = self.read_issuer_with_keys(ctx).await?;
        Ok(self.card_data.decrypt_card_data(&ctx.issuer, &known.keys, jwe, "encryptedData")?)
    }

    /// Registers a card the issuer's CMS issued. The same request again is a no-op.
    pub async fn register_card(
        &self,
        ctx: RequestContext,
        card_id: CardId,
        request: RegisterCard,
    ) -> Result<Done<Outcome>, AppError> {
        let (known, kept) = self.issuer_with_keys(&ctx, Needs { product: Some(&request.product_id) }).await?;
        let product = product(&known.issuer, &request.product_id)?.clone();
        if !product.allows_registration() {
            return Err(Refusal::OperationNotAllowed(format!(
                "card product {} is in authorisation mode {}: register is only for NONE and LIGHT",
                product.id,
                product.authorisation_mode.as_str()
            ))
            .into());
        }
        let credentials = self.decrypt(&ctx, (&known, kept), &request.encrypted_data).await?;
        check_scheme(&credentials, product.scheme)?;
        let vaulted = self.card_data.vault_credentials(&credentials);
        let now = self.clock.now();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(replay) = claim(tx, &ctx, now).await? {
                        return Ok(replay);
                    }
                    // The card, the PAN's bar and the consumer, read at once (one statement on
                    // PostgreSQL); what is decided from them is decided in this order.
                    let RegistrationView { card: existing, pan_barred, consumer } = tx
                        .registration_view(&ctx.issuer, &card_id, &vaulted.pan_fingerprint, &request.consumer_id)
                        .await?;
                    if let Some(live) = existing.as_ref().filter(|e| !e.card.state.is_final()) {
                        // The same card again is a no-op; another PAN under a live cardId is not.
                        if live.pan_fingerprint == vaulted.pan_fingerprint {
                            complete(tx, &ctx, &None).await?;
                            return Ok(Done { value: None, replayed: false });
                        }
                        return Err(Refusal::CardIdInUse(card_id).into());
                    }
                    if pan_barred {
                        return Err(Refusal::PanNotAllowed.into());
                    }
                    if let Some(existing) = &existing {
                        // A final card's id is reused only if D1 did not create it and its product
                        // is not used for transactions [D1].
                        let old_product =
                            known.issuer.onboarding.card_products.iter().find(|p| p.id == existing.card.product_id);
                        let reusable = existing.card.origin == CardOrigin::Registered
                            && old_product.is_some_and(|p| !p.used_for_transactions);
                        if !reusable {
                            return Err(Refusal::CardIdInUse(card_id).into());
                        }
                    }
                    ensure_consumer(tx, &ctx, &request.consumer_id, consumer, now).await?;
                    let card = Card {
                        id: card_id,
                        consumer_id: request.consumer_id,
                        product_id: product.id.clone(),
                        scheme: product.scheme,
                        last4: vaulted.last4.clone(),
                        expiry: credentials.expiry,
                        state: request.state.state(),
                        suspended_for: None,
                        ongoing: None,
                        origin: CardOrigin::Registered,
                        cardholder_name: request.cardholder_name,
                        cardholder_name2: request.cardholder_name2,
                        created_at: now,
                        updated_at: now,
                    };
                    let on_conflict = conflict(&card.id);
                    if existing.is_some() {
                        tx.rewrite_card(&ctx.issuer, &card, &vaulted).await.map_err(on_conflict)?;
                    } else {
                        tx.insert_card(&ctx.issuer, &card, &vaulted, None).await.map_err(on_conflict)?;
                    }
                    let change = CardChange::new_card(&card);
                    record_change(tx, &ctx, now, change).await?;
                    complete(tx, &ctx, &None).await?;
                    Ok(Done { value: None, replayed: false })
                })
            })
            .await
    }

    /// Creates a card: cardplane issues its PAN (inside the product's BIN range, never issued
    /// before), expiry and CVV. Answers the new card's id.
    pub async fn create_card(&self, ctx: RequestContext, request: CreateCard) -> Result<Done<Outcome>, AppError> {
        let (known, _) = self.issuer_with_keys(&ctx, Needs { product: Some(&request.product_id) }).await?;
        let product = product(&known.issuer, &request.product_id)?.clone();
        let Some(range) = product.bin_range.clone() else {
            return Err(Refusal::OperationNotAllowed(format!(
                "card product {} has no BIN range: cards of it cannot be created",
                product.id
            ))
            .into());
        };
        let now = self.clock.now();
        let expiry = Expiry::new(u8::from(now.month()), ((now.year() + i32::from(product.validity.get())) % 100) as u8)
            .expect("a calendar month is a valid expiry");
        let card_data = self.card_data.clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(replay) = claim(tx, &ctx, now).await? {
                        return Ok(replay);
                    }
                    active_consumer(tx, &ctx, &request.consumer_id).await?;
                    let card_id = request.card_id.unwrap_or_else(|| {
                        CardId::parse(uuid::Uuid::new_v4().simple().to_string()).expect("32 hex digits are a cardId")
                    });
                    check_card_id_free(tx, &ctx, &card_id).await?;
                    let mut issued: Option<(CardCredentials, VaultedCredentials)> = None;
                    for _ in 0..32 {
                        let pan = range.issue_pan(product.scheme, uuid::Uuid::new_v4().as_u128());
                        let pan = Pan::parse("pan", &pan).map_err(|e| anyhow::anyhow!("issued an invalid PAN: {e}"))?;
                        let fingerprint = card_data.pan_fingerprint(&pan);
                        let taken = tx.is_pan_barred(&ctx.issuer, &fingerprint).await?
                            || !tx.cards_with_pan(&ctx.issuer, &fingerprint).await?.is_empty();
                        if !taken {
                            let cvv_digits = if product.scheme == Scheme::Amex { 4 } else { 3 };
                            let cvv: String = (uuid::Uuid::new_v4().as_u128() % 10u128.pow(cvv_digits))
                                .to_string()
                                .chars()
                                .rev()
                                .chain(std::iter::repeat('0'))
                                .take(cvv_digits as usize)
                                .collect();
                            let credentials = CardCredentials {
                                pan,
                                expiry,
                                cvv: Some(Cvv::parse("cvv", &cvv).expect("digits")),
                                name: request.cardholder_name.clone(),
                            };
                            let vaulted = card_data.vault_credentials(&credentials);
                            issued = Some((credentials, vaulted));
                            break;
                        }
                    }
                    let Some((credentials, vaulted)) = issued else {
                        return Err(Refusal::OperationNotAllowed(format!(
                            "the BIN range of card product {} has no free card number left",
                            product.id
                        ))
                        .into());
                    };
                    let card = Card {
                        id: card_id.clone(),
                        consumer_id: request.consumer_id,
                        product_id: product.id.clone(),
                        scheme: product.scheme,
                        last4: vaulted.last4.clone(),
                        expiry: credentials.expiry,
                        state: request.state.state(),
                        suspended_for: None,
                        ongoing: None,
                        origin: CardOrigin::Created,
                        cardholder_name: request.cardholder_name,
                        cardholder_name2: request.cardholder_name2,
                        created_at: now,
                        updated_at: now,
                    };
                    tx.insert_card(&ctx.issuer, &card, &vaulted, Some(&request.accounts))
                        .await
                        .map_err(conflict(&card.id))?;
                    let change = CardChange::new_card(&card);
                    record_change(tx, &ctx, now, change).await?;
                    let outcome = Some(card_id.to_string());
                    complete(tx, &ctx, &outcome).await?;
                    Ok(Done { value: outcome, replayed: false })
                })
            })
            .await
    }

    pub async fn card(&self, ctx: RequestContext, id: CardId) -> Result<Card, AppError> {
        self.store
            .read(move |tx| {
                Box::pin(async move { Ok(tx.card(&ctx.issuer, &id).await?.ok_or(Refusal::CardNotFound(id))?.card) })
            })
            .await
    }

    /// The card's history, newest first.
    pub async fn card_history(&self, ctx: RequestContext, id: CardId) -> Result<Vec<HistoryEntry>, AppError> {
        self.store
            .read(move |tx| {
                Box::pin(async move {
                    if tx.card(&ctx.issuer, &id).await?.is_none() {
                        return Err(Refusal::CardNotFound(id).into());
                    }
                    Ok(tx.history(&ctx.issuer, &id).await?)
                })
            })
            .await
    }

    /// The operations (notifications) recorded for the issuer, in order; of one card or all.
    pub async fn operations(&self, issuer: IssuerId, card: Option<CardId>) -> Result<Vec<Operation>, AppError> {
        self.store
            .read(move |tx| {
                Box::pin(async move {
                    if tx.issuer(&issuer).await?.is_none() {
                        return Err(AppError::IssuerNotFound(issuer));
                    }
                    Ok(tx.operations(&issuer, card.as_ref()).await?)
                })
            })
            .await
    }

    /// Applies a life-cycle operation (activate, suspend, resume, delete, renew, replace).
    pub async fn operate_card(
        &self,
        ctx: RequestContext,
        card_id: CardId,
        request: CardOperation,
    ) -> Result<Done<Outcome>, AppError> {
        let renews = matches!(request.kind, OperationKind::Renew | OperationKind::Replace);
        let pending = renews && request.encrypted_data.is_none();
        let new_credentials = match (&request.encrypted_data, renews) {
            (Some(jwe), true) => {
                let (known, kept) = self.issuer_with_keys(&ctx, Needs::default()).await?;
                let credentials = self.decrypt(&ctx, (&known, kept), jwe).await?;
                let vaulted = self.card_data.vault_credentials(&credentials);
                Some((credentials, vaulted))
            }
            (Some(_), false) => {
                return Err(FieldError::invalid("encryptedData", "is only taken by renew and replace").into());
            }
            // Without card data, the worker fetches them from the issuer (Get Card Credentials)
            // and completes the operation later.
            (None, true) => None,
            (None, false) => None,
        };
        if request.kind == OperationKind::Replace {
            match &request.new_card_id {
                None => return Err(FieldError::missing("newCardId").into()),
                Some(id) if id == &card_id => {
                    return Err(FieldError::invalid("newCardId", "must differ from the card's own cardId").into());
                }
                Some(_) => {}
            }
        }
        let now = self.clock.now();
        let (card, kind) = (card_id.clone(), request.kind);
        let done = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(replay) = claim(tx, &ctx, now).await? {
                        return Ok(replay);
                    }
                    if pending {
                        crate::pending::request_renewal(tx, &ctx, &card_id, &request, now).await?;
                    } else {
                        apply_operation(tx, &ctx, &card_id, &request, &new_credentials, now).await?;
                    }
                    complete(tx, &ctx, &None).await?;
                    Ok(Done { value: None, replayed: false })
                })
            })
            .await?;
        // Once committed, and here rather than in the unit: the writer is the one serial part of the
        // server, and a log line formatted there cost it 5% of its time under life-cycle load. At
        // `debug`: the access log's line already names the card and the operation (the path) and
        // says it was done (the status), and the card's history keeps it for good; a second JSON
        // line was a tenth of a life-cycle request's instructions.
        if !done.replayed {
            tracing::debug!(%card, operation = kind.as_str(), "card operation");
        }
        Ok(done)
    }
}

/// Applies a life-cycle operation to the card inside `tx`: the new state, history, notification,
/// and for renew and replace the new credentials (`new_credentials`). Shared by the request path
/// and by the worker completing a renewal that waited for the issuer's credentials.
pub(crate) async fn apply_operation(
    tx: &mut dyn Tx,
    ctx: &RequestContext,
    card_id: &CardId,
    request: &CardOperation,
    new_credentials: &Option<(CardCredentials, VaultedCredentials)>,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    let stored = tx.card(&ctx.issuer, card_id).await?.ok_or_else(|| Refusal::CardNotFound(card_id.clone()))?;
    let card = stored.card;
    let reason = request.reason_code;
    let command = match request.kind {
        OperationKind::Activate => CardCommand::Activate { reason },
        OperationKind::Suspend => CardCommand::Suspend { reason },
        OperationKind::Resume => CardCommand::Resume { reason },
        OperationKind::Delete => CardCommand::Delete { reason },
        OperationKind::Renew => {
            let (credentials, vaulted) = new_credentials.as_ref().expect("renew has credentials");
            let pan_changed = vaulted.pan_fingerprint != stored.pan_fingerprint;
            CardCommand::Renew {
                reason,
                new_expiry: credentials.expiry,
                new_last4: pan_changed.then(|| vaulted.last4.clone()),
                new_state: request.new_card_state,
            }
        }
        OperationKind::Replace => CardCommand::Replace { reason },
        OperationKind::Register | OperationKind::Create | OperationKind::Digitize => {
            unreachable!("not a life-cycle operation")
        }
    };
    let next = card.apply(&command, now).map_err(Refusal::Card)?;
    match (request.kind, &new_credentials) {
        (OperationKind::Renew | OperationKind::Replace, Some((credentials, vaulted))) => {
            check_scheme(credentials, card.scheme)?;
            let pan_changed = vaulted.pan_fingerprint != stored.pan_fingerprint;
            if pan_changed {
                check_pan_not_barred(tx, ctx, &vaulted.pan_fingerprint).await?;
            } else if request.kind == OperationKind::Replace {
                return Err(Refusal::PanNotAllowed.into());
            }
            let moved_to = request.new_card_id.clone().filter(|id| id != &card.id);
            match moved_to {
                None => {
                    tx.rewrite_card(&ctx.issuer, &next, vaulted).await.map_err(conflict(&next.id))?;
                    let change = CardChange::of(&card, &next, &command, request.reason.clone());
                    record_change(tx, ctx, now, change).await?;
                }
                Some(new_id) => {
                    check_card_id_free(tx, ctx, &new_id).await?;
                    // The old id ends here; the card goes on under the new one.
                    let old = card
                        .apply(&CardCommand::Replace { reason: ReasonCode::IssuerDecision }, now)
                        .map_err(Refusal::Card)?;
                    let successor = if request.kind == OperationKind::Replace {
                        card.replacement(
                            new_id.clone(),
                            vaulted.last4.clone(),
                            credentials.expiry,
                            request.new_card_state,
                            now,
                        )
                    } else {
                        Card { id: new_id.clone(), created_at: now, ..next.clone() }
                    };
                    tx.update_card(&ctx.issuer, &old).await?;
                    // The wallets' tokens follow the card to its new id [D1].
                    notify_digital_cards(tx, &ctx.issuer, &card.id, OperationKind::Renew, now).await?;
                    tx.relink_digital_cards(&ctx.issuer, &card.id, &new_id, now).await?;
                    tx.insert_card(&ctx.issuer, &successor, vaulted, None).await.map_err(conflict(&successor.id))?;
                    let details = Some(new_card_details(&new_id));
                    let change =
                        CardChange { details, ..CardChange::of(&card, &old, &command, request.reason.clone()) };
                    record_change(tx, ctx, now, change).await?;
                    let entry = HistoryEntry {
                        operation_id: new_operation_id(),
                        operation: request.kind,
                        from_state: None,
                        to_state: successor.state,
                        reason_code: Some(reason),
                        reason: request.reason.clone(),
                        actor: ctx.actor.clone(),
                        correlation_id: ctx.correlation_id.clone(),
                        at: now,
                    };
                    tx.append_history(&ctx.issuer, &new_id, &entry).await?;
                }
            }
            if pan_changed {
                tx.bar_pan(&ctx.issuer, &stored.pan_fingerprint, now).await?;
            }
        }
        (OperationKind::Delete, _) => {
            tx.update_card(&ctx.issuer, &next).await?;
            tx.bar_pan(&ctx.issuer, &stored.pan_fingerprint, now).await?;
            notify_digital_cards(tx, &ctx.issuer, &card.id, OperationKind::Delete, now).await?;
            tx.delete_digital_cards(&ctx.issuer, &card.id, now).await?;
            let change = CardChange::of(&card, &next, &command, request.reason.clone());
            record_change(tx, ctx, now, change).await?;
        }
        _ => {
            tx.update_card(&ctx.issuer, &next).await?;
            let change = CardChange::of(&card, &next, &command, request.reason.clone());
            record_change(tx, ctx, now, change).await?;
        }
    }
    Ok(())
}

impl Platform {
    /// Digitizes a card into a wallet (push provisioning, a sandbox call [ours]): a new digital card
    /// linked to it, and a `DIGITIZE` notification. Only an active card can be digitized.
    pub async fn digitize_card(
        &self,
        ctx: RequestContext,
        card_id: CardId,
        wallet: Wallet,
        device: String,
    ) -> Result<Done<Outcome>, AppError> {
        let now = self.clock.now();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(replay) = claim(tx, &ctx, now).await? {
                        return Ok(replay);
                    }
                    let card = tx
                        .card(&ctx.issuer, &card_id)
                        .await?
                        .ok_or_else(|| Refusal::CardNotFound(card_id.clone()))?
                        .card;
                    if card.state != CardState::Active {
                        return Err(Refusal::OperationNotAllowed(format!(
                            "DIGITIZE is not allowed on a card in state {}",
                            card.state
                        ))
                        .into());
                    }
                    // The wallet shows the cardholder's name: when cardplane does not hold the
                    // consumer's data and the issuer can be asked, the digitization waits for
                    // Get Consumer Information (outbound.md §3).
                    let callback = tx.issuer(&ctx.issuer).await?.and_then(|i| i.onboarding.callback);
                    let consumer = tx.consumer(&ctx.issuer, &card.consumer_id).await?;
                    let known = consumer.is_some_and(|c| c.personal_information.is_some());
                    let ask_issuer = callback.is_some_and(|c| !c.stores_consumer_data || !known);
                    let id = DigitalCardId::parse(format!("dc-{}", uuid::Uuid::new_v4().simple())).expect("a valid id");
                    let digital_card = DigitalCard {
                        id: id.clone(),
                        card_id: card.id.clone(),
                        wallet,
                        device,
                        state: if ask_issuer { DigitalCardState::Pending } else { DigitalCardState::Active },
                        created_at: now,
                        updated_at: now,
                    };
                    tx.insert_digital_card(&ctx.issuer, &digital_card).await?;
                    if ask_issuer {
                        crate::pending::request_digitization(tx, &ctx, &digital_card, now).await?;
                    } else {
                        let change = CardChange {
                            before: Some(&card),
                            after: &card,
                            kind: OperationKind::Digitize,
                            reason_code: None,
                            reason: None,
                            details: Some(digitize_details(&digital_card)),
                        };
                        record_change(tx, &ctx, now, change).await?;
                        notify_digital_card(tx, &ctx.issuer, &digital_card, OperationKind::Create, now).await?;
                    }
                    let outcome = Some(id.as_str().to_owned());
                    complete(tx, &ctx, &outcome).await?;
                    Ok(Done { value: outcome, replayed: false })
                })
            })
            .await
    }

    /// The digital cards linked to a card, deleted ones included.
    pub async fn digital_cards(&self, ctx: RequestContext, card_id: CardId) -> Result<Vec<DigitalCard>, AppError> {
        self.store
            .read(move |tx| {
                Box::pin(async move {
                    if tx.card(&ctx.issuer, &card_id).await?.is_none() {
                        return Err(Refusal::CardNotFound(card_id).into());
                    }
                    Ok(tx.digital_cards(&ctx.issuer, &card_id).await?)
                })
            })
            .await
    }
}
