//! Notifications reach the issuer (outbound.md §1–§2): through its OAuth2 token, in batches, in
//! each card's order, retried on the schedule (on a clock the test moves), dead-lettered, and
//! redelivered; and two workers on one PostgreSQL never send one notification twice.

use crate::issuer_stub::{IssuerStub, eventually};
use crate::support::{Bank, TestApp};
use cardplane_testkit::{Backend, TestDatabase, backend_tests};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wiremock::ResponseTemplate;

/// The issuer's notifications as the admin API shows them (delivery records included).
async fn deliveries(bank: &Bank<'_>) -> Vec<Value> {
    bank.notifications().await
}

async fn delivery(bank: &Bank<'_>, operation_id: &str) -> Value {
    deliveries(bank).await.into_iter().find(|d| d["operationId"] == operation_id).expect("the notification")
}

fn time(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a timestamp"), &Rfc3339).expect("RFC 3339")
}

/// Waits until the notification has had `attempts` attempts.
async fn attempted(bank: &Bank<'_>, operation_id: &str, attempts: u64) -> Value {
    eventually(&format!("attempt {attempts} of {operation_id}"), || async {
        let d = delivery(bank, operation_id).await;
        (d["attempts"].as_u64() == Some(attempts)).then_some(d)
    })
    .await
}

async fn register(bank: &Bank<'_>, card: &str, pan: &str) {
    let (status, body) = bank.register_card(card, "consumer-1", "VISA_LIGHT", pan).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

async fn suspend_and_resume(bank: &Bank<'_>, card: &str) {
    let (status, body) = bank.operate(card, "suspend", json!({"reasonCode": "CARD_LOST"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = bank.operate(card, "resume", json!({"reasonCode": "CARD_FOUND"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

/// Sixteen-digit Visa PANs in the test BIN range, Luhn-valid, distinct per `n`.
fn pan(n: u32) -> String {
    let body = format!("411111{n:09}");
    let sum: u32 = body
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap();
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// Asserts that, in arrival order, each card's operations came in the order they happened.
fn assert_card_order(received: &[Value], expected_per_card: &[&str]) {
    let mut per_card: HashMap<&str, Vec<&str>> = HashMap::new();
    for op in received {
        per_card.entry(op["cardId"].as_str().unwrap()).or_default().push(op["operation"].as_str().unwrap());
    }
    for (card, kinds) in per_card {
        assert_eq!(kinds, expected_per_card, "the order of {card}'s notifications");
    }
}

backend_tests! {
    async fn every_operation_reaches_the_issuer_with_its_token_and_fields(db: TestDatabase) {
        let app = TestApp::builder(db.backend).worker().start().await;
        let stub = IssuerStub::start().await;
        let bank = app.bank_with("BANK000001", json!({"callback": stub.callback(20)})).await;
        register(&bank, "card-1", &pan(1)).await;
        let (status, _) = bank.operate("card-1", "suspend", json!({"reasonCode": "CARD_LOST"})).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let acknowledged = std::time::Instant::now();
        eventually("the SUSPEND notification", || async {
            stub.operations().await.iter().any(|o| o["operation"] == "SUSPEND").then_some(())
        })
        .await;
        let latency = acknowledged.elapsed();
        assert!(latency < std::time::Duration::from_secs(2), "notified {latency:?} after the acknowledgement");
        let (status, _) = bank.operate("card-1", "resume", json!({"reasonCode": "CARD_FOUND"})).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = bank.operate("card-1", "delete", json!({"reasonCode": "CLOSED_CARD"})).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let received = eventually("four notifications", || async {
            let ops = stub.operations().await;
            (ops.len() >= 4).then_some(ops)
        })
        .await;

        let kinds: Vec<&str> = received.iter().map(|o| o["operation"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["REGISTER", "SUSPEND", "RESUME", "DELETE"]);
        let queued = deliveries(&bank).await;
        for (sent, record) in received.iter().zip(&queued) {
            assert_eq!(sent["operationId"], record["operationId"], "the operationId is the outbox's");
            assert_eq!(sent["cardId"], "card-1");
            assert_eq!(sent["status"], "SUCCESSFUL");
            time(&sent["startTime"]);
            let fields: HashSet<&str> = sent.as_object().unwrap().keys().map(String::as_str).collect();
            assert!(fields.is_subset(&HashSet::from(["operationId", "operation", "status", "startTime", "endTime", "cardId", "details"])), "{sent}");
        }
        // One token, fetched with HTTP Basic and the scope, used for every call.
        assert_eq!(stub.token_requests().await, 1);
        let notifications = stub.notifications().await;
        assert!(notifications.iter().all(|(auth, _)| auth == "Bearer token-1"), "{notifications:?}");
        let request = &stub.server.received_requests().await.unwrap()[1];
        assert_eq!(request.url.path(), "/notifications/d1/v2/issuers/BANK000001/cards");
        assert_eq!(request.headers.get("content-type").unwrap(), "application/json");

        let delivered = eventually("the delivery records", || async {
            let all = deliveries(&bank).await;
            all.iter().all(|d| d["deliveryStatus"] == "DELIVERED").then_some(all)
        })
        .await;
        assert!(delivered.iter().all(|d| d["attempts"] == 1 && d["deliveredAt"].is_string() && d["nextAttemptAt"].is_null()));
        let (status, only) = app.call(Method::GET, "/admin/v1/issuers/BANK000001/notifications?status=PENDING", None).await;
        assert_eq!((status, only["notifications"].as_array().unwrap().len()), (StatusCode::OK, 0));
        let (status, refused) = app.call(Method::GET, "/admin/v1/issuers/BANK000001/notifications?status=LOST", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert!(refused["error"].as_str().unwrap().starts_with("status"), "{refused}");
    }

    async fn batches_keep_to_max_batch_size_and_each_cards_order(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let stub = IssuerStub::start().await;
        let bank = app.bank_with("BANK000001", json!({"callback": stub.callback(4)})).await;
        for n in 0..5 {
            let card = format!("card-{n}");
            register(&bank, &card, &pan(n)).await;
            suspend_and_resume(&bank, &card).await;
        }
        // Fifteen notifications wait in the outbox; now a worker starts on them.
        let worker = cardplane::server::worker(&app.platform(), app.settings(), app.clock.clone()).start();
        let received = eventually("fifteen notifications", || async {
            let ops = stub.operations().await;
            (ops.len() >= 15).then_some(ops)
        })
        .await;
        worker.stop().await;
        let calls = stub.notifications().await;
        assert!(calls.iter().all(|(_, ops)| (1..=4).contains(&ops.len())), "batches of at most maxBatchSize");
        assert!(calls.len() >= 4, "fifteen notifications need four calls or more");
        assert!(calls.iter().any(|(_, ops)| ops.len() > 1), "notifications are batched");
        assert_eq!(received.len(), 15, "each sent once");
        assert_card_order(&received, &["REGISTER", "SUSPEND", "RESUME"]);
    }

    async fn failures_follow_the_retry_schedule_then_dead_letter_and_redeliver(db: TestDatabase) {
        let app = TestApp::builder(db.backend).worker().start().await;
        let stub = IssuerStub::start().await;
        stub.then_answer(ResponseTemplate::new(503), 10).await;
        let bank = app.bank_with("BANK000001", json!({"callback": stub.callback(10)})).await;
        register(&bank, "card-1", &pan(1)).await;
        let id = deliveries(&bank).await[0]["operationId"].as_str().unwrap().to_owned();
        let schedule = [5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600];
        for (n, wait) in schedule.iter().enumerate() {
            let d = attempted(&bank, &id, n as u64 + 1).await;
            assert_eq!(d["deliveryStatus"], "PENDING");
            assert_eq!(d["lastError"], "the issuer answered HTTP 503");
            let gap = time(&d["nextAttemptAt"]) - time(&d["lastAttemptAt"]);
            assert_eq!(gap, time::Duration::seconds(*wait), "the wait after attempt {}", n + 1);
            // Nothing happens before the time comes ...
            app.clock.advance(time::Duration::seconds(*wait) - time::Duration::seconds(1));
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
            assert_eq!(delivery(&bank, &id).await["attempts"], n as u64 + 1, "retried early");
            // ... and the next attempt comes when it does.
            app.clock.advance(time::Duration::seconds(1));
        }
        let dead = attempted(&bank, &id, 10).await;
        assert_eq!(dead["deliveryStatus"], "DEAD");
        assert!(dead["lastError"].as_str().unwrap().contains("gave up after 10 attempts"), "{dead}");
        assert!(dead["nextAttemptAt"].is_null());
        assert_eq!(stub.notifications().await.len(), 10);
        let (status, dead_only) = app.call(Method::GET, "/admin/v1/issuers/BANK000001/notifications?status=DEAD", None).await;
        assert_eq!((status, dead_only["notifications"].as_array().unwrap().len()), (StatusCode::OK, 1));

        // The issuer is fixed (the stub answers 204 again); the operator redelivers.
        let (status, _) = app.call(Method::POST, &format!("/admin/v1/notifications/{id}:redeliver"), None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let redelivered = eventually("the redelivery", || async {
            let d = delivery(&bank, &id).await;
            (d["deliveryStatus"] == "DELIVERED").then_some(d)
        })
        .await;
        assert_eq!(redelivered["attempts"], 1, "a fresh schedule");
        assert_eq!(stub.notifications().await.len(), 11);
        let (status, missing) = app.call(Method::POST, "/admin/v1/notifications/no-such-op:redeliver", None).await;
        assert_eq!((status, missing["errorCode"].as_str()), (StatusCode::NOT_FOUND, Some("OPERATION_NOT_FOUND")));
    }

    // With no worker running: the notification is dead on the record as the change commits, not
    // queued; once the issuer has a callback, the operator's redelivery reaches it.
    async fn notifications_of_an_issuer_without_callback_are_dead_lettered_as_they_are_made(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let silent = app.bank("BANK000001").await;
        register(&silent, "card-1", &pan(1)).await;
        suspend_and_resume(&silent, "card-1").await;
        let dead = deliveries(&silent).await;
        assert_eq!(dead.len(), 3);
        for d in &dead {
            assert_eq!((d["deliveryStatus"].as_str(), d["lastError"].as_str()), (Some("DEAD"), Some("the issuer has no callback settings")), "{d}");
            assert_eq!(d["attempts"], 1, "{d}");
            assert_eq!(d["lastAttemptAt"], d["endTime"], "dead-lettered as it was made: {d}");
            assert!(d["nextAttemptAt"].is_null(), "{d}");
        }

        let stub = IssuerStub::start().await;
        let bank = app.bank_with("BANK000001", json!({"callback": stub.callback(10)})).await;
        let worker = cardplane::server::worker(&app.platform(), app.settings(), app.clock.clone()).start();
        let id = dead[1]["operationId"].as_str().unwrap().to_owned();
        let (status, _) = app.call(Method::POST, &format!("/admin/v1/notifications/{id}:redeliver"), None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        eventually("the redelivery", || async { (delivery(&bank, &id).await["deliveryStatus"] == "DELIVERED").then_some(()) }).await;
        let sent: Vec<String> = stub.operations().await.iter().map(|o| o["operationId"].as_str().unwrap().to_owned()).collect();
        assert_eq!(sent, [id], "only the redelivered notification is sent");
        // Now that the issuer has a callback, a new change is queued, and delivered.
        register(&bank, "card-2", &pan(2)).await;
        eventually("the new notification", || async { (stub.operations().await.len() == 2).then_some(()) }).await;
        worker.stop().await;
    }

    async fn retry_after_timeouts_and_refusals(db: TestDatabase) {
        let app = TestApp::builder(db.backend).worker().start().await;
        let stub = IssuerStub::start().await;
        stub.then_answer(ResponseTemplate::new(429).insert_header("retry-after", "120"), 1).await;
        let bank = app.bank_with("BANK000001", json!({"callback": stub.callback(10)})).await;
        register(&bank, "card-1", &pan(1)).await;
        let id = deliveries(&bank).await[0]["operationId"].as_str().unwrap().to_owned();
        let d = attempted(&bank, &id, 1).await;
        assert_eq!(time(&d["nextAttemptAt"]) - time(&d["lastAttemptAt"]), time::Duration::seconds(120), "Retry-After is honoured");

        // The issuer hangs past the call timeout: retried on the schedule.
        stub.then_answer(ResponseTemplate::new(204).set_delay(std::time::Duration::from_secs(3)), 1).await;
        app.clock.advance(time::Duration::seconds(120));
        let d = attempted(&bank, &id, 2).await;
        assert_eq!(d["lastError"], "the issuer could not be reached: timed out");
        assert_eq!(time(&d["nextAttemptAt"]) - time(&d["lastAttemptAt"]), time::Duration::seconds(30));

        // A 4xx other than 408 and 429 is not retried.
        stub.then_answer(ResponseTemplate::new(422), 1).await;
        app.clock.advance(time::Duration::seconds(30));
        let d = attempted(&bank, &id, 3).await;
        assert_eq!((d["deliveryStatus"].as_str(), d["lastError"].as_str()), (Some("DEAD"), Some("the issuer answered HTTP 422")));
    }

    async fn a_refused_token_is_replaced_once_and_tokens_are_reused_until_near_expiry(db: TestDatabase) {
        let app = TestApp::builder(db.backend).worker().start().await;
        let stub = IssuerStub::start().await;
        // The issuer has revoked the first token it granted.
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::header("authorization", "Bearer token-1"))
            .respond_with(ResponseTemplate::new(401))
            .with_priority(1)
            .mount(&stub.server)
            .await;
        let bank = app.bank_with("BANK000001", json!({"callback": stub.callback(10)})).await;
        register(&bank, "card-1", &pan(1)).await;
        let id = deliveries(&bank).await[0]["operationId"].as_str().unwrap().to_owned();
        let d = eventually("the delivery", || async {
            let d = delivery(&bank, &id).await;
            (d["deliveryStatus"] == "DELIVERED").then_some(d)
        })
        .await;
        assert_eq!(d["attempts"], 1, "the 401 was answered within the same attempt");
        let calls = stub.notifications().await;
        let auths: Vec<&str> = calls.iter().map(|(auth, _)| auth.as_str()).collect();
        assert_eq!(auths, ["Bearer token-1", "Bearer token-2"]);
        assert_eq!(calls[0].1[0]["operationId"], calls[1].1[0]["operationId"]);

        // token-2 is good for 900 s: reused until 30 s before that, then replaced.
        app.clock.advance(time::Duration::seconds(869));
        suspend_and_resume(&bank, "card-1").await;
        eventually("two more", || async { (stub.operations().await.len() == 4).then_some(()) }).await;
        assert_eq!(stub.token_requests().await, 2);
        app.clock.advance(time::Duration::seconds(2));
        suspend_and_resume(&bank, "card-1").await;
        eventually("two more", || async { (stub.operations().await.len() == 6).then_some(()) }).await;
        assert_eq!(stub.token_requests().await, 3);
        let last = stub.notifications().await.last().unwrap().0.clone();
        assert_eq!(last, "Bearer token-3");
    }

    async fn unreachable_issuers_are_retried_and_issuers_without_callback_are_told_why(db: TestDatabase) {
        let app = TestApp::builder(db.backend).worker().start().await;
        // Nothing listens on port 9 of loopback.
        let callback = json!({"baseUrl": "http://127.0.0.1:9/bank", "clientId": "id", "clientSecret": "secret"});
        let unreachable = app.bank_with("BANK000001", json!({"callback": callback})).await;
        register(&unreachable, "card-1", &pan(1)).await;
        let id = deliveries(&unreachable).await[0]["operationId"].as_str().unwrap().to_owned();
        let d = attempted(&unreachable, &id, 1).await;
        assert_eq!(d["deliveryStatus"], "PENDING");
        assert!(d["lastError"].as_str().unwrap().starts_with("the token endpoint could not be reached"), "{d}");

        let silent = app.bank("BANK000002").await;
        register(&silent, "card-2", &pan(2)).await;
        let id = deliveries(&silent).await[0]["operationId"].as_str().unwrap().to_owned();
        let d = attempted(&silent, &id, 1).await;
        assert_eq!((d["deliveryStatus"].as_str(), d["lastError"].as_str()), (Some("DEAD"), Some("the issuer has no callback settings")));
    }
}

/// Two workers, each with its own connection pool, share one PostgreSQL outbox: every notification
/// is sent exactly once (the stub always answers 204, so a second send could only come from two
/// workers holding one batch), and each card's order holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_postgres_never_send_one_notification_twice() {
    let _ = TestDatabase::new(Backend::Postgres).await; // fail early and clearly if PostgreSQL is absent
    let app = TestApp::builder(Backend::Postgres).start().await;
    let stub = IssuerStub::start().await;
    stub.then_answer(ResponseTemplate::new(204).set_delay(std::time::Duration::from_millis(15)), u64::MAX).await;
    let bank = app.bank_with("BANK000001", json!({"callback": stub.callback(3)})).await;
    for n in 0..20 {
        let card = format!("card-{n}");
        register(&bank, &card, &pan(n)).await;
        suspend_and_resume(&bank, &card).await;
    }
    let settings = app.settings().clone();
    let second = cardplane::platform(&settings, app.clock.clone()).await.expect("a second platform");
    let workers = [
        cardplane::server::worker(&app.platform(), &settings, app.clock.clone()).start(),
        cardplane::server::worker(&second, &settings, app.clock.clone()).start(),
    ];
    eventually("every delivery recorded", || async {
        deliveries(&bank).await.iter().all(|d| d["deliveryStatus"] == "DELIVERED").then_some(())
    })
    .await;
    for worker in workers {
        worker.stop().await;
    }
    second.store().close().await;
    let received = stub.operations().await;
    let ids: HashSet<&str> = received.iter().map(|o| o["operationId"].as_str().unwrap()).collect();
    assert_eq!((received.len(), ids.len()), (60, 60), "sixty notifications, each sent once");
    assert_card_order(&received, &["REGISTER", "SUSPEND", "RESUME"]);
}
