//! Digital cards follow their card: untouched by suspend and resume, moved by replace and by a renew
//! onto a new cardId, deleted with the card or its consumer [D1]. Digitizing is a sandbox call.

use crate::support::{TestApp, assert_refused};
use cardplane_testkit::backend_tests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn digitize(bank: &crate::support::Bank<'_>, card: &str, wallet: &str) -> (StatusCode, Value) {
    bank.call(
        Method::POST,
        &format!("/cards/{card}/digitalCards"),
        Some(json!({"wallet": wallet, "device": "Pixel 9"})),
    )
    .await
}

async fn states(bank: &crate::support::Bank<'_>, card: &str) -> Vec<String> {
    let (status, list) = bank.call(Method::GET, &format!("/cards/{card}/digitalCards"), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["digitalCards"].as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap().to_owned()).collect()
}

backend_tests! {
    async fn digital_cards_follow_their_card(db: TestDatabase) {
        let app = TestApp::builder(db.backend).sandbox().start().await;
        let bank = app.bank("BANK000001").await;
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", "4111111111111111").await.0, StatusCode::NO_CONTENT);
        let (status, created) = digitize(&bank, "card-1", "APPLE_PAY").await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert!(created["digitalCardId"].as_str().is_some_and(|id| !id.is_empty()));
        assert_eq!(digitize(&bank, "card-1", "GOOGLE_PAY").await.0, StatusCode::CREATED);
        let digitized: Vec<Value> = bank.notifications().await.into_iter().filter(|n| n["operation"] == "DIGITIZE").collect();
        assert_eq!(digitized.len(), 2);
        assert_eq!(digitized[0]["details"]["wallet"], "APPLE_PAY");
        assert_eq!(digitized[0]["details"]["digitalCardId"], created["digitalCardId"]);

        // Suspend and resume leave the tokens alone.
        assert_eq!(bank.operate("card-1", "suspend", json!({"reasonCode": "CARD_LOST"})).await.0, StatusCode::NO_CONTENT);
        assert_eq!(states(&bank, "card-1").await, ["ACTIVE", "ACTIVE"]);
        assert_refused(&digitize(&bank, "card-1", "APPLE_PAY").await, StatusCode::FORBIDDEN, "OPERATION_NOT_ALLOWED", "DIGITIZE is not allowed on a card in state SUSPENDED");
        assert_eq!(bank.operate("card-1", "resume", json!({"reasonCode": "CARD_FOUND"})).await.0, StatusCode::NO_CONTENT);

        // Replace moves them to the new card.
        let replace = json!({"reasonCode": "CARD_STOLEN", "newCardId": "card-2", "encryptedData": bank.pan("4012888888881881", "1231")});
        assert_eq!(bank.operate("card-1", "replace", replace).await.0, StatusCode::NO_CONTENT);
        assert!(states(&bank, "card-1").await.is_empty());
        assert_eq!(states(&bank, "card-2").await, ["ACTIVE", "ACTIVE"]);
        // So does a renew onto a new cardId.
        let renew = json!({"reasonCode": "CARD_EXPIRING", "newCardId": "card-3", "encryptedData": bank.pan("4012888888881881", "1233")});
        assert_eq!(bank.operate("card-2", "renew", renew).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.card("card-2").await["state"], "REPLACED");
        assert_eq!(states(&bank, "card-3").await, ["ACTIVE", "ACTIVE"]);
        // Delete deletes them.
        assert_eq!(bank.operate("card-3", "delete", json!({"reasonCode": "CLOSED_CARD"})).await.0, StatusCode::NO_CONTENT);
        assert_eq!(states(&bank, "card-3").await, ["DELETED", "DELETED"]);

        // Deleting a consumer deletes the tokens of every card of it.
        assert_eq!(bank.register_card("card-4", "c2", "VISA_LIGHT", "4222222222222").await.0, StatusCode::NO_CONTENT);
        assert_eq!(digitize(&bank, "card-4", "SAMSUNG_PAY").await.0, StatusCode::CREATED);
        assert_eq!(bank.call(Method::POST, "/consumers/c2/operations:delete", Some(json!({}))).await.0, StatusCode::NO_CONTENT);
        assert_eq!(states(&bank, "card-4").await, ["DELETED"]);

        assert_refused(&digitize(&bank, "card-4", "BANK_WALLET").await, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", "wallet is invalid");
        assert_refused(&digitize(&bank, "nope", "APPLE_PAY").await, StatusCode::NOT_FOUND, "CARD_NOT_FOUND", "card nope");
        app.stop().await;
    }

    async fn digitizing_is_a_sandbox_call(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", "4111111111111111").await.0, StatusCode::NO_CONTENT);
        assert_refused(&digitize(&bank, "card-1", "APPLE_PAY").await, StatusCode::FORBIDDEN, "SANDBOX_ONLY", "digitizing a card is a sandbox call");
        assert!(states(&bank, "card-1").await.is_empty());
        app.stop().await;
    }
}
