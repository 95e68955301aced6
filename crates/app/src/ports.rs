//! The ports: what the use cases need from the outside world, as traits.
//!
//! # Transactions
//! A use case hands the [`Store`] a *unit of work*: an async closure over a [`Tx`]. The store runs
//! it inside one database transaction and commits durably before it answers. This shape, rather than
//! `begin`/`commit` calls, is what lets the SQLite store practise *group commit*: one writer runs the
//! units of many concurrent requests in one transaction (each under its own savepoint, so a unit
//! that fails rolls back alone) and acknowledges all of them after a single fsync.
//!
//! A unit may run more than once only if it fails before commit; it must not have side effects
//! outside its `Tx` (outbound calls belong to the worker, from durable records).

use crate::AppError;
use async_trait::async_trait;
use cardplane_domain::FieldError;
use cardplane_domain::auth::{AssertionClaims, AssertionRefusal};
use cardplane_domain::card::Card;
use cardplane_domain::consumer::{Consumer, PersonalInformation};
use cardplane_domain::credentials::{CardCredentials, Pan};
use cardplane_domain::delivery::{AfterAttempt, AttemptOutcome, Delivery, DeliveryState};
use cardplane_domain::digital_card::{DigitalCard, DigitalCardId, DigitalCardState};
use cardplane_domain::ids::{CardId, ConsumerId, IssuerId, KeyId};
use cardplane_domain::issuer::{CallbackSettings, Issuer};
use cardplane_domain::keys::{EncryptionKey, P256PublicKey};
use cardplane_domain::operation::{HistoryEntry, Operation};
use cardplane_domain::pending::PendingOperation;
use futures_util::future::BoxFuture;
use std::any::Any;
use time::OffsetDateTime;

/// A storage failure. Never the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
    /// A write broke a uniqueness rule the database enforces (a concurrent request got there first).
    #[error("a uniqueness rule was broken: {0:?}")]
    Conflict(Conflict),
}

/// Which uniqueness rule a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// The cardId is taken.
    CardId,
    /// Another live card carries the PAN.
    LivePan,
}

/// An encryption key as stored: its public half and its private half sealed by the [`KeyVault`].
#[derive(Debug, Clone)]
pub struct StoredEncryptionKey {
    pub key: EncryptionKey,
    pub sealed_private_key: Vec<u8>,
}

/// The repository operations available inside one transaction.
///
/// Reads inside a write unit see the unit's own writes and those of the units committed before it.
#[async_trait]
pub trait Tx: CardTx + OutboxTx + PendingTx + Send {
    async fn issuer(&mut self, id: &IssuerId) -> Result<Option<Issuer>, StoreError>;
    /// Whether the issuer has callback settings: somewhere to deliver its notifications.
    async fn has_callback(&mut self, id: &IssuerId) -> Result<bool, StoreError>;
    async fn issuers(&mut self) -> Result<Vec<Issuer>, StoreError>;
    /// Records `operation` for its notification: queued for delivery when the issuer has callback
    /// settings ([`CardTx::enqueue_operation`]), dead-lettered at `at` for `undeliverable` when it has
    /// none ([`CardTx::dead_letter_operation`]). PostgreSQL looks and writes in one statement (a
    /// round trip is most of what a write costs there); the default asks [`Tx::has_callback`] first.
    async fn notify_operation(
        &mut self,
        issuer: &IssuerId,
        operation: &Operation,
        at: OffsetDateTime,
        undeliverable: &str,
    ) -> Result<(), StoreError> {
        if self.has_callback(issuer).await? {
            self.enqueue_operation(issuer, operation).await
        } else {
            self.dead_letter_operation(issuer, operation, at, undeliverable).await
        }
    }
    /// Inserts or replaces an issuer with its assertion keys, card products and settings.
    async fn put_issuer(&mut self, issuer: &Issuer) -> Result<(), StoreError>;

    /// Every encryption key of the issuer, oldest first.
    async fn encryption_keys(&mut self, issuer: &IssuerId) -> Result<Vec<StoredEncryptionKey>, StoreError>;
    async fn add_encryption_key(&mut self, issuer: &IssuerId, key: &StoredEncryptionKey) -> Result<(), StoreError>;
    /// Marks every active key of the issuer retired at `at`.
    async fn retire_encryption_keys(&mut self, issuer: &IssuerId, at: OffsetDateTime) -> Result<(), StoreError>;

    /// Remembers that `jti` was used by `issuer` until `until` (and forgets those expired at `now`).
    /// Returns `false` when it was already remembered: a replay.
    async fn remember_assertion_jti(
        &mut self,
        issuer: &IssuerId,
        jti: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
}

/// A card as stored, with its PAN's fingerprint (for the uniqueness rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCard {
    pub card: Card,
    pub pan_fingerprint: Vec<u8>,
}

/// What registering a card must know before it writes ([`CardTx::registration_view`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationView {
    /// The card stored under the cardId, if any, in any state.
    pub card: Option<StoredCard>,
    /// Whether the PAN was barred (it belonged to a card that ended).
    pub pan_barred: bool,
    /// The consumer the card is for, if registered.
    pub consumer: Option<Consumer>,
}

/// What an idempotent request left behind: a digest of the request, and the use case's outcome
/// (enough to rebuild the answer) [platform.md §Idempotency].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub request_hash: Vec<u8>,
    pub outcome: String,
    pub created_at: OffsetDateTime,
}

/// The repository operations on consumers and cards, inside one transaction.
#[async_trait]
pub trait CardTx: Send {
    async fn consumer(&mut self, issuer: &IssuerId, id: &ConsumerId) -> Result<Option<Consumer>, StoreError>;
    async fn put_consumer(&mut self, issuer: &IssuerId, consumer: &Consumer) -> Result<(), StoreError>;

    async fn card(&mut self, issuer: &IssuerId, id: &CardId) -> Result<Option<StoredCard>, StoreError>;
    /// [`CardTx::card`], [`CardTx::is_pan_barred`] and [`CardTx::consumer`] together: what a
    /// registration reads. PostgreSQL answers in one statement; the default asks in turn.
    async fn registration_view(
        &mut self,
        issuer: &IssuerId,
        card: &CardId,
        pan_fingerprint: &[u8],
        consumer: &ConsumerId,
    ) -> Result<RegistrationView, StoreError> {
        Ok(RegistrationView {
            card: self.card(issuer, card).await?,
            pan_barred: self.is_pan_barred(issuer, pan_fingerprint).await?,
            consumer: self.consumer(issuer, consumer).await?,
        })
    }
    /// The consumer's cards, oldest first.
    async fn cards_of_consumer(&mut self, issuer: &IssuerId, consumer: &ConsumerId) -> Result<Vec<Card>, StoreError>;
    /// Every card of the issuer carrying this PAN, in any state.
    async fn cards_with_pan(&mut self, issuer: &IssuerId, pan_fingerprint: &[u8]) -> Result<Vec<Card>, StoreError>;
    /// Inserts a new card with its credentials (and, for created cards, its accounts). Fails with
    /// [`StoreError::Conflict`] when the cardId is taken or another live card has the PAN.
    async fn insert_card(
        &mut self,
        issuer: &IssuerId,
        card: &Card,
        credentials: &VaultedCredentials,
        accounts: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Rewrites an existing card whole, credentials included (renewal; reuse of a final card's id).
    /// Fails with [`StoreError::Conflict`] when another live card has the PAN.
    async fn rewrite_card(
        &mut self,
        issuer: &IssuerId,
        card: &Card,
        credentials: &VaultedCredentials,
    ) -> Result<(), StoreError>;
    /// Updates the card's state and settings; its credentials stay as they are.
    async fn update_card(&mut self, issuer: &IssuerId, card: &Card) -> Result<(), StoreError>;

    /// The card's digital cards, oldest first.
    async fn digital_cards(&mut self, issuer: &IssuerId, card: &CardId) -> Result<Vec<DigitalCard>, StoreError>;
    async fn insert_digital_card(&mut self, issuer: &IssuerId, digital_card: &DigitalCard) -> Result<(), StoreError>;
    /// Sets one digital card's state; `false` when it is not in state `from` (anymore).
    async fn set_digital_card_state(
        &mut self,
        issuer: &IssuerId,
        id: &DigitalCardId,
        from: DigitalCardState,
        to: DigitalCardState,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Marks the card's digital cards `DELETED`.
    async fn delete_digital_cards(
        &mut self,
        issuer: &IssuerId,
        card: &CardId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Links the live digital cards of `from` to `to` (replace; renew onto a new cardId).
    async fn relink_digital_cards(
        &mut self,
        issuer: &IssuerId,
        from: &CardId,
        to: &CardId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    async fn is_pan_barred(&mut self, issuer: &IssuerId, pan_fingerprint: &[u8]) -> Result<bool, StoreError>;
    async fn bar_pan(
        &mut self,
        issuer: &IssuerId,
        pan_fingerprint: &[u8],
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    async fn append_history(
        &mut self,
        issuer: &IssuerId,
        card: &CardId,
        entry: &HistoryEntry,
    ) -> Result<(), StoreError>;
    /// The card's history, newest first.
    async fn history(&mut self, issuer: &IssuerId, card: &CardId) -> Result<Vec<HistoryEntry>, StoreError>;

    /// Adds an operation to the outbox, to be notified to the issuer.
    async fn enqueue_operation(&mut self, issuer: &IssuerId, operation: &Operation) -> Result<(), StoreError>;
    /// Records an operation whose notification cannot be sent, dead-lettered at `at` for `error`
    /// as if it had been attempted once: on the record, in no queue, until it is redelivered.
    async fn dead_letter_operation(
        &mut self,
        issuer: &IssuerId,
        operation: &Operation,
        at: OffsetDateTime,
        error: &str,
    ) -> Result<(), StoreError>;
    /// The issuer's operations in the order they happened, of one card or of all.
    async fn operations(&mut self, issuer: &IssuerId, card: Option<&CardId>) -> Result<Vec<Operation>, StoreError>;

    /// Claims an idempotency key for this transaction: forgets the key's record if it was made
    /// before `expired_before`, then inserts `claim` unless a record exists, which is returned
    /// instead. On PostgreSQL a concurrent claim of the same key waits for this transaction, then
    /// sees its record: a duplicate in flight is answered as a replay, never executed twice.
    async fn claim_idempotency_key(
        &mut self,
        issuer: &IssuerId,
        route: &str,
        key: &str,
        claim: &IdempotencyRecord,
        expired_before: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Records the outcome of the request that claimed the key.
    async fn complete_idempotency_key(
        &mut self,
        issuer: &IssuerId,
        route: &str,
        key: &str,
        outcome: &str,
    ) -> Result<(), StoreError>;
}

/// A worker's hold on the notifications it claimed: nobody else sends them until `until`, after
/// which (the worker died, or hangs) they can be claimed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until: OffsetDateTime,
}

/// How an attempt on a leased notification of card `card_id` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptEnded {
    pub operation_id: String,
    pub card_id: CardId,
    pub after: AfterAttempt,
}

/// The notification outbox, as the worker and the admin API see it (outbound.md §2).
///
/// A notification *can be sent now* when it is pending, due, not leased, and no earlier pending
/// notification of the same card is waiting for a retry or leased: so a card's notifications reach
/// the issuer in the order they happened. (A dead-lettered one does not hold the card's later ones
/// back; redelivering it is an operator's explicit act.)
#[async_trait]
pub trait OutboxTx: Send {
    /// The issuer of the card that has been ready to send the longest, if any card is ready now. A
    /// card is ready when its oldest pending notification is due and not leased (per-card order).
    async fn next_due_issuer(&mut self, now: OffsetDateTime) -> Result<Option<IssuerId>, StoreError>;
    /// Leases up to `limit` of the issuer's notifications that can be sent now, in the order they
    /// happened: from each of the cards ready the longest (at most `limit` of them), an even share of
    /// its oldest pending notifications, stopping before one that is not due or is leased. On
    /// PostgreSQL, concurrent claims for one issuer take turns and skip cards other transactions
    /// hold, so two workers never hold one notification, nor two notifications of one card.
    async fn claim_deliveries(
        &mut self,
        issuer: &IssuerId,
        now: OffsetDateTime,
        lease: &Lease,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Records how the attempts on notifications of `issuer` that `owner` leased ended, and releases
    /// them; each card's place in the queue is set once, after all of its notifications. The
    /// operationIds of those whose lease was lost meanwhile (it expired and another worker took the
    /// notification), which are left as they are.
    async fn record_attempts(
        &mut self,
        issuer: &IssuerId,
        owner: &str,
        attempted_at: OffsetDateTime,
        attempts: &[AttemptEnded],
    ) -> Result<Vec<String>, StoreError>;
    /// Dead-letters, with `error`, what [`OutboxTx::claim_deliveries`] would have leased (the same
    /// choice of cards and notifications), as one attempt made at `now`: for an issuer that cannot be
    /// sent anything (it has no callback settings), for which a lease would only be written to be
    /// released. Their operationIds, in the order they happened.
    async fn dead_letter_sendable(
        &mut self,
        issuer: &IssuerId,
        now: OffsetDateTime,
        limit: usize,
        error: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// The issuer's notifications in the order they happened, optionally only those in `state`.
    async fn deliveries(
        &mut self,
        issuer: &IssuerId,
        state: Option<DeliveryState>,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Queues a notification again, due at `now`, with a fresh retry schedule. Its issuer, or
    /// `None` for an unknown operationId.
    async fn redeliver(&mut self, operation_id: &str, now: OffsetDateTime) -> Result<Option<IssuerId>, StoreError>;
}

/// Operations acknowledged as `PENDING` that wait for the issuer (renew and replace for card
/// credentials, digitization for consumer information), claimed by workers under a lease like
/// notifications.
#[async_trait]
pub trait PendingTx: Send {
    async fn enqueue_pending(&mut self, issuer: &IssuerId, renewal: &PendingOperation) -> Result<(), StoreError>;
    /// Whether a pending operation is due at `now` (a read, so that idle workers poll without
    /// writing).
    async fn any_pending_due(&mut self, now: OffsetDateTime) -> Result<bool, StoreError>;
    /// Leases the oldest pending operation that is due at `now`, with its issuer.
    async fn claim_pending(
        &mut self,
        now: OffsetDateTime,
        lease: &Lease,
    ) -> Result<Option<(IssuerId, PendingOperation)>, StoreError>;
    /// Records the end of an attempt to complete a renewal `owner` leased: `Delivered` means done,
    /// `RetryAt` pending again, `Dead` failed. `false` when the lease was lost.
    async fn finish_pending_attempt(
        &mut self,
        operation_id: &str,
        owner: &str,
        after: &AfterAttempt,
    ) -> Result<bool, StoreError>;
}

/// What a unit of work returns, type-erased so that [`Store`] stays object-safe.
pub type Erased = Box<dyn Any + Send>;

/// A unit of work with its result type erased. Build one through [`StoreExt`].
pub type BoxedWork = Box<dyn for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<Erased, AppError>> + Send>;

/// Durable storage.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs `work` in a read-write transaction and returns only once its commit is durable. If the
    /// work fails, none of its writes are kept.
    async fn write_erased(&self, work: BoxedWork) -> Result<Erased, AppError>;

    /// Runs `work` on a consistent read-only snapshot.
    async fn read_erased(&self, work: BoxedWork) -> Result<Erased, AppError>;

    /// Whether the database answers and every migration this build knows is applied.
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// Finishes the work accepted so far and stops taking more.
    async fn close(&self);
}

/// Typed front of [`Store`]: `store.write(|tx| Box::pin(async move { ... }))`.
pub trait StoreExt {
    fn write<T, F>(&self, work: F) -> BoxFuture<'_, Result<T, AppError>>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, AppError>> + Send + 'static;

    fn read<T, F>(&self, work: F) -> BoxFuture<'_, Result<T, AppError>>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, AppError>> + Send + 'static;
}

fn erase<T, F>(work: F) -> BoxedWork
where
    T: Send + 'static,
    F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, AppError>> + Send + 'static,
{
    Box::new(move |tx| Box::pin(async move { work(tx).await.map(|value| Box::new(value) as Erased) }))
}

fn unerase<T: 'static>(value: Erased) -> T {
    *value.downcast::<T>().expect("a store returns the value its unit of work produced")
}

impl<S: Store + ?Sized> StoreExt for S {
    fn write<T, F>(&self, work: F) -> BoxFuture<'_, Result<T, AppError>>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, AppError>> + Send + 'static,
    {
        Box::pin(async move { self.write_erased(erase(work)).await.map(unerase) })
    }

    fn read<T, F>(&self, work: F) -> BoxFuture<'_, Result<T, AppError>>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, AppError>> + Send + 'static,
    {
        Box::pin(async move { self.read_erased(erase(work)).await.map(unerase) })
    }
}

/// The time. A port so that the sandbox and the tests can move it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock, truncated to microseconds (what both databases keep).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000).expect("a truncated nanosecond is valid")
    }
}

/// The wall clock moved by an offset that can be changed while running: the sandbox's clock, which
/// tests and sandbox users move forward (`clock:advance`) instead of waiting.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_micros: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock so that it reads `now` at this instant (it keeps running from there).
    pub fn set(&self, now: OffsetDateTime) {
        let offset = (now - SystemClock.now()).whole_microseconds();
        self.offset_micros.store(offset as i64, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance(&self, by: time::Duration) {
        self.offset_micros.fetch_add(by.whole_microseconds() as i64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> OffsetDateTime {
        let offset = self.offset_micros.load(std::sync::atomic::Ordering::SeqCst);
        SystemClock.now() + time::Duration::microseconds(offset)
    }
}

/// A sealed secret could not be opened: wrong master key, or tampered data.
#[derive(Debug, thiserror::Error)]
#[error("a sealed secret could not be opened (wrong master key or tampered data)")]
pub struct UnsealError;

/// Both vaults, as the store needs them (client secrets sealed; card expiry read from sealed
/// credentials). `jose::Vault` is both.
pub trait Vaults: KeyVault + CardDataVault {}

impl<T: KeyVault + CardDataVault> Vaults for T {}

/// Key material, held under the master key. Implemented by the `jose` adapter.
pub trait KeyVault: Send + Sync + 'static {
    /// Makes a new P-256 encryption key for `issuer`: its public half, and its private half sealed.
    fn new_encryption_key(&self, issuer: &IssuerId, now: OffsetDateTime) -> StoredEncryptionKey;

    /// Whether a P-256 public key an issuer gave us is a point on the curve.
    fn is_valid_public_key(&self, key: &P256PublicKey) -> bool;

    /// Encrypts a small secret under the master key, bound to `context` (which must be given again
    /// to open it, so that a sealed value cannot be moved to another row).
    fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8>;
    fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, UnsealError>;
}

/// Card credentials as stored: sealed under the master key, with a keyed fingerprint of the PAN for
/// uniqueness checks and the last four digits, the only part ever shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultedCredentials {
    pub sealed: Vec<u8>,
    pub pan_fingerprint: Vec<u8>,
    pub last4: String,
}

/// Card data: encrypted in transit (JWE) and at rest (the PAN vault). Implemented by `jose`.
pub trait CardDataVault: Send + Sync + 'static {
    /// Decrypts and checks `encryptedData` sent to one of the issuer's encryption keys (chosen by the
    /// JWE's `kid`; retired keys still decrypt). Refusals name `field` and never carry card data.
    fn decrypt_card_data(
        &self,
        issuer: &IssuerId,
        keys: &[StoredEncryptionKey],
        jwe: &str,
        field: &str,
    ) -> Result<CardCredentials, FieldError>;

    /// The `kid` that card data (a compact JWE) names in its header, if it has a readable one.
    fn key_id_of(&self, jwe: &str) -> Option<String>;

    /// Encrypts credentials as a compact JWE (`ECDH-ES`, `A256GCM`) to a recipient's P-256 key.
    fn encrypt_card_data(&self, credentials: &CardCredentials, recipient: &P256PublicKey, kid: &KeyId) -> String;

    /// Seals credentials for storage, with the PAN's fingerprint and last four digits.
    fn vault_credentials(&self, credentials: &CardCredentials) -> VaultedCredentials;
    fn open_credentials(&self, sealed: &[u8]) -> Result<CardCredentials, UnsealError>;
    /// The keyed fingerprint of a PAN (HMAC-SHA-256), equal for equal PANs.
    fn pan_fingerprint(&self, pan: &Pan) -> Vec<u8>;
}

/// An access token granted to an issuer.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: String,
    pub expires_in_seconds: i64,
    pub scope: String,
}

/// Issuer authentication: the JWT-bearer assertions issuers sign, and the access tokens cardplane
/// grants. Implemented by `jose`.
pub trait TokenService: Send + Sync + 'static {
    /// The `kid` and claims of an assertion, before any check of its signature.
    fn read_assertion(&self, assertion: &str) -> Result<(Option<String>, AssertionClaims), AssertionRefusal>;
    /// Checks the assertion is signed ES256 by `key`.
    fn verify_assertion(&self, assertion: &str, key: &P256PublicKey) -> Result<(), AssertionRefusal>;
    fn issue_access_token(&self, issuer: &IssuerId, now: OffsetDateTime) -> AccessToken;
    /// The issuer a token was granted to, if it is genuine and unexpired at `now`. Cheap after the
    /// first call for a token: verified tokens are cached until they expire.
    fn authenticate(&self, token: &str, now: OffsetDateTime) -> Option<IssuerId>;
}

/// The issuer's backend, as cardplane calls it (outbound.md). Implemented by `connectors`; only the
/// worker calls it, from durable records, never inside an issuer's request.
#[async_trait]
pub trait IssuerBackend: Send + Sync + 'static {
    /// One `POST {baseUrl}/notifications/d1/v2/issuers/{issuerId}/cards` with these operations, in
    /// this order (at most `maxBatchSize`), with the issuer's OAuth2 token when it has a client.
    async fn notify_operations(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        operations: &[Operation],
    ) -> AttemptOutcome;

    /// One `POST {baseUrl}/notifications/d1/v1/issuers/{issuerId}/digitalCards/{digitalCardId}/notifications`
    /// about `operation`, which names its digital card (outbound.md §4b; never batched).
    async fn notify_digital_card(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        operation: &Operation,
    ) -> AttemptOutcome;

    /// `GET {baseUrl}/banking/d1/v1/issuers/{issuerId}/consumers/{consumerId}?cardId=…`: the
    /// consumer's personal information, to be used and not kept.
    async fn consumer_information(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        consumer: &ConsumerId,
        card: Option<&CardId>,
    ) -> Result<PersonalInformation, AttemptOutcome>;

    /// `GET {baseUrl}/cms/api/v1/issuers/{issuerId}/cards/{cardId}/credentials`: the card's new
    /// credentials as the issuer's `encryptedData` (a JWE to one of the issuer's cardplane keys).
    async fn card_credentials(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        card: &CardId,
    ) -> Result<String, AttemptOutcome>;
}

/// The sealing context of an issuer's callback client secret.
pub fn client_secret_context(issuer: &IssuerId) -> String {
    format!("callback-client-secret:{issuer}")
}

/// The sealing context of an issuer's private encryption key.
pub fn encryption_key_context(issuer: &IssuerId, kid: &KeyId) -> String {
    format!("encryption-key:{issuer}:{kid}")
}
