//! Who is asking, and idempotency (platform.md §Idempotency).

use crate::AppError;
use crate::error::Refusal;
use crate::ports::{IdempotencyRecord, Tx};
use cardplane_domain::ids::IssuerId;
use time::{Duration, OffsetDateTime};

/// How long an idempotent request's answer is replayed.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::hours(24);

/// The marker a key carries while the request that claimed it runs (never seen committed).
const CLAIMED: &str = "CLAIMED";

/// An `Idempotency-Key` with the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    /// The route template the key is scoped to, e.g. `POST /banking/v2/issuers/{issuerId}/cards`.
    pub route: &'static str,
    /// A digest of the whole request (method, path, body): the same key with another request is
    /// refused.
    pub request_hash: Vec<u8>,
}

/// The caller of a banking use case.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub issuer: IssuerId,
    /// Recorded in history: `x-user-id` when sent, else the issuerId [D1].
    pub actor: String,
    pub correlation_id: String,
    pub idempotency: Option<IdempotencyKey>,
    /// Set when the worker completes an operation acknowledged earlier as `PENDING`: the
    /// operationId of that notification, linked from the one this change causes.
    pub completes: Option<String>,
}

/// A change that may have been answered before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done<T> {
    pub value: T,
    /// `true` when this is the stored answer of an earlier identical request.
    pub replayed: bool,
}

/// The outcome of a banking write, as stored for replay: nothing (204) or the id it made.
pub type Outcome = Option<String>;

fn encode(outcome: &Outcome) -> String {
    match outcome {
        None => "OK".to_owned(),
        Some(id) => format!("OK:{id}"),
    }
}

fn decode(stored: &str) -> Outcome {
    stored.strip_prefix("OK:").map(str::to_owned)
}

/// Claims the request's idempotency key inside `tx`. `Some` is the earlier answer to replay.
pub(crate) async fn claim(
    tx: &mut dyn Tx,
    ctx: &RequestContext,
    now: OffsetDateTime,
) -> Result<Option<Done<Outcome>>, AppError> {
    let Some(idempotency) = &ctx.idempotency else { return Ok(None) };
    let claim = IdempotencyRecord {
        request_hash: idempotency.request_hash.clone(),
        outcome: CLAIMED.to_owned(),
        created_at: now,
    };
    let existing = tx
        .claim_idempotency_key(&ctx.issuer, idempotency.route, &idempotency.key, &claim, now - IDEMPOTENCY_WINDOW)
        .await?;
    match existing {
        None => Ok(None),
        Some(record) if record.request_hash != idempotency.request_hash => Err(Refusal::IdempotencyKeyReused.into()),
        Some(record) => Ok(Some(Done { value: decode(&record.outcome), replayed: true })),
    }
}

/// Records the outcome under the request's idempotency key, in the same transaction as the change.
pub(crate) async fn complete(tx: &mut dyn Tx, ctx: &RequestContext, outcome: &Outcome) -> Result<(), AppError> {
    if let Some(idempotency) = &ctx.idempotency {
        tx.complete_idempotency_key(&ctx.issuer, idempotency.route, &idempotency.key, &encode(outcome)).await?;
    }
    Ok(())
}
