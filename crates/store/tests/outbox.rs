//! The outbox contract, run on both backends: claims, per-card order, leases, attempts, redelivery.

use cardplane_app::ports::{Lease, Store, StoreExt};
use cardplane_domain::card::OperationKind;
use cardplane_domain::delivery::{AfterAttempt, Delivery, DeliveryState};
use cardplane_domain::ids::{CardId, IssuerId};
use cardplane_domain::operation::{Operation, OperationStatus};
use cardplane_testkit::{Backend, TestDatabase, backend_tests, test_vault};
use std::collections::HashSet;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

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
    let issuer_id = issuer(issuer_id);
    let operations: Vec<Operation> = operations
        .iter()
        .map(|(id, card)| Operation {
            operation_id: (*id).to_owned(),
            card_id: CardId::parse(*card).unwrap(),
            kind: OperationKind::Suspend,
            status: OperationStatus::Successful,
            start_time: at(0),
            end_time: Some(at(0)),
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

async fn record(
    store: &Arc<dyn Store>,
    operation_id: &str,
    owner: &str,
    now: OffsetDateTime,
    after: AfterAttempt,
) -> bool {
    let (operation_id, owner) = (operation_id.to_owned(), owner.to_owned());
    store
        .write(move |tx| Box::pin(async move { Ok(tx.record_attempt(&operation_id, &owner, now, &after).await?) }))
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
        assert!(!record(&store, "op-1", "w1", at(62), AfterAttempt::Delivered { at: at(62) }).await, "w1 lost its lease");
        assert!(record(&store, "op-1", "w3", at(62), AfterAttempt::Delivered { at: at(62) }).await);
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
        for id in ["a-1", "b-1", "a-2", "a-3"] {
            assert!(record(&store, id, "w1", at(0), retry.clone()).await);
        }
        assert_eq!(claim(&store, "ISSUER000A", at(4), "w1", 10).await, Vec::<String>::new());
        assert_eq!(claim(&store, "ISSUER000A", at(5), "w1", 1).await, ["a-1"]);
        // While a-1 is out, a later notification of its card is not handed to another worker.
        assert_eq!(claim(&store, "ISSUER000A", at(5), "w2", 10).await, ["b-1"]);
        assert!(record(&store, "a-1", "w1", at(6), AfterAttempt::Dead { error: "HTTP 400".into() }).await);
        // A dead letter does not hold the card's later notifications back.
        assert_eq!(claim(&store, "ISSUER000A", at(6), "w2", 10).await, ["a-2", "a-3"]);
        let dead = deliveries(&store, "ISSUER000A", Some(DeliveryState::Dead)).await;
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].attempts, dead[0].last_error.as_deref()), (2, Some("HTTP 400")));
    }

    async fn redelivery_queues_a_dead_letter_again(db: TestDatabase) {
        let store = open(&db).await;
        enqueue(&store, "ISSUER000A", &[("op-1", "card-1")]).await;
        claim(&store, "ISSUER000A", at(0), "w1", 10).await;
        record(&store, "op-1", "w1", at(0), AfterAttempt::Dead { error: "HTTP 404".into() }).await;
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
                for id in batch {
                    assert!(record(&store, &id, &owner, at(0), AfterAttempt::Delivered { at: at(0) }).await);
                }
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
