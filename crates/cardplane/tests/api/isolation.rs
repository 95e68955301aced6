//! Tenant isolation and the bearer guard: no call with issuer A's token can read, change or even
//! detect issuer B's consumers and cards.

use crate::support::{TestApp, assert_refused, read};
use cardplane_testkit::backend_tests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;

/// Every banking route of the OpenAPI document (so a new route is covered the day it is added), as
/// (method, path under the issuer, body). The guard answers before any body is read.
fn every_route(bank_b_card: &str) -> Vec<(Method, String, Option<Value>)> {
    let document = serde_json::to_value(cardplane_api::openapi::document()).unwrap();
    let mut routes = Vec::new();
    for (template, item) in document["paths"].as_object().unwrap() {
        let Some(under_issuer) = template.strip_prefix("/banking/v2/issuers/{issuerId}") else { continue };
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let path = under_issuer.replace("{consumerId}", "bob").replace("{cardId}", bank_b_card);
            let body = (method != Method::GET).then(|| json!({"reasonCode": "ISSUER_DECISION"}));
            routes.push((method, path, body));
        }
    }
    assert!(routes.len() >= 25, "only {} banking routes in the document", routes.len());
    routes
}

backend_tests! {
    async fn a_token_of_one_issuer_cannot_touch_or_detect_another(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank_a = app.bank("BANK00000A").await;
        let bank_b = app.bank("BANK00000B").await;
        assert_eq!(bank_b.call(Method::PUT, "/consumers/bob", Some(json!({"personalInformation": {"firstName": "Bob"}}))).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank_b.register_card("b-card", "bob", "VISA_LIGHT", "4111111111111111").await.0, StatusCode::NO_CONTENT);
        let before = (bank_b.card("b-card").await, bank_b.notifications().await.len());

        // A's token on B's paths: the same 403 for existing and missing resources alike.
        for card in ["b-card", "no-such-card"] {
            for (method, path, body) in every_route(card) {
                let mut request = app.request(method.clone(), &format!("/banking/v2/issuers/BANK00000B{path}")).bearer_auth(&bank_a.token);
                if let Some(body) = body {
                    request = request.json(&body);
                }
                let answer = read(request.send().await.unwrap()).await;
                assert_refused(&answer, StatusCode::FORBIDDEN, "ISSUER_MISMATCH", "the access token belongs to another issuer");
            }
        }
        // And A's own namespace never shows B's data.
        assert_refused(&bank_a.call(Method::GET, "/cards/b-card", None).await, StatusCode::NOT_FOUND, "CARD_NOT_FOUND", "card b-card");
        assert_refused(&bank_a.call(Method::GET, "/consumers/bob", None).await, StatusCode::NOT_FOUND, "CONSUMER_NOT_FOUND", "consumer bob");
        // The same PAN may live at both issuers: uniqueness is per issuer, and says nothing across.
        assert_eq!(bank_a.register_card("a-card", "alice", "VISA_LIGHT", "4111111111111111").await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank_a.register_card("b-card", "alice", "VISA_LIGHT", "4012888888881881").await.0, StatusCode::NO_CONTENT, "cardIds are per issuer");

        assert_eq!((bank_b.card("b-card").await, bank_b.notifications().await.len()), before, "B is untouched");
        app.stop().await;
    }

    async fn bearer_tokens_are_required_checked_and_expire(db: TestDatabase) {
        let mut app = TestApp::builder(db.backend).start().await;
        let token = {
            let bank = app.bank("BANK000001").await;
            assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", "4111111111111111").await.0, StatusCode::NO_CONTENT);
            bank.token.clone()
        };
        let get = |token: Option<&str>| {
            let request = app.request(Method::GET, "/banking/v2/issuers/BANK000001/cards/card-1");
            let request = match token { Some(t) => request.bearer_auth(t), None => request };
            request.send()
        };
        let none = get(None).await.unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(none.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
        assert_refused(&read(none).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "a bearer access token is required");
        for forged in ["garbage", "a.b.c", &format!("{token}x")] {
            assert_refused(&read(get(Some(forged)).await.unwrap()).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "the access token is invalid");
        }
        assert_eq!(get(Some(&token)).await.unwrap().status(), StatusCode::OK);

        // A restart does not log issuers out.
        app.restart().await;
        let get = |token: &str| app.request(Method::GET, "/banking/v2/issuers/BANK000001/cards/card-1").bearer_auth(token).send();
        assert_eq!(get(&token).await.unwrap().status(), StatusCode::OK, "valid after a restart");
        // 900 s later it has expired.
        app.clock.advance(Duration::seconds(901));
        assert_refused(&read(get(&token).await.unwrap()).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "the access token is invalid or expired");
        app.stop().await;
    }
}
