//! The outbox contract, run on both backends: claims, per-card order, leases, attempts, redelivery.

use cardplane_app::ports::{AttemptEnded, Lease, Store, StoreExt};
use cardplane_domain::card::{CardState, OperationKind};
use cardplane_domain::delivery::{AfterAttempt, Delivery, DeliveryState};
use cardplane_domain::ids::{CardId, IssuerId};
use cardplane_domain::operation::{HistoryEntry, Operation, OperationStatus};
use cardplane_testkit::{Backend, TestDatabase, backend_tests, test_vault};
use common::migrate_up_to;
use std::collections::HashSet;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

mod common;

async fn open(db: &TestDatabase) -> Arc<dyn Store> {
    cardplane_store::open(&db.url, test_vault()).await.expect("the store opens")
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

fn issuer(id: &str) -> IssuerId {
    IssuerId::parse(id).unwrap()
}

/// Queues `(operationId, cardId)` notifications for `issuer`, all due at `at(0)`.
async fn enqueue(store: &Arc<dyn Store>, issuer_id: &str, operations: &[(&str, &str)]) {
    enqueue_at(store, issuer_id, operations, 0).await;
}

/// Queues `(operationId, cardId)` notifications for `issuer`, all due at `at(seconds)`.
async fn enqueue_at(store: &Arc<dyn Store>, issuer_id: &str, operations: &[(&str, &str)], seconds: i64) {
    let issuer_id = issuer(issuer_id);
    let operations: Vec<Operation> = operations
        .iter()
        .map(|(id, card)| Operation {
            operation_id: (*id).to_owned(),
            card_id: CardId::parse(*card).unwrap(),
            kind: OperationKind::Suspend,
            status: OperationStatus::Successful,
            start_time: at(seconds),
            end_time: Some(at(seconds)),
            details: None,
            digital_card_id: None,
        })
        .collect();
    store
        .write(move |tx| {
            Box::pin(async move {
                for operation in &operations {
                    tx.enqueue_operation(&issuer_id, operation).await?;
                }
                Ok(())
            })
        })
        .await
        .unwrap();
}

fn lease(owner: &str, until: OffsetDateTime) -> Lease {
    Lease { owner: owner.to_owned(), until }
}

async fn claim(store: &Arc<dyn Store>, issuer_id: &str, now: OffsetDateTime, owner: &str, limit: usize) -> Vec<String> {
    let issuer_id = issuer(issuer_id);
    let lease = lease(owner, now + Duration::seconds(60));
    let claimed: Vec<Delivery> = store
        .write(move |tx| Box::pin(async move { Ok(tx.claim_deliveries(&issuer_id, now, &lease, limit).await?) }))
        .await
        .unwrap();
    claimed.into_iter().map(|d| d.operation.operation_id).collect()
}

/// Records how the attempts on `(operationId, cardId, after)` of `issuer_id`, leased by `owner`,
/// ended: `true` if `owner` still held them all.
async fn record(
    store: &Arc<dyn Store>,
    issuer_id: &str,
    owner: &str,
    now: OffsetDateTime,
    attempts: &[(&str, &str, AfterAttempt)],
) -> bool {
    record_lost(store, issuer_id, owner, now, attempts).await.is_empty()
}

/// [`record`], answering which operationIds' leases were lost.
async fn record_lost(
    store: &Arc<dyn Store>,
    issuer_id: &str,
    owner: &str,
    now: OffsetDateTime,
    attempts: &[(&str, &str, AfterAttempt)],
) -> Vec<String> {
    let (issuer_id, owner) = (issuer(issuer_id), owner.to_owned());
    let attempts: Vec<AttemptEnded> = attempts
        .iter()
        .map(|(id, card, after)| AttemptEnded {
            operation_id: (*id).to_owned(),
            card_id: CardId::parse(*card).unwrap(),
            after: after.clone(),
        })
        .collect();
    store
        .write(move |tx| Box::pin(async move { Ok(tx.record_attempts(&issuer_id, &owner, now, &attempts).await?) }))
        .await
        .unwrap()
}

/// Dead-letters what `issuer_id` could be sent at `now`, `limit` at most.
async fn dead_letter(store: &Arc<dyn Store>, issuer_id: &str, now: OffsetDateTime, limit: usize) -> Vec<String> {
    let issuer_id = issuer(issuer_id);
    store
        .write(move |tx| {
            Box::pin(async move { Ok(tx.dead_letter_sendable(&issuer_id, now, limit, "no callback").await?) })
        })
        .await
        .unwrap()
}

async fn deliveries(store: &Arc<dyn Store>, issuer_id: &str, state: Option<DeliveryState>) -> Vec<Delivery> {
    let issuer_id = issuer(issuer_id);
    store.read(move |tx| Box::pin(async move { Ok(tx.deliveries(&issuer_id, state).await?) })).await.unwrap()
}

async fn next_due(store: &Arc<dyn Store>, now: OffsetDateTime) -> Option<IssuerId> {
    store.read(move |tx| Box::pin(async move { Ok(tx.next_due_issuer(now).await?) })).await.unwrap()
}

backend_tests! {
    async fn claims_come_oldest_first_in_batches_and_are_leased(db: TestDatabase) {
        let store = open(&db).await;
        enqueue(&store, "ISSUER000A", &[("op-1", "card-1"), ("op-2", "card-2"), ("op-3", "card-3")]).await;
        enqueue(&store, "ISSUER000B", &[("op-4", "card-4")]).await;
        assert_eq!(next_due(&store, at(-1)).await, None, "nothing is due before its time");
        assert_eq!(next_due(&store, at(0)).await, Some(issuer("ISSUER000A")));
        assert_eq!(claim(&store, "ISSUER000A", at(0), "w1", 2).await, ["op-1", "op-2"]);
        assert_eq!(claim(&store, "ISSUER000A", at(0), "w2", 10).await, ["op-3"], "leased ones are not claimed twice");
        assert_eq!(claim(&store, "ISSUER000A", at(1), "w2", 10).await, Vec::<String>::new());
        assert_eq!(next_due(&store, at(0)).await, Some(issuer("ISSUER000B")));
        // A worker that died: its lease runs out and the notifications can be claimed again.
        assert_eq!(claim(&store, "ISSUER000A", at(61), "w3", 10).await, ["op-1", "op-2", "op-3"]);
        let delivered = AfterAttempt::Delivered { at: at(62) };
        assert_eq!(
            record_lost(&store, "ISSUER000A", "w1", at(62), &[("op-1", "card-1", delivered.clone())]).await,
            ["op-1"],
            "w1 lost its lease"
        );
        assert!(record(&store, "ISSUER000A", "w3", at(62), &[("op-1", "card-1", delivered)]).await);
        let all = deliveries(&store, "ISSUER000A", None).await;
        assert_eq!(all.iter().map(|d| d.state).collect::<Vec<_>>(), [DeliveryState::Delivered, DeliveryState::Pending, DeliveryState::Pending]);
        assert_eq!(all[0].attempts, 1);
        assert_eq!(all[0].delivered_at, Some(at(62)));
        assert_eq!(all[0].next_attempt_at, None);
    }

    async fn a_cards_notifications_go_out_in_order(db: TestDatabase) {
        let store = open(&db).await;
        enqueue(&store, "ISSUER000A", &[("a-1", "card-a"), ("b-1", "card-b"), ("a-2", "card-a"), ("a-3", "card-a")]).await;
        // Claimed together, they stay in order within the batch.
        assert_eq!(claim(&store, "ISSUER000A", at(0), "w1", 10).await, ["a-1", "b-1", "a-2", "a-3"]);
        // a-1 fails and waits for a retry; a-2 and a-3 must wait behind it, b-1 need not.
        let retry = AfterAttempt::RetryAt { at: at(5), error: "HTTP 503".into() };
        let attempts = [("a-1", "card-a"), ("b-1", "card-b"), ("a-2", "card-a"), ("a-3", "card-a")]
            .map(|(id, card)| (id, card, retry.clone()));
        assert!(record(&store, "ISSUER000A", "w1", at(0), &attempts).await);
        assert_eq!(claim(&store, "ISSUER000A", at(4), "w1", 10).await, Vec::<String>::new());
        assert_eq!(claim(&store, "ISSUER000A", at(5), "w1", 1).await, ["a-1"]);
        // While a-1 is out, a later notification of its card is not handed to another worker.
        assert_eq!(claim(&store, "ISSUER000A", at(5), "w2", 10).await, ["b-1"]);
        assert!(record(&store, "ISSUER000A", "w1", at(6), &[("a-1", "card-a", AfterAttempt::Dead { error: "HTTP 400".into() })]).await);
        // A dead letter does not hold the card's later notifications back.
        assert_eq!(claim(&store, "ISSUER000A", at(6), "w2", 10).await, ["a-2", "a-3"]);
        let dead = deliveries(&store, "ISSUER000A", Some(DeliveryState::Dead)).await;
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].attempts, dead[0].last_error.as_deref()), (2, Some("HTTP 400")));
    }

    async fn claims_agree_with_the_per_card_order_rule_whatever_happens(db: TestDatabase) {
        // The look for work spans issuers, so each walk has a database of its own.
        random_walk(&open(&db).await, 1, 300).await;
        for seed in [7, 42] {
            random_walk(&open(&TestDatabase::new(db.backend).await).await, seed, 300).await;
        }
    }

    async fn a_held_card_does_not_hide_the_cards_behind_it(db: TestDatabase) {
        let store = open(&db).await;
        // card-a has a long backlog and is out with w1; card-b's one notification is the newest.
        let backlog: Vec<(String, &str)> = (0..200).map(|i| (format!("a-{i:03}"), "card-a")).collect();
        let backlog: Vec<(&str, &str)> = backlog.iter().map(|(id, card)| (id.as_str(), *card)).collect();
        enqueue(&store, "ISSUER000A", &backlog).await;
        assert_eq!(claim(&store, "ISSUER000A", at(0), "w1", 3).await, ["a-000", "a-001", "a-002"]);
        enqueue(&store, "ISSUER000A", &[("b-1", "card-b")]).await;
        assert_eq!(claim(&store, "ISSUER000A", at(0), "w2", 3).await, ["b-1"]);
        assert_eq!(claim(&store, "ISSUER000A", at(0), "w3", 3).await, Vec::<String>::new());
        assert_eq!(next_due(&store, at(0)).await, None, "both cards are out");
        // Delivering part of w1's run keeps the card held by the rest of it.
        let delivered = AfterAttempt::Delivered { at: at(1) };
        assert!(record(&store, "ISSUER000A", "w1", at(1), &[("a-000", "card-a", delivered.clone())]).await);
        assert_eq!(claim(&store, "ISSUER000A", at(1), "w3", 3).await, Vec::<String>::new());
        let rest = [("a-001", "card-a", delivered.clone()), ("a-002", "card-a", delivered)];
        assert!(record(&store, "ISSUER000A", "w1", at(1), &rest).await);
        assert_eq!(next_due(&store, at(1)).await, Some(issuer("ISSUER000A")));
        assert_eq!(claim(&store, "ISSUER000A", at(1), "w3", 2).await, ["a-003", "a-004"]);
    }

    async fn an_outbox_from_before_the_delivery_queue_is_queued_on_upgrade(db: TestDatabase) {
        // Three cards as migration 0008 left them: card-a delivered one, has one out with a worker
        // until t=500 and one behind it; card-b has one due at t=300; card-c only a dead letter.
        let t = |seconds: i64| (1_800_000_000 + seconds) * 1_000_000;
        let outbox = format!(
            "INSERT INTO operations (issuer_id, operation_id, card_id, operation, status, start_time, delivery_state, \
             created_at, next_attempt_at, lease_owner, lease_until) VALUES \
             ('ISSUER000A', 'a-1', 'card-a', 'SUSPEND', 'SUCCESSFUL', {0}, 'DELIVERED', {0}, NULL, NULL, NULL), \
             ('ISSUER000A', 'a-2', 'card-a', 'RESUME', 'SUCCESSFUL', {0}, 'PENDING', {0}, {1}, 'w1', {2}), \
             ('ISSUER000A', 'a-3', 'card-a', 'SUSPEND', 'SUCCESSFUL', {0}, 'PENDING', {0}, {0}, NULL, NULL), \
             ('ISSUER000B', 'b-1', 'card-b', 'SUSPEND', 'SUCCESSFUL', {0}, 'PENDING', {0}, {3}, NULL, NULL), \
             ('ISSUER000B', 'c-1', 'card-c', 'SUSPEND', 'SUCCESSFUL', {0}, 'DEAD', {0}, NULL, NULL, NULL)",
            t(0),
            t(100),
            t(500),
            t(300)
        );
        migrate_up_to(&db, 8, &outbox).await;
        let store = open(&db).await;
        assert_eq!(next_due(&store, at(299)).await, None, "card-a is out, card-b not due yet");
        assert_eq!(next_due(&store, at(300)).await, Some(issuer("ISSUER000B")));
        assert_eq!(claim(&store, "ISSUER000B", at(300), "w2", 10).await, ["b-1"]);
        assert_eq!(claim(&store, "ISSUER000A", at(499), "w2", 10).await, Vec::<String>::new());
        assert_eq!(claim(&store, "ISSUER000A", at(500), "w2", 10).await, ["a-2", "a-3"], "w1's lease ran out");
    }

    async fn history_and_outbox_keep_their_order_across_the_upgrade_to_plain_rowids(db: TestDatabase) {
        // As migration 0011 left them (SQLite's seq still AUTOINCREMENT): two history lines and two
        // notifications of card-a, the first delivered.
        let t = (1_800_000_000_i64) * 1_000_000;
        let before = format!(
            "INSERT INTO card_history (issuer_id, card_id, operation_id, operation, from_state, to_state, actor, \
             correlation_id, at) VALUES \
             ('ISSUER000A', 'card-a', 'a-1', 'REGISTER', NULL, 'ACTIVE', 'bank', 'c1', {t}), \
             ('ISSUER000A', 'card-a', 'a-2', 'SUSPEND', 'ACTIVE', 'SUSPENDED', 'bank', 'c2', {t}); \
             INSERT INTO operations (issuer_id, operation_id, card_id, operation, status, start_time, delivery_state, \
             created_at, next_attempt_at) VALUES \
             ('ISSUER000A', 'a-1', 'card-a', 'REGISTER', 'SUCCESSFUL', {t}, 'DELIVERED', {t}, NULL), \
             ('ISSUER000A', 'a-2', 'card-a', 'SUSPEND', 'SUCCESSFUL', {t}, 'PENDING', {t}, {t});"
        );
        migrate_up_to(&db, 11, &before).await;
        let store = open(&db).await;
        enqueue(&store, "ISSUER000A", &[("a-3", "card-a")]).await;
        let card = CardId::parse("card-a").unwrap();
        let resumed = HistoryEntry {
            operation_id: "a-3".to_owned(),
            operation: OperationKind::Resume,
            from_state: Some(CardState::Suspended),
            to_state: CardState::Active,
            reason_code: None,
            reason: None,
            actor: "bank".to_owned(),
            correlation_id: "c3".to_owned(),
            at: at(0),
        };
        let (history, outbox) = store
            .write(move |tx| {
                Box::pin(async move {
                    let issuer = issuer("ISSUER000A");
                    tx.append_history(&issuer, &card, &resumed).await?;
                    Ok((tx.history(&issuer, &card).await?, tx.operations(&issuer, Some(&card)).await?))
                })
            })
            .await
            .unwrap();
        let ids = |ids: Vec<&str>| ids.into_iter().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(history.into_iter().map(|h| h.operation_id).collect::<Vec<_>>(), ids(vec!["a-3", "a-2", "a-1"]));
        assert_eq!(outbox.into_iter().map(|o| o.operation_id).collect::<Vec<_>>(), ids(vec!["a-1", "a-2", "a-3"]));
        assert_eq!(claim(&store, "ISSUER000A", at(0), "w1", 10).await, ["a-2", "a-3"], "new notifications queue behind");
    }

    async fn redelivery_queues_a_dead_letter_again(db: TestDatabase) {
        let store = open(&db).await;
        enqueue(&store, "ISSUER000A", &[("op-1", "card-1")]).await;
        claim(&store, "ISSUER000A", at(0), "w1", 10).await;
        record(&store, "ISSUER000A", "w1", at(0), &[("op-1", "card-1", AfterAttempt::Dead { error: "HTTP 404".into() })]).await;
        assert_eq!(next_due(&store, at(100)).await, None, "a dead letter is not retried by itself");
        let redelivered = store
            .write(|tx| Box::pin(async move { Ok(tx.redeliver("op-1", at(100)).await?) }))
            .await
            .unwrap();
        assert_eq!(redelivered, Some(issuer("ISSUER000A")));
        let unknown = store.write(|tx| Box::pin(async move { Ok(tx.redeliver("nope", at(100)).await?) })).await.unwrap();
        assert_eq!(unknown, None);
        let again = &deliveries(&store, "ISSUER000A", None).await[0];
        assert_eq!((again.state, again.attempts, again.next_attempt_at), (DeliveryState::Pending, 0, Some(at(100))));
        assert_eq!(again.last_error.as_deref(), Some("HTTP 404"), "the last error stays visible");
        assert_eq!(claim(&store, "ISSUER000A", at(100), "w1", 10).await, ["op-1"]);
    }

    async fn what_could_go_to_an_issuer_without_a_callback_is_dead_lettered_at_once(db: TestDatabase) {
        let store = open(&db).await;
        // card-c's first notification is out with a worker (it had a callback then).
        enqueue(&store, "ISSUER000A", &[("c-1", "card-c")]).await;
        assert_eq!(claim(&store, "ISSUER000A", at(0), "w1", 1).await, ["c-1"]);
        enqueue(&store, "ISSUER000A", &[("a-1", "card-a"), ("b-1", "card-b"), ("a-2", "card-a"), ("c-2", "card-c")]).await;
        enqueue(&store, "ISSUER000B", &[("x-1", "card-x")]).await;
        assert_eq!(dead_letter(&store, "ISSUER000A", at(1), 10).await, ["a-1", "b-1", "a-2"], "c-2 waits behind c-1");
        let dead = deliveries(&store, "ISSUER000A", Some(DeliveryState::Dead)).await;
        for letter in &dead {
            assert_eq!((letter.attempts, letter.last_error.as_deref()), (1, Some("no callback")));
            assert_eq!((letter.last_attempt_at, letter.next_attempt_at), (Some(at(1)), None));
        }
        assert_eq!(next_due(&store, at(1)).await, Some(issuer("ISSUER000B")), "the other issuer is untouched");
        assert!(record(&store, "ISSUER000A", "w1", at(2), &[("c-1", "card-c", AfterAttempt::Delivered { at: at(2) })]).await);
        assert_eq!(dead_letter(&store, "ISSUER000A", at(2), 10).await, ["c-2"]);
        // No more than asked for, oldest first; the rest stays queued.
        enqueue(&store, "ISSUER000A", &[("d-1", "card-d"), ("d-2", "card-d"), ("d-3", "card-d")]).await;
        assert_eq!(dead_letter(&store, "ISSUER000A", at(3), 2).await, ["d-1", "d-2"]);
        let pending = deliveries(&store, "ISSUER000A", Some(DeliveryState::Pending)).await;
        assert_eq!(pending.iter().map(|d| d.operation.operation_id.as_str()).collect::<Vec<_>>(), ["d-3"]);
        assert_eq!(dead_letter(&store, "ISSUER000A", at(3), 2).await, ["d-3"]);
        assert_eq!(dead_letter(&store, "ISSUER000A", at(3), 2).await, Vec::<String>::new());
        assert_eq!(next_due(&store, at(3)).await, Some(issuer("ISSUER000B")));
    }
}

/// Many workers claiming at once from one PostgreSQL never hold the same notification, and never
/// hold two notifications of one card at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_on_postgres_never_overlap() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let store = open(&db).await;
    let ids: Vec<(String, String)> = (0..300).map(|i| (format!("op-{i:03}"), format!("card-{}", i % 30))).collect();
    let pairs: Vec<(&str, &str)> = ids.iter().map(|(o, c)| (o.as_str(), c.as_str())).collect();
    enqueue(&store, "ISSUER000A", &pairs).await;

    let card_of = |id: &str| id[3..].parse::<usize>().unwrap() % 30;
    let cards_out = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let workers = (0..6).map(|w| {
        let (store, cards_out) = (store.clone(), cards_out.clone());
        tokio::spawn(async move {
            let owner = format!("w{w}");
            let mut claims = Vec::new();
            loop {
                let batch = claim(&store, "ISSUER000A", at(0), &owner, 7).await;
                if batch.is_empty() {
                    break;
                }
                claims.push(batch.clone());
                let cards: HashSet<usize> = batch.iter().map(|id| card_of(id)).collect();
                for card in &cards {
                    assert!(cards_out.lock().unwrap().insert(*card), "card-{card} is out with two workers");
                }
                tokio::task::yield_now().await;
                for card in &cards {
                    cards_out.lock().unwrap().remove(card);
                }
                let cards: Vec<String> = batch.iter().map(|id| format!("card-{}", card_of(id))).collect();
                let attempts: Vec<(&str, &str, AfterAttempt)> = batch
                    .iter()
                    .zip(&cards)
                    .map(|(id, card)| (id.as_str(), card.as_str(), AfterAttempt::Delivered { at: at(0) }))
                    .collect();
                assert!(record(&store, "ISSUER000A", &owner, at(0), &attempts).await);
            }
            claims
        })
    });
    let mut seen = HashSet::new();
    let mut batches = 0;
    for worker in workers {
        for batch in worker.await.unwrap() {
            batches += 1;
            for id in batch {
                assert!(seen.insert(id.clone()), "{id} was claimed twice");
            }
        }
    }
    assert_eq!(seen.len(), 300, "every notification was claimed once");
    assert!(batches >= 300 / 7);
    assert!(deliveries(&store, "ISSUER000A", None).await.iter().all(|d| d.state == DeliveryState::Delivered));
}

/// What the outbox holds, as the test sees it: the rule the store must follow, written plainly.
#[derive(Clone, Debug)]
struct Notification {
    id: String,
    issuer: String,
    card: &'static str,
    delivered_or_dead: bool,
    next_attempt: i64,
    lease: Option<(String, i64)>,
}

/// The notifications that may go at `now`, per the per-card order rule: a card's pending ones,
/// oldest first, up to the first that is not due or is leased.
fn sendable(model: &[Notification], issuer_id: &str, now: i64) -> Vec<String> {
    let mut held: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for n in model.iter().filter(|n| n.issuer == issuer_id && !n.delivered_or_dead) {
        let leased = n.lease.as_ref().is_some_and(|(_, until)| *until > now);
        if held.contains(n.card) || n.next_attempt > now || leased {
            held.insert(n.card);
        } else {
            out.push(n.id.clone());
        }
    }
    out
}

/// Checks what a claim (or a dead-lettering) took for `issuer_id` at `now` against the per-card
/// order rule: something if anything may go, no more than `limit`, nothing that may not go, in the
/// order they happened, and nothing of a card without what may go before it on that card.
fn check_taken(model: &[Notification], issuer_id: &str, now: i64, taken: &[String], limit: usize, context: &str) {
    let may = sendable(model, issuer_id, now);
    let position = |id: &str| model.iter().position(|n| n.id == id).unwrap();
    assert!(taken.len() <= limit, "{context}: {} taken, limit {limit}", taken.len());
    assert_eq!(taken.is_empty(), may.is_empty(), "{context}: took {taken:?}, sendable {may:?}");
    let positions: Vec<usize> = taken.iter().map(|id| position(id)).collect();
    assert!(positions.is_sorted(), "{context}: {taken:?} is not in the order they happened");
    for id in taken {
        assert!(may.contains(id), "{context}: {id} was taken but may not go ({may:?})");
        let card = model[position(id)].card;
        let before = may.iter().take_while(|m| *m != id).filter(|m| model[position(m)].card == card);
        for earlier in before {
            assert!(taken.contains(earlier), "{context}: {id} taken without {earlier}");
        }
    }
}

/// A deterministic random walk of enqueues, claims, attempts (some after their lease ran out) and
/// redeliveries over two issuers and five cards, checking every claim and every look for work
/// against [`sendable`]: nothing out of order, nothing sendable left behind.
async fn random_walk(store: &Arc<dyn Store>, seed: u64, steps: usize) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut random = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let issuers = [format!("ISSUER{seed:03}A"), format!("ISSUER{seed:03}B")];
    let cards = ["c1", "c2", "c3", "c4", "c5"];
    let mut model: Vec<Notification> = Vec::new();
    let mut out: Vec<(String, String)> = Vec::new(); // (operationId, owner) claims not yet recorded
    let mut now = 0i64;
    for step in 0..steps {
        now += i64::try_from(random(3)).unwrap();
        let context = format!("seed {seed}, step {step}, t={now}");
        let choice = random(11);
        if std::env::var_os("TRACE_WALK").is_some() {
            eprintln!("{context}: {choice} {model:?}");
        }
        let position = |model: &[Notification], id: &str| model.iter().position(|n| n.id == id).unwrap();
        match choice {
            0..=2 => {
                let (issuer_id, card) = (issuers[random(2) as usize].clone(), cards[random(5) as usize]);
                let id = format!("s{seed}-{step}");
                enqueue_at(store, &issuer_id, &[(&id, card)], now).await;
                model.push(Notification {
                    id,
                    issuer: issuer_id,
                    card,
                    delivered_or_dead: false,
                    next_attempt: now,
                    lease: None,
                });
            }
            3..=5 => {
                let anything = issuers.iter().any(|i| !sendable(&model, i, now).is_empty());
                let due = next_due(store, at(now)).await;
                assert_eq!(due.is_some(), anything, "{context}: the look for work");
                if let Some(due) = due {
                    assert!(!sendable(&model, due.as_str(), now).is_empty(), "{context}: {due} has nothing to send");
                }
                let issuer_id = issuers[random(2) as usize].as_str();
                let owner = format!("w{}", random(3));
                let limit = 1 + random(5) as usize;
                let claimed = claim(store, issuer_id, at(now), &owner, limit).await;
                check_taken(&model, issuer_id, now, &claimed, limit, &format!("{context}: claim"));
                for id in claimed {
                    let p = position(&model, &id);
                    model[p].lease = Some((owner.clone(), now + 60));
                    out.push((id, owner.clone()));
                }
            }
            6..=8 if !out.is_empty() => {
                // A worker records one attempt, or several of one issuer's at once.
                let (id, owner) = out.swap_remove(random(out.len() as u64) as usize);
                let issuer_id = model[position(&model, &id)].issuer.clone();
                let mut ids = vec![id];
                while random(2) == 0 {
                    let same =
                        |(id, o): &(String, String)| *o == owner && model[position(&model, id)].issuer == issuer_id;
                    let Some(i) = out.iter().position(same) else { break };
                    ids.push(out.swap_remove(i).0);
                }
                let mut attempts = Vec::new();
                let mut expected_lost = Vec::new();
                for id in &ids {
                    let after = match random(3) {
                        0 => AfterAttempt::Delivered { at: at(now) },
                        1 => AfterAttempt::RetryAt {
                            at: at(now + 1 + i64::try_from(random(4)).unwrap()),
                            error: "HTTP 503".into(),
                        },
                        _ => AfterAttempt::Dead { error: "HTTP 400".into() },
                    };
                    // The model takes them one by one, as the store must.
                    let p = position(&model, id);
                    let n = &mut model[p];
                    let holds = n.lease.as_ref().is_some_and(|(o, _)| *o == owner) && !n.delivered_or_dead;
                    if holds {
                        n.lease = None;
                        match &after {
                            AfterAttempt::RetryAt { at: when, .. } => {
                                n.next_attempt = when.unix_timestamp() - 1_800_000_000
                            }
                            _ => n.delivered_or_dead = true,
                        }
                    } else {
                        expected_lost.push(id.clone());
                    }
                    attempts.push((id.as_str(), n.card, after));
                }
                let lost = record_lost(store, &issuer_id, &owner, at(now), &attempts).await;
                assert_eq!(lost, expected_lost, "{context}: record {ids:?} by {owner}");
            }
            9 => {
                // An issuer without callback settings: what could go is dead-lettered.
                let issuer_id = issuers[random(2) as usize].as_str();
                let limit = 1 + random(5) as usize;
                let dead = dead_letter(store, issuer_id, at(now), limit).await;
                check_taken(&model, issuer_id, now, &dead, limit, &format!("{context}: dead-lettering"));
                for id in dead {
                    let p = position(&model, &id);
                    (model[p].delivered_or_dead, model[p].lease) = (true, None);
                }
            }
            _ if !model.is_empty() => {
                // Now and then a long pause lets every lease run out.
                if random(8) == 0 {
                    now += 61;
                }
                let p = random(model.len() as u64) as usize;
                let id = model[p].id.clone();
                let redelivered = store.write(move |tx| Box::pin(async move { Ok(tx.redeliver(&id, at(now)).await?) }));
                assert_eq!(redelivered.await.unwrap().map(|i| i.to_string()), Some(model[p].issuer.clone()));
                let n = &mut model[p];
                (n.delivered_or_dead, n.next_attempt, n.lease) = (false, now, None);
            }
            _ => {}
        }
    }
}
