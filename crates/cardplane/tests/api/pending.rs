//! Operations that wait for the issuer. Renew and replace without card data (inbound.md §4,
//! outbound.md §4), and digitizing without consumer data (§3): acknowledged at once with a
//! `PENDING` notification, completed by the worker with what the issuer answers, and
//! closed by a `SUCCESSFUL` or `FAILED` notification linked to the pending one.

use crate::issuer_stub::{IssuerStub, eventually};
use crate::support::{Bank, TestApp, assert_refused};
use cardplane_testkit::backend_tests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

const OLD_PAN: &str = "4111111111111111";
const NEW_PAN: &str = "4111110000000005";

/// Waits until the stub has received a notification of `operation` with `status`.
async fn notified(stub: &IssuerStub, operation: &str, status: &str) -> Vec<Value> {
    eventually(&format!("a {status} {operation} notification"), || async {
        let ops = stub.operations().await;
        if std::env::var("DEBUG_OPS").is_ok() {
            eprintln!("{ops:?}");
        }
        ops.iter().any(|o| o["operation"] == operation && o["status"] == status).then_some(ops)
    })
    .await
}

fn credentials(bank: &Bank<'_>, pan: &str, exp: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"encryptedData": bank.card_data(json!({"pan": pan, "exp": exp}))}))
}

backend_tests! {
    async fn renew_without_card_data_completes_with_the_issuers_credentials(db: TestDatabase) {
        let app = TestApp::builder(db.backend).worker().start().await;
        let stub = IssuerStub::start().await;
        let bank = app.bank_with("BANK000001", json!({"callback": stub.callback(10)})).await;
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", OLD_PAN).await.0, StatusCode::NO_CONTENT);
        // The issuer's CMS is slow at first: the look-up is retried on the schedule.
        stub.credentials("BANK000001", "card-1", ResponseTemplate::new(503)).await;
        let (status, body) = bank.operate("card-1", "renew", json!({"reasonCode": "CARD_EXPIRING", "newCardState": "INACTIVE"})).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert_eq!(bank.card("card-1").await["last4"], "1111", "nothing changes before the credentials arrive");
        eventually("the first look-up", || async { (stub.credential_requests().await.len() == 1).then_some(()) }).await;
        stub.credentials("BANK000001", "card-1", credentials(&bank, NEW_PAN, "0632")).await;
        app.clock.advance(time::Duration::seconds(5));

        let ops = notified(&stub, "RENEW", "SUCCESSFUL").await;
        let renewals: Vec<&Value> = ops.iter().filter(|o| o["operation"] == "RENEW").collect();
        assert_eq!(renewals.len(), 2, "{ops:?}");
        assert_eq!(renewals[0]["status"], "PENDING");
        assert!(renewals[0]["endTime"].is_null());
        assert_eq!(renewals[1]["details"]["pendingOperationId"], renewals[0]["operationId"]);
        assert_ne!(renewals[1]["operationId"], renewals[0]["operationId"], "the issuer dedupes on operationId");
        let card = bank.card("card-1").await;
        assert_eq!((card["last4"].as_str(), card["expiry"].as_str()), (Some("0005"), Some("0632")));
        assert_eq!((card["state"].as_str(), card["ongoingOperation"].as_str()), (Some("INACTIVE"), Some("RENEW")));
        let lookups = stub.credential_requests().await;
        assert_eq!(lookups.len(), 2);
        assert!(lookups.iter().all(|(card, auth)| card == "card-1" && auth == "Bearer token-1"), "{lookups:?}");
        let (_, history) = bank.call(Method::GET, "/cards/card-1/history", None).await;
        assert_eq!(history["entries"][0]["operation"], "RENEW");
        // The old PAN is barred, as after a synchronous renewal with a new PAN.
        let (status, _) = bank.register_card("card-9", "c1", "VISA_LIGHT", OLD_PAN).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    async fn replace_without_card_data_moves_to_the_new_card_or_fails_visibly(db: TestDatabase) {
        let app = TestApp::builder(db.backend).worker().start().await;
        let stub = IssuerStub::start().await;
        let bank = app.bank_with("BANK000001", json!({"callback": stub.callback(10)})).await;
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", OLD_PAN).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.register_card("card-2", "c1", "VISA_LIGHT", "4111111111111129").await.0, StatusCode::NO_CONTENT);

        // The credentials are asked for under the new cardId.
        stub.credentials("BANK000001", "card-1b", credentials(&bank, NEW_PAN, "0632")).await;
        let (status, body) = bank.operate("card-1", "replace", json!({"reasonCode": "CARD_BROKEN", "newCardId": "card-1b"})).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        notified(&stub, "REPLACE", "SUCCESSFUL").await;
        assert_eq!(bank.card("card-1").await["state"], "REPLACED");
        assert_eq!(bank.card("card-1b").await["last4"], "0005");

        // An issuer that does not know the card: a 404 is final, and the issuer hears of it.
        stub.credentials("BANK000001", "card-2b", ResponseTemplate::new(404)).await;
        let (status, _) = bank.operate("card-2", "replace", json!({"reasonCode": "CARD_BROKEN", "newCardId": "card-2b"})).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let ops = notified(&stub, "REPLACE", "FAILED").await;
        let pending = ops.iter().find(|o| o["cardId"] == "card-2" && o["status"] == "PENDING").expect("PENDING");
        let failed = ops.iter().find(|o| o["cardId"] == "card-2" && o["status"] == "FAILED").expect("FAILED");
        assert_eq!(failed["details"]["pendingOperationId"], pending["operationId"]);
        assert_eq!(pending["details"]["newCardId"], "card-2b");
        assert_eq!(bank.card("card-2").await["state"], "ACTIVE", "a failed replacement changes nothing");
        let (status, _) = bank.call(Method::GET, "/cards/card-2b", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    async fn renew_without_card_data_is_checked_before_it_is_accepted(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let stub = IssuerStub::start().await;
        let with_callback = app.bank_with("BANK000001", json!({"callback": stub.callback(10)})).await;
        assert_eq!(with_callback.register_card("card-1", "c1", "VISA_LIGHT", OLD_PAN).await.0, StatusCode::NO_CONTENT);
        assert_eq!(with_callback.operate("card-1", "delete", json!({"reasonCode": "CLOSED_CARD"})).await.0, StatusCode::NO_CONTENT);
        let refused = with_callback.operate("card-1", "renew", json!({"reasonCode": "CARD_EXPIRING"})).await;
        assert_refused(&refused, StatusCode::FORBIDDEN, "OPERATION_NOT_ALLOWED", "");
        let refused = with_callback.operate("card-1", "renew", json!({"reasonCode": "CARD_LOST"})).await;
        assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{}", refused.1);
        let before = with_callback.notifications().await.len();

        // Without a callback there is nowhere to fetch the credentials from.
        let silent = app.bank("BANK000002").await;
        assert_eq!(silent.register_card("card-1", "c1", "VISA_LIGHT", OLD_PAN).await.0, StatusCode::NO_CONTENT);
        let refused = silent.operate("card-1", "renew", json!({"reasonCode": "CARD_EXPIRING"})).await;
        assert_refused(&refused, StatusCode::BAD_REQUEST, "FIELD_MISSING", "encryptedData");
        assert_eq!(with_callback.notifications().await.len(), before, "refusals queue nothing");
        assert_eq!(silent.notifications().await.len(), 1);
    }

    async fn digitizing_without_consumer_data_asks_the_issuer_first(db: TestDatabase) {
        let app = TestApp::builder(db.backend).sandbox().worker().start().await;
        let stub = IssuerStub::start().await;
        let mut callback = stub.callback(10);
        callback["storesConsumerData"] = json!(false);
        let bank = app.bank_with("BANK000001", json!({"callback": callback})).await;
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", OLD_PAN).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.register_card("card-2", "c2", "VISA_LIGHT", "4111111111111129").await.0, StatusCode::NO_CONTENT);
        let person = json!({"firstName": "Ada", "lastName": "Lovelace", "language": "en-GB"});
        stub.consumer("BANK000001", "c1", ResponseTemplate::new(200).set_body_json(person)).await;
        stub.consumer("BANK000001", "c2", ResponseTemplate::new(404)).await;

        let digitize = |card: &'static str| {
            let bank = &bank;
            async move {
                let (status, body) = bank
                    .call(Method::POST, &format!("/cards/{card}/digitalCards"), Some(json!({"wallet": "GOOGLE_PAY", "device": "Pixel 9"})))
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
                body["digitalCardId"].as_str().unwrap().to_owned()
            }
        };
        let known = digitize("card-1").await;
        let ops = notified(&stub, "DIGITIZE", "SUCCESSFUL").await;
        let digitized: Vec<&Value> = ops.iter().filter(|o| o["operation"] == "DIGITIZE").collect();
        assert_eq!(digitized[0]["status"], "PENDING");
        assert_eq!(digitized[0]["details"]["digitalCardId"], known.as_str());
        assert_eq!(digitized[1]["details"]["pendingOperationId"], digitized[0]["operationId"]);
        assert_eq!(digitized[1]["details"]["digitalCardId"], known.as_str());
        assert_eq!(digital_card_state(&bank, "card-1", &known).await, "ACTIVE");
        let lookups = stub.consumer_requests().await;
        assert_eq!(lookups, [("/banking/d1/v1/issuers/BANK000001/consumers/c1?cardId=card-1".to_owned(), "Bearer token-1".to_owned())]);
        // Used, not kept: cardplane still holds no personal information for the consumer.
        let (_, consumer) = bank.call(Method::GET, "/consumers/c1", None).await;
        assert!(consumer.get("personalInformation").is_none_or(Value::is_null), "{consumer}");

        // The wallet's token has its own notification, sent alone to the digital-card endpoint.
        let created = eventually("the digital card's CREATE", || async {
            let sent = stub.digital_card_notifications().await;
            (!sent.is_empty()).then_some(sent)
        })
        .await;
        assert_eq!(created[0].0, known);
        assert_eq!(created[0].1["operation"], "CREATE");
        assert_eq!(created[0].1["status"], "SUCCESSFUL");
        let fields: Vec<&String> = created[0].1.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["operation", "operationId", "status"]);

        // The issuer does not know the consumer: the digitization fails and the digital card goes.
        let unknown = digitize("card-2").await;
        let ops = notified(&stub, "DIGITIZE", "FAILED").await;
        let failed = ops.iter().find(|o| o["operation"] == "DIGITIZE" && o["status"] == "FAILED").unwrap();
        assert_eq!(failed["cardId"], "card-2");
        assert_eq!(digital_card_state(&bank, "card-2", &unknown).await, "DELETED");
        assert!(stub.digital_card_notifications().await.iter().all(|(id, _)| id != &unknown), "it never existed for the issuer");

        // Deleting the card deletes its digital card, and the issuer hears of both.
        let (status, _) = bank.operate("card-1", "delete", json!({"reasonCode": "CLOSED_CARD"})).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let sent = eventually("the digital card's DELETE", || async {
            let sent = stub.digital_card_notifications().await;
            (sent.len() == 2).then_some(sent)
        })
        .await;
        assert_eq!((sent[1].0.as_str(), sent[1].1["operation"].as_str()), (known.as_str(), Some("DELETE")));
    }
}

async fn digital_card_state(bank: &Bank<'_>, card: &str, id: &str) -> String {
    let (_, list) = bank.call(Method::GET, &format!("/cards/{card}/digitalCards"), None).await;
    let found = list["digitalCards"].as_array().unwrap().iter().find(|d| d["digitalCardId"] == id).cloned();
    found.expect("the digital card")["state"].as_str().unwrap().to_owned()
}
