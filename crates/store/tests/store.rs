//! The store contract, run on both backends: what a use case may rely on from any `Store`.

use cardplane_app::AppError;
use cardplane_app::ports::{
    CardDataVault, Conflict, KeyVault, RegistrationView, Store, StoreError, StoreExt, VaultedCredentials,
};
use cardplane_domain::FieldError;
use cardplane_domain::card::{Card, CardOrigin, CardState, OperationKind};
use cardplane_domain::consumer::{Consumer, ConsumerState};
use cardplane_domain::credentials::{CardCredentials, Expiry, Pan};
use cardplane_domain::delivery::DeliveryState;
use cardplane_domain::ids::{CardId, CardProductId, ConsumerId, IssuerId, KeyId};
use cardplane_domain::issuer::{CallbackSettings, HttpUrl, Issuer, IssuerName, Onboarding, WalletServerSettings};
use cardplane_domain::keys::AssertionKey;
use cardplane_domain::operation::{Operation, OperationStatus};
use cardplane_domain::product::{AuthorisationMode, BinRange, CardProduct, ValidityYears};
use cardplane_domain::scheme::Scheme;
use cardplane_testkit::{Backend, TestDatabase, backend_tests, test_vault};
use common::migrate_up_to;
use std::sync::Arc;
use time::OffsetDateTime;

mod common;

async fn open(db: &TestDatabase) -> Arc<dyn Store> {
    cardplane_store::open(&db.url, test_vault()).await.expect("the store opens")
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

fn issuer(id: &str, products: &[&str]) -> Issuer {
    let vault = test_vault();
    let issuer_id = IssuerId::parse(id).unwrap();
    let public_key = vault.new_encryption_key(&issuer_id, at(0)).key.public_key;
    let card_products = products
        .iter()
        .map(|p| CardProduct {
            id: CardProductId::parse(*p).unwrap(),
            scheme: Scheme::Visa,
            authorisation_mode: AuthorisationMode::Light,
            bin_range: Some(BinRange::parse("411111", "411199", Scheme::Visa).unwrap()),
            physical: true,
            validity: ValidityYears::parse(4).unwrap(),
            used_for_transactions: false,
        })
        .collect();
    let base = HttpUrl::parse("baseUrl", "http://127.0.0.1:9999/bank").unwrap();
    let callback = CallbackSettings {
        token_url: HttpUrl::parse("tokenUrl", &base.join(CallbackSettings::DEFAULT_TOKEN_PATH)).unwrap(),
        base_url: base.clone(),
        client: Some(CallbackSettings::client("d1-client", "a client secret").unwrap()),
        scope: Some("notifications".into()),
        max_batch_size: 10,
        stores_consumer_data: false,
    };
    let wallet = WalletServerSettings {
        base_url: base.clone(),
        pods: [("pod-a".to_owned(), HttpUrl::parse("pods", "http://127.0.0.1:9998").unwrap())].into(),
    };
    Issuer {
        id: issuer_id,
        onboarding: Onboarding::new(
            IssuerName::parse("Bank of Tests").unwrap(),
            vec![AssertionKey { kid: KeyId::parse("sig-1").unwrap(), public_key }],
            card_products,
            Some(callback),
            Some(wallet),
        )
        .unwrap(),
        created_at: at(0),
        updated_at: at(1),
    }
}

async fn put(store: &Arc<dyn Store>, issuer: Issuer) {
    store.write(move |tx| Box::pin(async move { Ok(tx.put_issuer(&issuer).await?) })).await.unwrap();
}

async fn get(store: &Arc<dyn Store>, id: &str) -> Option<Issuer> {
    let id = IssuerId::parse(id).unwrap();
    store.read(move |tx| Box::pin(async move { Ok(tx.issuer(&id).await?) })).await.unwrap()
}

/// A registered card of `ISSUER0001`'s VISA_GOLD, made at `at(seconds)`.
fn card(id: &str, state: CardState, seconds: i64) -> Card {
    Card {
        id: CardId::parse(id).unwrap(),
        consumer_id: ConsumerId::parse("consumer-1").unwrap(),
        product_id: CardProductId::parse("VISA_GOLD").unwrap(),
        scheme: Scheme::Visa,
        last4: "0366".to_owned(),
        expiry: Expiry::new(12, 30).unwrap(),
        state,
        suspended_for: None,
        ongoing: None,
        origin: CardOrigin::Registered,
        cardholder_name: None,
        cardholder_name2: None,
        created_at: at(seconds),
        updated_at: at(seconds),
    }
}

/// A card's credentials sealed for real (a card read back is opened), under a PAN fingerprint of
/// the test's choosing: `fingerprint`, 32 times.
fn vaulted(fingerprint: u8) -> VaultedCredentials {
    let credentials = CardCredentials {
        pan: Pan::parse("pan", "4532015112830366").unwrap(),
        expiry: Expiry::new(12, 30).unwrap(),
        cvv: None,
        name: None,
    };
    VaultedCredentials { pan_fingerprint: vec![fingerprint; 32], ..test_vault().vault_credentials(&credentials) }
}

backend_tests! {
    async fn whether_an_issuer_has_a_callback_follows_every_change_to_it(db: TestDatabase) {
        let server = open(&db).await;
        let id = IssuerId::parse("ISSUER000C").unwrap();
        let has_callback = |store: &Arc<dyn Store>| {
            let (store, id) = (Arc::clone(store), id.clone());
            async move { store.write(move |tx| Box::pin(async move { Ok(tx.has_callback(&id).await?) })).await.unwrap() }
        };
        let without = || {
            let mut issuer = issuer("ISSUER000C", &["P1"]);
            issuer.onboarding.callback = None;
            issuer
        };
        put(&server, without()).await;
        assert!(!has_callback(&server).await);
        // Another process (`cardplane issuer add`) on the same database, while the server runs.
        let cli = open(&db).await;
        put(&cli, issuer("ISSUER000C", &["P1"])).await;
        cli.close().await;
        assert!(has_callback(&server).await, "the server sees what another process committed");
        // The server's own change.
        put(&server, without()).await;
        assert!(!has_callback(&server).await);
        // A change that is rolled back: the unit gives the issuer a callback, reads it, then fails.
        let (with, seen) = (issuer("ISSUER000C", &["P1"]), id.clone());
        let failed = server
            .write(move |tx| {
                Box::pin(async move {
                    tx.put_issuer(&with).await?;
                    assert!(tx.has_callback(&seen).await?, "the unit sees its own change");
                    Err::<(), AppError>(FieldError::invalid("x", "refused after the change").into())
                })
            })
            .await;
        assert!(failed.is_err());
        assert!(!has_callback(&server).await, "what was rolled back is not remembered");
    }

    // What a registration reads (one statement on PostgreSQL) is what the three reads it stands
    // for answer, with nothing stored and with everything stored.
    async fn a_registration_reads_the_card_the_bar_and_the_consumer_at_once(db: TestDatabase) {
        let store = open(&db).await;
        put(&store, issuer("ISSUER0001", &["VISA_GOLD"])).await;
        let views = store
            .write(|tx| {
                Box::pin(async move {
                    let issuer = IssuerId::parse("ISSUER0001").unwrap();
                    let (card_id, consumer_id) = (CardId::parse("card-1").unwrap(), ConsumerId::parse("consumer-1").unwrap());
                    let separately = async |tx: &mut dyn cardplane_app::ports::Tx| -> Result<RegistrationView, AppError> {
                        Ok(RegistrationView {
                            card: tx.card(&issuer, &card_id).await?,
                            pan_barred: tx.is_pan_barred(&issuer, &[3; 32]).await?,
                            consumer: tx.consumer(&issuer, &consumer_id).await?,
                        })
                    };
                    let empty = tx.registration_view(&issuer, &card_id, &[3; 32], &consumer_id).await?;
                    assert_eq!(empty, separately(tx).await?);
                    let consumer = Consumer {
                        id: consumer_id.clone(),
                        state: ConsumerState::Active,
                        personal_information: None,
                        created_at: at(1),
                        updated_at: at(2),
                    };
                    tx.put_consumer(&issuer, &consumer).await?;
                    tx.insert_card(&issuer, &card("card-1", CardState::Suspended, 3), &vaulted(1), None).await?;
                    tx.bar_pan(&issuer, &[3; 32], at(4)).await?;
                    let full = tx.registration_view(&issuer, &card_id, &[3; 32], &consumer_id).await?;
                    assert_eq!(full, separately(tx).await?);
                    // Another issuer's card, PAN and consumer are not seen.
                    let other = IssuerId::parse("ISSUER0002").unwrap();
                    let elsewhere = tx.registration_view(&other, &card_id, &[3; 32], &consumer_id).await?;
                    Ok((empty, full, consumer, elsewhere))
                })
            })
            .await
            .unwrap();
        let (empty, full, consumer, elsewhere) = views;
        assert_eq!(empty, RegistrationView { card: None, pan_barred: false, consumer: None });
        assert_eq!(elsewhere, empty);
        let stored = full.card.expect("the card is seen");
        assert_eq!((stored.card.id.as_str(), stored.card.state, stored.pan_fingerprint), ("card-1", CardState::Suspended, vec![1; 32]));
        assert_eq!(stored.card.expiry, Expiry::new(12, 30).unwrap(), "its credentials are opened");
        assert!(full.pan_barred);
        assert_eq!(full.consumer, Some(consumer));
    }

    // A notification is queued when its issuer has callback settings and dead-lettered at once
    // when it has none (one statement on PostgreSQL): the rows the two ways write are the same.
    async fn a_notification_is_queued_or_dead_lettered_as_its_issuer_can_be_reached(db: TestDatabase) {
        let store = open(&db).await;
        put(&store, issuer("ISSUER000A", &["P"])).await;
        let mut unreachable = issuer("ISSUER000B", &["P"]);
        unreachable.onboarding.callback = None;
        put(&store, unreachable).await;
        let operation = |id: &str| Operation {
            operation_id: id.to_owned(),
            card_id: CardId::parse("card-1").unwrap(),
            kind: OperationKind::Suspend,
            status: OperationStatus::Successful,
            start_time: at(5),
            end_time: Some(at(5)),
            details: Some("{\"reason\":\"x\"}".to_owned()),
            digital_card_id: None,
        };
        let (queued, dead, unknown) = (operation("op-queued"), operation("op-dead"), operation("op-unknown"));
        let written = (queued.clone(), dead.clone(), unknown.clone());
        store
            .write(move |tx| {
                Box::pin(async move {
                    let (queued, dead, unknown) = written;
                    tx.notify_operation(&IssuerId::parse("ISSUER000A").unwrap(), &queued, at(6), "no way").await?;
                    tx.notify_operation(&IssuerId::parse("ISSUER000B").unwrap(), &dead, at(6), "no way").await?;
                    tx.notify_operation(&IssuerId::parse("ISSUER000C").unwrap(), &unknown, at(6), "no way").await?;
                    Ok(())
                })
            })
            .await
            .unwrap();
        let deliveries = |id: &'static str| {
            store.read(move |tx| Box::pin(async move { Ok(tx.deliveries(&IssuerId::parse(id).unwrap(), None).await?) }))
        };
        let pending = deliveries("ISSUER000A").await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].operation, queued);
        assert_eq!(
            (pending[0].state, pending[0].attempts, pending[0].next_attempt_at, pending[0].last_attempt_at, &pending[0].last_error),
            (DeliveryState::Pending, 0, Some(at(5)), None, &None)
        );
        let due = store.read(|tx| Box::pin(async move { Ok(tx.next_due_issuer(at(100)).await?) })).await.unwrap();
        assert_eq!(due.map(|i| i.to_string()).as_deref(), Some("ISSUER000A"), "the queued one is due");
        for (id, expected) in [("ISSUER000B", dead), ("ISSUER000C", unknown)] {
            let dead = deliveries(id).await.unwrap();
            assert_eq!(dead.len(), 1, "{id}");
            assert_eq!(dead[0].operation, expected);
            assert_eq!(
                (dead[0].state, dead[0].attempts, dead[0].next_attempt_at, dead[0].last_attempt_at, dead[0].last_error.as_deref()),
                (DeliveryState::Dead, 1, None, Some(at(6)), Some("no way")),
                "{id}"
            );
        }
    }

    // Cards by PAN are found through two partial indexes (live cards, final cards; migration
    // 0010): every card with the PAN comes back, oldest first, whatever its state, and no other.
    async fn cards_with_a_pan_are_found_live_and_final(db: TestDatabase) {
        let store = open(&db).await;
        put(&store, issuer("ISSUER0001", &["VISA_GOLD"])).await;
        let ids: Vec<String> = store
            .write(|tx| {
                Box::pin(async move {
                    let issuer = IssuerId::parse("ISSUER0001").unwrap();
                    tx.insert_card(&issuer, &card("replaced", CardState::Replaced, 10), &vaulted(1), None).await?;
                    tx.insert_card(&issuer, &card("deleted", CardState::Active, 5), &vaulted(1), None).await?;
                    tx.update_card(&issuer, &card("deleted", CardState::Deleted, 5)).await?;
                    tx.insert_card(&issuer, &card("live", CardState::Active, 20), &vaulted(1), None).await?;
                    // A state change short of the end leaves the card live (migration 0011).
                    tx.update_card(&issuer, &card("live", CardState::Suspended, 20)).await?;
                    tx.insert_card(&issuer, &card("other-pan", CardState::Active, 1), &vaulted(2), None).await?;
                    let found = tx.cards_with_pan(&issuer, &[1; 32]).await?;
                    Ok(found.into_iter().map(|c| format!("{}:{}", c.id, c.state)).collect())
                })
            })
            .await
            .unwrap();
        assert_eq!(ids, ["deleted:DELETED", "replaced:REPLACED", "live:SUSPENDED"]);
    }

    // Migration 0011 marks the cards that had ended before it: their PAN is free for a new card, the
    // PAN of a live one (suspended or not) is not.
    async fn cards_that_ended_before_the_upgrade_do_not_hold_their_pan(db: TestDatabase) {
        let row = |id: &str, fingerprint: &str, state: &str| {
            let bytes = match db.backend {
                Backend::Sqlite => format!("X'{fingerprint}'"),
                Backend::Postgres => format!("'\\x{fingerprint}'::bytea"),
            };
            format!(
                "('ISSUER0001', '{id}', 'consumer-1', 'VISA_GOLD', 'VISA', '0366', {bytes}, {bytes}, '{state}', \
                 'REGISTERED', 1, 1)"
            )
        };
        let (ended, live) = ("01".repeat(32), "02".repeat(32));
        let cards = format!(
            "INSERT INTO cards (issuer_id, card_id, consumer_id, card_product_id, scheme, last4, pan_fingerprint, \
             credentials_sealed, state, origin, created_at, updated_at) VALUES {}, {}, {}",
            row("deleted", &ended, "DELETED"),
            row("replaced", &ended, "REPLACED"),
            row("suspended", &live, "SUSPENDED")
        );
        migrate_up_to(&db, 10, &cards).await;
        let store = open(&db).await;
        let insert = |id: &'static str, fingerprint: u8| {
            store.write(move |tx| {
                Box::pin(async move {
                    let issuer = IssuerId::parse("ISSUER0001").unwrap();
                    Ok(tx.insert_card(&issuer, &card(id, CardState::Active, 30), &vaulted(fingerprint), None).await)
                })
            })
        };
        insert("after-the-ended", 1).await.unwrap().expect("an ended card's PAN is free");
        let refused = insert("beside-the-live", 2).await.unwrap().expect_err("a live card's PAN is taken");
        assert!(matches!(refused, StoreError::Conflict(Conflict::LivePan)), "{refused:?}");
    }

    async fn issuers_round_trip_with_every_setting(db: TestDatabase) {
        let store = open(&db).await;
        let original = issuer("ISSUER0001", &["VISA_GOLD", "VISA_DEBIT"]);
        put(&store, original.clone()).await;
        let mut expected = original;
        expected.onboarding.card_products.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(get(&store, "ISSUER0001").await, Some(expected));
        assert_eq!(get(&store, "ISSUER0002").await, None);
        store.close().await;
    }

    async fn onboarding_again_replaces_keys_and_products(db: TestDatabase) {
        let store = open(&db).await;
        put(&store, issuer("ISSUER0001", &["A", "B"])).await;
        let mut second = issuer("ISSUER0001", &["C"]);
        second.onboarding.callback = None;
        second.onboarding.wallet_server = None;
        put(&store, second.clone()).await;
        assert_eq!(get(&store, "ISSUER0001").await, Some(second));
        store.close().await;
    }

    async fn the_client_secret_is_not_stored_in_clear(db: TestDatabase) {
        let store = open(&db).await;
        put(&store, issuer("ISSUER0001", &[])).await;
        store.close().await;
        if let Some(dir) = db.dir() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                assert!(!bytes.windows(15).any(|w| w == b"a client secret"), "secret found in a database file");
            }
        }
    }

    async fn a_failing_unit_leaves_nothing_and_does_not_harm_its_batch(db: TestDatabase) {
        let store = open(&db).await;
        // Many concurrent units, so that on SQLite they share group commits; every odd one fails
        // after writing.
        let mut tasks = Vec::new();
        for i in 0..60 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let issuer = issuer(&format!("ISSUER{i:04}"), &["P"]);
                store
                    .write(move |tx| {
                        Box::pin(async move {
                            tx.put_issuer(&issuer).await?;
                            if i % 2 == 1 {
                                return Err(AppError::Invalid(FieldError::invalid("x", "refused after writing")));
                            }
                            Ok(())
                        })
                    })
                    .await
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap().is_ok(), i % 2 == 0);
        }
        let all = store.read(|tx| Box::pin(async move { Ok(tx.issuers().await?) })).await.unwrap();
        let ids: Vec<String> = all.iter().map(|i| i.id.to_string()).collect();
        let expected: Vec<String> = (0..60).step_by(2).map(|i| format!("ISSUER{i:04}")).collect();
        assert_eq!(ids, expected);
        store.close().await;
    }

    async fn a_panicking_unit_is_rolled_back_and_reported(db: TestDatabase) {
        let store = open(&db).await;
        let issuer_a = issuer("ISSUER000A", &[]);
        let outcome = store
            .write(move |tx| {
                Box::pin(async move {
                    tx.put_issuer(&issuer_a).await?;
                    if tx.issuer(&issuer_a.id).await?.is_some() {
                        panic!("a bug in a use case");
                    }
                    Ok(())
                })
            })
            .await;
        assert!(matches!(outcome, Err(AppError::Unexpected(_))));
        assert_eq!(get(&store, "ISSUER000A").await, None);
        put(&store, issuer("ISSUER000B", &[])).await;
        assert!(get(&store, "ISSUER000B").await.is_some(), "the store still works");
        store.close().await;
    }

    async fn encryption_keys_rotate_with_one_active_key(db: TestDatabase) {
        let store = open(&db).await;
        put(&store, issuer("ISSUER0001", &[])).await;
        let vault = test_vault();
        let id = IssuerId::parse("ISSUER0001").unwrap();
        let first = vault.new_encryption_key(&id, at(10));
        let second = vault.new_encryption_key(&id, at(20));
        let (id2, f, s) = (id.clone(), first.clone(), second.clone());
        store
            .write(move |tx| {
                Box::pin(async move {
                    tx.add_encryption_key(&id2, &f).await?;
                    tx.retire_encryption_keys(&id2, at(20)).await?;
                    tx.add_encryption_key(&id2, &s).await?;
                    Ok(())
                })
            })
            .await
            .unwrap();
        let id3 = id.clone();
        let keys = store.read(move |tx| Box::pin(async move { Ok(tx.encryption_keys(&id3).await?) })).await.unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key.kid, first.key.kid);
        assert_eq!(keys[0].key.retired_at, Some(at(20)));
        assert_eq!(keys[1].key, second.key);
        assert!(vault.open_encryption_key(&id, &keys[0]).is_ok(), "a retired key still opens");

        // A second active key is refused by the schema itself.
        let third = vault.new_encryption_key(&id, at(30));
        let refused = store
            .write(move |tx| Box::pin(async move { Ok(tx.add_encryption_key(&id, &third).await?) }))
            .await;
        assert!(refused.is_err());
        store.close().await;
    }

    async fn committed_writes_survive_a_reopen(db: TestDatabase) {
        let store = open(&db).await;
        put(&store, issuer("ISSUER0001", &["P"])).await;
        store.close().await;
        let reopened = open(&db).await;
        assert!(get(&reopened, "ISSUER0001").await.is_some());
        reopened.check_ready().await.expect("migrations are applied");
        reopened.close().await;
    }

    async fn migrations_run_twice_safely(db: TestDatabase) {
        cardplane_store::migrate(&db.url).await.unwrap();
        cardplane_store::migrate(&db.url).await.unwrap();
        let store = open(&db).await;
        store.check_ready().await.unwrap();
        store.close().await;
    }
}

/// Writes that arrive while the writer is busy wait in its queue and are committed together. The
/// first write holds the writer inside its batch until the 399 others have been handed to it, as a
/// batch and its fsync do under load; without the hold, a fast writer keeps up with the spawns and
/// commits them a few at a time, which says nothing about grouping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_concurrent_writes_in_groups() {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    const WRITES: usize = 400;
    let db = TestDatabase::new(cardplane_testkit::Backend::Sqlite).await;
    let store = Arc::new(cardplane_store::SqliteStore::open(&db.url, test_vault()).await.unwrap());
    let handed = Arc::new(AtomicUsize::new(0));
    let (running, holding) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let (store, handed) = (Arc::clone(&store), Arc::clone(&handed));
        tokio::spawn(async move {
            let issuer = issuer("ISSUER0000", &[]);
            store
                .write(move |tx| {
                    Box::pin(async move {
                        let _ = running.send(());
                        // Blocking is the point: the writer thread is held as a long batch holds it.
                        while handed.load(Ordering::SeqCst) < WRITES - 1 {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok(tx.put_issuer(&issuer).await?)
                    })
                })
                .await
        })
    };
    holding.await.expect("the first write runs");
    let mut tasks = vec![first];
    for i in 1..WRITES {
        let (store, handed) = (Arc::clone(&store), Arc::clone(&handed));
        tasks.push(tokio::spawn(async move {
            let issuer = issuer(&format!("ISSUER{i:04}"), &[]);
            handed.fetch_add(1, Ordering::SeqCst);
            store.write(move |tx| Box::pin(async move { Ok(tx.put_issuer(&issuer).await?) })).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stats = store.group_commit_stats();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (batches, units, syncs) = (load(&stats.batches), load(&stats.units), load(&stats.syncs));
    assert_eq!(units, WRITES as u64);
    // The held batch, then the 399 in batches of at most MAX_BATCH; a straggler may make one more.
    let grouped = 1 + (WRITES - 1).div_ceil(cardplane_store::sqlite::MAX_BATCH) as u64;
    assert!(batches <= grouped + 1, "expected group commits, got {batches} commits for {units} units");
    // One fsync covers every batch committed before it began.
    assert!((1..=batches).contains(&syncs), "{syncs} WAL syncs for {batches} commits");
    let committed: Arc<dyn Store> = Arc::clone(&store) as _;
    for i in [0, WRITES / 2, WRITES - 1] {
        assert!(get(&committed, &format!("ISSUER{i:04}")).await.is_some(), "issuer {i} was committed");
    }
    store.close().await;
}

/// Ends every other session on `db`'s database, as a PostgreSQL restart or a cut connection would.
async fn kill_other_sessions(db: &TestDatabase) -> i64 {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    killed.len() as i64
}

#[tokio::test]
async fn postgres_reads_run_in_read_only_transactions() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let store = open(&db).await;
    let written = issuer("ISSUER0001", &["P"]);
    let refused = store.read(move |tx| Box::pin(async move { Ok(tx.put_issuer(&written).await?) })).await;
    let message = refused.expect_err("a read may not write").to_string();
    assert!(message.contains("read-only transaction"), "{message}");
    assert!(get(&store, "ISSUER0001").await.is_none());
    store.close().await;
}

/// sqlx pings each pooled connection before it hands it out (a round trip, kept: skipping it for
/// connections used in the last 500 ms measured 2% on reads and nothing on writes, and would have
/// failed a request for each connection killed under it): connections that PostgreSQL ended
/// (a restart, an administrator) are replaced without a request failing.
#[tokio::test]
async fn postgres_connections_killed_under_the_pool_fail_no_request() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let store = open(&db).await;
    put(&store, issuer("ISSUER0001", &["P"])).await;
    for _ in 0..2 {
        assert!(kill_other_sessions(&db).await >= 1, "the store held a connection");
        assert!(get(&store, "ISSUER0001").await.is_some());
        put(&store, issuer("ISSUER0001", &["P", "Q"])).await;
    }
    store.close().await;
}
