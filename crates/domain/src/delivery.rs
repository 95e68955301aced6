//! Delivering operations to the issuer (outbound.md §2): where a notification stands, and what
//! happens after an attempt. Pure decisions; the worker does the I/O and the store keeps the state.

use crate::operation::Operation;
use time::{Duration, OffsetDateTime};

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its first attempt or for a retry.
    Pending,
    /// The issuer acknowledged it (a 2xx).
    Delivered,
    /// Given up: the retry schedule ran out, or the issuer refused it with a 4xx that retrying cannot
    /// fix. Kept, shown by the admin API, and redeliverable from there.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "PENDING",
            DeliveryState::Delivered => "DELIVERED",
            DeliveryState::Dead => "DEAD",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Dead].into_iter().find(|d| d.as_str() == s)
    }
}

/// An operation with its delivery record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub operation: Operation,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_attempt_at: Option<OffsetDateTime>,
    /// Why the last attempt failed, in words fit for an operator (never card data).
    pub last_error: Option<String>,
    pub delivered_at: Option<OffsetDateTime>,
}

/// How one attempt to call the issuer ended, as the worker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx.
    Delivered,
    /// A timeout, a connection failure, 408, 429 or 5xx, or a failing token endpoint: worth trying
    /// again. `retry_after` is the issuer's `Retry-After`, when it sent one.
    Retryable { error: String, retry_after: Option<Duration> },
    /// Any other 4xx: the issuer will not take it however often it is sent.
    Rejected { error: String },
}

impl AttemptOutcome {
    /// Classifies an HTTP answer by its status code [outbound.md §2].
    pub fn from_status(status: u16, retry_after: Option<Duration>) -> AttemptOutcome {
        match status {
            200..=299 => AttemptOutcome::Delivered,
            408 | 429 | 500..=599 => {
                AttemptOutcome::Retryable { error: format!("the issuer answered HTTP {status}"), retry_after }
            }
            _ => AttemptOutcome::Rejected { error: format!("the issuer answered HTTP {status}") },
        }
    }
}

/// What becomes of a notification after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered { at: OffsetDateTime },
    RetryAt { at: OffsetDateTime, error: String },
    Dead { error: String },
}

/// The waits between attempts: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h, about 24 h in
/// all [outbound.md §2, ours after Svix]. The first attempt is immediate, so a notification gets at
/// most ten attempts.
pub const RETRY_SCHEDULE: [Duration; 9] = [
    Duration::seconds(5),
    Duration::seconds(30),
    Duration::minutes(2),
    Duration::minutes(10),
    Duration::minutes(30),
    Duration::hours(1),
    Duration::hours(3),
    Duration::hours(6),
    Duration::hours(12),
];

/// The longest `Retry-After` honoured; an issuer asking for more gets the schedule's longest wait.
pub const MAX_RETRY_AFTER: Duration = Duration::hours(12);

/// Decides what follows an attempt that was the `attempts`-th (counting from 1) and ended at `now`.
pub fn after_attempt(attempts: u32, outcome: AttemptOutcome, now: OffsetDateTime) -> AfterAttempt {
    match outcome {
        AttemptOutcome::Delivered => AfterAttempt::Delivered { at: now },
        AttemptOutcome::Rejected { error } => AfterAttempt::Dead { error },
        AttemptOutcome::Retryable { error, retry_after } => {
            let Some(&scheduled) = RETRY_SCHEDULE.get(attempts.saturating_sub(1) as usize) else {
                return AfterAttempt::Dead { error: format!("{error}; gave up after {attempts} attempts") };
            };
            let wait = retry_after.map_or(scheduled, |asked| asked.clamp(Duration::ZERO, MAX_RETRY_AFTER));
            AfterAttempt::RetryAt { at: now + wait, error }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    fn retryable() -> AttemptOutcome {
        AttemptOutcome::Retryable { error: "HTTP 503".into(), retry_after: None }
    }

    #[test]
    fn the_schedule_is_svix_like_and_lasts_about_a_day() {
        let total: Duration = RETRY_SCHEDULE.iter().copied().sum();
        assert_eq!(total, Duration::seconds(5 + 30 + 120 + 600 + 1800 + 3600 + 3 * 3600 + 6 * 3600 + 12 * 3600));
        assert!(total > Duration::hours(22) && total < Duration::hours(24), "about a day: {total}");
        let waits: Vec<Duration> = (1..=9)
            .map(|n| match after_attempt(n, retryable(), NOW) {
                AfterAttempt::RetryAt { at, .. } => at - NOW,
                other => panic!("attempt {n}: {other:?}"),
            })
            .collect();
        assert_eq!(waits, RETRY_SCHEDULE);
        assert!(
            matches!(after_attempt(10, retryable(), NOW), AfterAttempt::Dead { error } if error.contains("10 attempts"))
        );
    }

    #[test]
    fn statuses_are_classified_as_outbound_md_says() {
        for ok in [200, 202, 204] {
            assert_eq!(AttemptOutcome::from_status(ok, None), AttemptOutcome::Delivered);
        }
        for again in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(AttemptOutcome::from_status(again, None), AttemptOutcome::Retryable { .. }), "{again}");
        }
        for never in [400, 401, 403, 404, 409, 410, 422, 301] {
            assert!(matches!(AttemptOutcome::from_status(never, None), AttemptOutcome::Rejected { .. }), "{never}");
        }
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let asked =
            |after| after_attempt(1, AttemptOutcome::Retryable { error: "429".into(), retry_after: after }, NOW);
        assert!(
            matches!(asked(Some(Duration::seconds(120))), AfterAttempt::RetryAt { at, .. } if at == NOW + Duration::seconds(120))
        );
        assert!(
            matches!(asked(Some(Duration::days(9))), AfterAttempt::RetryAt { at, .. } if at == NOW + MAX_RETRY_AFTER)
        );
        assert!(matches!(asked(Some(Duration::seconds(-3))), AfterAttempt::RetryAt { at, .. } if at == NOW));
    }

    proptest! {
        /// Whatever the issuer answers, a notification is never retried forever and never dropped
        /// without a word: every failure ends in a retry later than now, or a dead letter with the reason.
        #[test]
        fn every_failure_is_retried_later_or_dead_lettered(
            statuses in proptest::collection::vec(100u16..600, 1..20),
            retry_after in proptest::option::of(0i64..100_000),
        ) {
            let mut now = NOW;
            for (i, status) in statuses.iter().enumerate() {
                let attempts = u32::try_from(i + 1).unwrap();
                match after_attempt(attempts, AttemptOutcome::from_status(*status, retry_after.map(Duration::seconds)), now) {
                    AfterAttempt::Delivered { at } => { prop_assert_eq!(at, now); prop_assert!((200..300).contains(status)); return Ok(()); }
                    AfterAttempt::RetryAt { at, error } => { prop_assert!(at >= now); prop_assert!(attempts < 10); prop_assert!(!error.is_empty()); now = at; }
                    AfterAttempt::Dead { error } => { prop_assert!(!error.is_empty()); return Ok(()); }
                }
            }
        }
    }
}
