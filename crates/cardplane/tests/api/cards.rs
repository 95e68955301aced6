//! Consumers and cards v2, black-box: the life cycle, every operation-table row, the uniqueness
//! rules, idempotency, and what each accepted change leaves in history and outbox.

use crate::support::{TestApp, assert_refused, bank_products};
use cardplane_app::ports::Clock;
use cardplane_testkit::backend_tests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const VISA_1: &str = "4111111111111111";
const VISA_2: &str = "4012888888881881";
const VISA_3: &str = "4222222222222";
const VISA_4: &str = "4000056655665556";
const MC_1: &str = "5555555555554444";

backend_tests! {
    async fn issuer_changes_reach_card_requests_here_at_once_and_elsewhere_within_a_second(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let mut bank = app.bank("BANK000001").await;
        // A second node on the same database and master key; the issuer's changes are made there.
        let other = cardplane::server::start_with(app.settings().clone(), app.clock.clone(), std::future::pending())
            .await
            .expect("a second node starts");
        let on_other = |method: Method, path: &str| app.client.request(method, format!("http://{}{path}", other.addr));
        let onboard_elsewhere = |products: Value| {
            let body = json!({"name": "Bank BANK000001", "assertionKeys": [{"kid": "sig-1", "jwk": bank.key.public_jwk()}],
                              "cardProducts": products});
            on_other(Method::PUT, "/admin/v1/issuers/BANK000001").json(&body).send()
        };
        let mut products = bank_products();
        // This node reads the issuer (and keeps it) for its first registration.
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", VISA_1).await.0, StatusCode::NO_CONTENT);

        // Another node changes a product this node keeps: seen here within a second.
        products[0]["authorisationMode"] = json!("FULL");
        assert_eq!(onboard_elsewhere(products.clone()).await.unwrap().status(), StatusCode::OK);
        app.clock.set(app.clock.now() + time::Duration::seconds(1));
        assert_refused(&bank.register_card("card-2", "c1", "VISA_LIGHT", VISA_2).await, StatusCode::FORBIDDEN, "OPERATION_NOT_ALLOWED", "card product VISA_LIGHT is in authorisation mode FULL");

        // A product added elsewhere, and a key rotated elsewhere, work here at once: what the kept
        // issuer lacks is looked for in the database.
        products.as_array_mut().unwrap().push(json!({"cardProductId": "VISA_NEW", "scheme": "VISA", "authorisationMode": "NONE"}));
        assert_eq!(onboard_elsewhere(products.clone()).await.unwrap().status(), StatusCode::OK);
        assert_eq!(bank.register_card("card-3", "c1", "VISA_NEW", VISA_3).await.0, StatusCode::NO_CONTENT);
        let rotated = on_other(Method::POST, "/admin/v1/issuers/BANK000001/encryption-keys:rotate").send().await.unwrap();
        assert_eq!(rotated.status(), StatusCode::OK);
        bank.encryption_jwk = rotated.json::<Value>().await.unwrap();
        assert_eq!(bank.register_card("card-4", "c1", "VISA_NEW", VISA_4).await.0, StatusCode::NO_CONTENT);

        // A change made on this node is seen here at once.
        products[0]["authorisationMode"] = json!("LIGHT");
        let body = json!({"name": "Bank BANK000001", "assertionKeys": [{"kid": "sig-1", "jwk": bank.key.public_jwk()}],
                          "cardProducts": products});
        assert_eq!(app.onboard("BANK000001", body).await.0, StatusCode::OK);
        assert_eq!(bank.register_card("card-2", "c1", "VISA_LIGHT", VISA_2).await.0, StatusCode::NO_CONTENT);
        other.stop().await.expect("a clean stop");
        app.stop().await;
    }

    async fn a_card_lives_its_whole_life(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        let (status, _) = bank
            .call(Method::PUT, "/consumers/alice", Some(json!({"personalInformation": {"firstName": "Alice", "email": "alice@example.com"}})))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(bank.register_card("card-1", "alice", "VISA_LIGHT", VISA_1).await.0, StatusCode::NO_CONTENT);
        let card = bank.card("card-1").await;
        assert_eq!(card["state"], "ACTIVE");
        assert_eq!(card["last4"], "1111");
        assert_eq!(card["expiry"], "1230");
        assert_eq!(card["scheme"], "VISA");
        assert!(!card.to_string().contains(VISA_1), "never the PAN");

        let steps: Vec<(&str, Value, &str)> = vec![
            ("suspend", json!({"reasonCode": "CARD_LOST", "reason": "lost at the station"}), "SUSPENDED"),
            ("resume", json!({"reasonCode": "CARD_FOUND"}), "ACTIVE"),
            ("renew", json!({"reasonCode": "CARD_EXPIRING", "encryptedData": bank.pan(VISA_1, "0734")}), "ACTIVE"),
        ];
        for (op, body, state) in steps {
            let answer = bank
                .v2(Method::POST, &format!("/cards/card-1/operations:{op}"))
                .header("x-user-id", "agent_7")
                .header("x-correlation-id", format!("life-{op}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::NO_CONTENT, "{op}: {}", answer.text().await.unwrap());
            assert_eq!(bank.card("card-1").await["state"], state, "after {op}");
        }
        assert_eq!(bank.card("card-1").await["expiry"], "0734", "renewed");

        let replace = json!({"reasonCode": "CARD_STOLEN", "newCardId": "card-2", "encryptedData": bank.pan(VISA_2, "0735")});
        assert_eq!(bank.operate("card-1", "replace", replace).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.card("card-1").await["state"], "REPLACED");
        let new_card = bank.card("card-2").await;
        assert_eq!((new_card["state"].as_str(), new_card["last4"].as_str(), new_card["consumerId"].as_str()), (Some("ACTIVE"), Some("1881"), Some("alice")));
        assert_eq!(bank.operate("card-2", "delete", json!({"reasonCode": "CLOSED_CARD"})).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.card("card-2").await["state"], "DELETED");

        let (status, history) = bank.call(Method::GET, "/cards/card-1/history", None).await;
        assert_eq!(status, StatusCode::OK);
        let entries = history["entries"].as_array().unwrap();
        let ops: Vec<&str> = entries.iter().map(|e| e["operation"].as_str().unwrap()).collect();
        assert_eq!(ops, ["REPLACE", "RENEW", "RESUME", "SUSPEND", "REGISTER"], "newest first");
        assert_eq!(entries[3]["reasonCode"], "CARD_LOST");
        assert_eq!(entries[3]["reason"], "lost at the station");
        assert_eq!(entries[3]["actor"], "agent_7");
        assert_eq!(entries[3]["correlationId"], "life-suspend");
        assert_eq!((entries[3]["fromState"].as_str(), entries[3]["toState"].as_str()), (Some("ACTIVE"), Some("SUSPENDED")));
        assert_eq!(entries[4]["actor"], "BANK000001", "the issuer when no x-user-id");

        let notifications = bank.notifications().await;
        let kinds: Vec<(&str, &str)> = notifications.iter().map(|n| (n["operation"].as_str().unwrap(), n["cardId"].as_str().unwrap())).collect();
        assert_eq!(kinds, [("REGISTER", "card-1"), ("SUSPEND", "card-1"), ("RESUME", "card-1"), ("RENEW", "card-1"), ("REPLACE", "card-1"), ("DELETE", "card-2")]);
        assert!(notifications.iter().all(|n| n["status"] == "SUCCESSFUL" && n["operationId"].as_str().is_some_and(|id| !id.is_empty())));
        assert_eq!(notifications[4]["details"], json!({"newCardId": "card-2"}));
        let ids: std::collections::HashSet<&str> = notifications.iter().map(|n| n["operationId"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), notifications.len(), "operation ids are unique");
        app.stop().await;
    }

    async fn every_row_of_the_operation_table(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        let pans = [VISA_1, VISA_2, VISA_3, VISA_4, "4917610000000000", "4556737586899855", "4539578763621486", "4916338506082832"];
        let mut next_pan = pans.iter();
        let mut fresh = |state: &'static str| {
            let pan = *next_pan.next().expect("enough test PANs");
            (pan, state)
        };
        // One card per from-state we need.
        let mut card_no = 0;
        let mut card_in = async |state: &str| -> String {
            card_no += 1;
            let id = format!("row-{card_no}");
            let (pan, _) = fresh("x");
            let initial = if state == "INACTIVE" { "INACTIVE" } else { "ACTIVE" };
            let body = json!({"consumerId": "c1", "cardProductId": "VISA_LIGHT", "state": initial, "encryptedData": bank.pan(pan, "1230")});
            assert_eq!(bank.call(Method::PUT, &format!("/cards/{id}"), Some(body)).await.0, StatusCode::NO_CONTENT);
            if state == "SUSPENDED" {
                assert_eq!(bank.operate(&id, "suspend", json!({"reasonCode": "USER_DECISION"})).await.0, StatusCode::NO_CONTENT);
            }
            if state == "DELETED" {
                assert_eq!(bank.operate(&id, "delete", json!({"reasonCode": "CLOSED_CARD"})).await.0, StatusCode::NO_CONTENT);
            }
            id
        };
        let inactive = card_in("INACTIVE").await;
        let active = card_in("ACTIVE").await;
        let suspended = card_in("SUSPENDED").await;
        let deleted = card_in("DELETED").await;

        // State refusals: 403 naming the state; nothing changes.
        for (card, op, reason, state) in [
            (&active, "activate", "ISSUER_DECISION", "ACTIVE"),
            (&suspended, "activate", "USER_DECISION", "SUSPENDED"),
            (&inactive, "suspend", "FRAUD", "INACTIVE"),
            (&suspended, "suspend", "FRAUD", "SUSPENDED"),
            (&active, "resume", "ISSUER_DECISION", "ACTIVE"),
            (&inactive, "resume", "ISSUER_DECISION", "INACTIVE"),
            (&deleted, "delete", "CLOSED_CARD", "DELETED"),
            (&deleted, "suspend", "CARD_LOST", "DELETED"),
            (&deleted, "resume", "CARD_FOUND", "DELETED"),
            (&deleted, "activate", "ISSUER_DECISION", "DELETED"),
        ] {
            let answer = bank.operate(card, op, json!({"reasonCode": reason})).await;
            assert_refused(&answer, StatusCode::FORBIDDEN, "OPERATION_NOT_ALLOWED", &format!("{} is not allowed on a card in state {state}", op.to_uppercase()));
        }
        // Reason refusals: 400 naming reasonCode.
        for (op, reason) in [("activate", "CARD_LOST"), ("suspend", "CARD_FOUND"), ("resume", "FRAUD"), ("delete", "CARD_BROKEN"), ("suspend", "NOT_A_REASON")] {
            let answer = bank.operate(&active, op, json!({"reasonCode": reason})).await;
            assert_refused(&answer, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", "reasonCode is invalid");
        }
        let answer = bank.operate(&active, "suspend", json!({})).await;
        assert_refused(&answer, StatusCode::BAD_REQUEST, "FIELD_MISSING", "reasonCode is required");
        assert_eq!(bank.card(&active).await["state"], "ACTIVE", "refusals change nothing");

        // Allowed rows.
        assert_eq!(bank.operate(&inactive, "activate", json!({"reasonCode": "USER_DECISION"})).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.card(&inactive).await["state"], "ACTIVE");
        assert_eq!(bank.operate(&suspended, "resume", json!({"reasonCode": "USER_DECISION"})).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.operate(&active, "delete", json!({"reasonCode": "FRAUD"})).await.0, StatusCode::NO_CONTENT);
        // Renew into INACTIVE leaves RENEW ongoing until activation.
        let renew = json!({"reasonCode": "ISSUER_DECISION", "newCardState": "INACTIVE", "encryptedData": bank.pan(VISA_1, "0731")});
        assert_eq!(bank.operate(&inactive, "renew", renew).await.0, StatusCode::NO_CONTENT);
        let renewed = bank.card(&inactive).await;
        assert_eq!((renewed["state"].as_str(), renewed["ongoingOperation"].as_str()), (Some("INACTIVE"), Some("RENEW")));
        assert_eq!(bank.operate(&inactive, "activate", json!({"reasonCode": "ISSUER_DECISION"})).await.0, StatusCode::NO_CONTENT);
        let activated = bank.card(&inactive).await;
        assert_eq!(activated["state"], "ACTIVE");
        assert!(activated.get("ongoingOperation").is_none());
        app.stop().await;
    }

    async fn resume_follows_the_suspension_reason(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        let pans = [VISA_1, VISA_2, VISA_3, VISA_4, "4917610000000000", "4556737586899855"];
        let cases = [
            ("CARD_STOLEN", "ISSUER_DECISION", false),
            ("CARD_BROKEN", "ISSUER_DECISION", false),
            ("FRAUD", "ISSUER_DECISION", false),
            ("CARD_LOST", "USER_DECISION", false),
            ("ISSUER_DECISION", "USER_DECISION", false),
            ("USER_DECISION", "ISSUER_DECISION", true),
        ];
        for (i, (suspended_for, resume_with, allowed)) in cases.into_iter().enumerate() {
            let id = format!("card-{i}");
            assert_eq!(bank.register_card(&id, "c1", "VISA_LIGHT", pans[i]).await.0, StatusCode::NO_CONTENT);
            assert_eq!(bank.operate(&id, "suspend", json!({"reasonCode": suspended_for})).await.0, StatusCode::NO_CONTENT);
            let answer = bank.operate(&id, "resume", json!({"reasonCode": resume_with})).await;
            if allowed {
                assert_eq!(answer.0, StatusCode::NO_CONTENT);
            } else {
                assert_refused(&answer, StatusCode::FORBIDDEN, "OPERATION_NOT_ALLOWED", &format!("a card suspended for {suspended_for}"));
                assert_eq!(bank.card(&id).await["state"], "SUSPENDED");
            }
        }
        // A stolen card can be replaced, and renewing it does not revive it.
        let renew = json!({"reasonCode": "CARD_EXPIRING", "encryptedData": bank.pan(pans[0], "0733")});
        assert_eq!(bank.operate("card-0", "renew", renew).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.card("card-0").await["state"], "SUSPENDED");
        let replace = json!({"reasonCode": "CARD_STOLEN", "newCardId": "card-0b", "encryptedData": bank.pan("4532015112830366", "0733")});
        assert_eq!(bank.operate("card-0", "replace", replace).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.card("card-0b").await["state"], "ACTIVE");
        app.stop().await;
    }

    async fn registration_uniqueness_rules(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", VISA_1).await.0, StatusCode::NO_CONTENT);
        // The same request again: a no-op, nothing new notified.
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", VISA_1).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.notifications().await.len(), 1);
        // Same cardId, another PAN, while live.
        assert_refused(&bank.register_card("card-1", "c1", "VISA_LIGHT", VISA_2).await, StatusCode::CONFLICT, "CARD_ID_IN_USE", "cardId card-1 is in use");
        // Same PAN, another cardId, while live.
        assert_refused(&bank.register_card("card-2", "c1", "VISA_LIGHT", VISA_1).await, StatusCode::CONFLICT, "PAN_ALREADY_REGISTERED", "this PAN");
        // After delete, the PAN is barred for ever, under any id.
        assert_eq!(bank.operate("card-1", "delete", json!({"reasonCode": "CLOSED_CARD"})).await.0, StatusCode::NO_CONTENT);
        assert_refused(&bank.register_card("card-3", "c1", "VISA_LIGHT", VISA_1).await, StatusCode::FORBIDDEN, "PAN_NOT_ALLOWED", "this PAN was deleted");
        assert_refused(&bank.register_card("card-1", "c1", "VISA_LIGHT", VISA_1).await, StatusCode::FORBIDDEN, "PAN_NOT_ALLOWED", "this PAN was deleted");
        // The deleted card's id may carry another PAN (registered, product not used for transactions).
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", VISA_2).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.card("card-1").await["last4"], "1881");
        // ...but not when its product is used for transactions.
        assert_eq!(bank.register_card("tx-1", "c1", "VISA_TX", VISA_3).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.operate("tx-1", "delete", json!({"reasonCode": "CLOSED_CARD"})).await.0, StatusCode::NO_CONTENT);
        assert_refused(&bank.register_card("tx-1", "c1", "VISA_LIGHT", VISA_4).await, StatusCode::CONFLICT, "CARD_ID_IN_USE", "cardId tx-1");
        // Product rules.
        assert_refused(&bank.register_card("card-9", "c1", "VISA_FULL", VISA_4).await, StatusCode::FORBIDDEN, "OPERATION_NOT_ALLOWED", "card product VISA_FULL is in authorisation mode FULL");
        assert_refused(&bank.register_card("card-9", "c1", "NO_SUCH", VISA_4).await, StatusCode::NOT_FOUND, "CARD_PRODUCT_NOT_FOUND", "card product NO_SUCH");
        assert_refused(&bank.register_card("card-9", "c1", "MC_LIGHT", VISA_4).await, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", "encryptedData is invalid");
        assert_eq!(bank.register_card("card-9", "c1", "MC_LIGHT", MC_1).await.0, StatusCode::NO_CONTENT);
        // A renewal or a replacement onto a PAN a live card holds is refused, and changes nothing.
        assert_eq!(bank.register_card("card-5", "c1", "VISA_LIGHT", VISA_4).await.0, StatusCode::NO_CONTENT);
        let renew = json!({"reasonCode": "CARD_EXPIRING", "encryptedData": bank.pan(VISA_4, "0734")});
        let replace = json!({"reasonCode": "CARD_LOST", "encryptedData": bank.pan(VISA_4, "0734"), "newCardId": "card-6"});
        assert_refused(&bank.operate("card-1", "renew", renew).await, StatusCode::CONFLICT, "PAN_ALREADY_REGISTERED", "this PAN");
        assert_refused(&bank.operate("card-1", "replace", replace).await, StatusCode::CONFLICT, "PAN_ALREADY_REGISTERED", "this PAN");
        assert_eq!(bank.card("card-1").await["last4"], "1881");
        assert_eq!(bank.call(Method::GET, "/cards/card-6", None).await.0, StatusCode::NOT_FOUND);
        app.stop().await;
    }

    async fn card_data_is_checked_and_never_echoed(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        let other = app.bank("BANK000002").await;
        let register = |data: String| json!({"consumerId": "c1", "cardProductId": "VISA_LIGHT", "encryptedData": data});
        let bad_luhn = bank.pan("4111111111111112", "1230");
        let bad_month = bank.pan(VISA_1, "1330");
        let to_other_issuer = other.pan(VISA_1, "1230");
        let mut tampered: Vec<String> = bank.pan(VISA_1, "1230").split('.').map(str::to_owned).collect();
        // Another first character of the ciphertext: writing a fixed 'A' left it unchanged (and the
        // card registered) whenever the random ciphertext already began with one, one run in 64.
        let first = if tampered[3].starts_with('A') { 'B' } else { 'A' };
        tampered[3] = format!("{first}{}", &tampered[3][1..]);
        for (case, data, text) in [
            ("bad luhn", bad_luhn, "encryptedData is invalid: pan fails the Luhn check"),
            ("bad month", bad_month, "encryptedData is invalid: exp must be MMYY"),
            ("other issuer's key", to_other_issuer, "encryptedData is invalid: names no encryption key"),
            ("tampered", tampered.join("."), "encryptedData is invalid: could not be decrypted"),
            ("not a JWE", "not-a-jwe".to_owned(), "encryptedData is invalid: is not a compact JWE"),
        ] {
            let answer = bank.call(Method::PUT, "/cards/card-1", Some(register(data))).await;
            assert_refused(&answer, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", text);
            assert!(!answer.1.to_string().contains("411111111111111"), "{case}: {}", answer.1);
        }
        let (status, _) = bank.call(Method::GET, "/cards/card-1", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "nothing stored");
        app.stop().await;
    }

    async fn create_issues_a_card_in_the_bin_range(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        let accounts = json!([{"default": true, "number": "FR76 3000 6000 0112", "currencyCode": "EUR", "type": "CHECKING"}]);
        let body = json!({"consumerId": "bob", "cardProductId": "VISA_LIGHT", "accounts": accounts});
        let answer = bank.call(Method::POST, "/cards", Some(body.clone())).await;
        assert_refused(&answer, StatusCode::NOT_FOUND, "CONSUMER_NOT_FOUND", "consumer bob");
        assert_eq!(bank.call(Method::PUT, "/consumers/bob", Some(json!({}))).await.0, StatusCode::NO_CONTENT);
        let (status, created) = bank.call(Method::POST, "/cards", Some(body.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let card = bank.card(created["cardId"].as_str().unwrap()).await;
        assert_eq!((card["state"].as_str(), card["scheme"].as_str(), card["consumerId"].as_str()), (Some("ACTIVE"), Some("VISA"), Some("bob")));
        let year = app.clock.now().year() + 3;
        assert_eq!(&card["expiry"].as_str().unwrap()[2..], format!("{:02}", year % 100), "the default 3-year validity");
        let (status, _) = bank.call(Method::POST, "/cards", Some(json!({"cardId": "chosen-id", "consumerId": "bob", "cardProductId": "MC_LIGHT", "state": "INACTIVE", "accounts": accounts}))).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(bank.card("chosen-id").await["state"], "INACTIVE");
        let answer = bank.call(Method::POST, "/cards", Some(json!({"cardId": "chosen-id", "consumerId": "bob", "cardProductId": "MC_LIGHT", "accounts": accounts}))).await;
        assert_refused(&answer, StatusCode::CONFLICT, "CARD_ID_IN_USE", "cardId chosen-id");
        let answer = bank.call(Method::POST, "/cards", Some(json!({"consumerId": "bob", "cardProductId": "AMEX_NOBIN", "accounts": accounts}))).await;
        assert_refused(&answer, StatusCode::FORBIDDEN, "OPERATION_NOT_ALLOWED", "card product AMEX_NOBIN has no BIN range");
        for (accounts, field) in [
            (json!([]), "accounts is invalid"),
            (json!([{"default": false, "number": "1", "currencyCode": "EUR", "type": "CHECKING"}]), "accounts is invalid: must have exactly one default"),
            (json!([{"default": true, "number": "1", "currencyCode": "eur", "type": "CHECKING"}]), "accounts[0].currencyCode is invalid"),
            (json!([{"default": true, "number": "1", "currencyCode": "EUR", "type": "GOLD"}]), "accounts[0].type is invalid"),
            (json!([{"default": true, "number": "1", "currencyCode": "EUR"}]), "accounts[0].type is required"),
        ] {
            let answer = bank.call(Method::POST, "/cards", Some(json!({"consumerId": "bob", "cardProductId": "VISA_LIGHT", "accounts": accounts}))).await;
            assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{field}");
            assert!(answer.1["error"].as_str().unwrap().starts_with(field), "{}", answer.1);
        }
        let created: Vec<String> = bank.notifications().await.iter().map(|n| n["operation"].as_str().unwrap().to_owned()).collect();
        assert_eq!(created, ["CREATE", "CREATE"]);
        app.stop().await;
    }

    async fn consumers_register_update_list_and_delete_with_their_cards(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        let info = json!({"personalInformation": {"firstName": "Carol", "lastName": "Kent", "language": "en-US",
            "mobilePhoneNumber": "+12125550123", "address": {"line1": "1 Main St", "city": "Springfield", "zipCode": "12345", "countryCode": "US"}}});
        assert_eq!(bank.call(Method::PUT, "/consumers/carol", Some(info)).await.0, StatusCode::NO_CONTENT);
        let update = json!({"personalInformation": {"email": "carol@example.com", "address": {"city": "Shelbyville"}}});
        assert_eq!(bank.call(Method::POST, "/consumers/carol/operations:update", Some(update)).await.0, StatusCode::NO_CONTENT);
        let (status, consumer) = bank.call(Method::GET, "/consumers/carol", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(consumer["state"], "ACTIVE");
        let info = &consumer["personalInformation"];
        assert_eq!((info["firstName"].as_str(), info["email"].as_str()), (Some("Carol"), Some("carol@example.com")), "merged field by field");
        assert_eq!((info["address"]["city"].as_str(), info["address"]["line1"].as_str()), (Some("Shelbyville"), Some("1 Main St")));

        // A card of an unknown consumer registers the consumer implicitly, without personal data.
        assert_eq!(bank.register_card("dave-1", "dave", "VISA_LIGHT", VISA_3).await.0, StatusCode::NO_CONTENT);
        let (status, dave) = bank.call(Method::GET, "/consumers/dave", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(dave.get("personalInformation").is_none());

        for (id, pan) in [("carol-1", VISA_1), ("carol-2", VISA_2)] {
            assert_eq!(bank.register_card(id, "carol", "VISA_LIGHT", pan).await.0, StatusCode::NO_CONTENT);
        }
        assert_eq!(bank.operate("carol-2", "suspend", json!({"reasonCode": "FRAUD"})).await.0, StatusCode::NO_CONTENT);
        let (status, list) = bank.call(Method::GET, "/consumers/carol/cards", None).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = list["cards"].as_array().unwrap().iter().map(|c| c["cardId"].as_str().unwrap()).collect();
        assert_eq!(ids, ["carol-1", "carol-2"]);

        let before = bank.notifications().await.len();
        assert_eq!(bank.call(Method::POST, "/consumers/carol/operations/delete", Some(json!({"reason": "customer left"}))).await.0, StatusCode::NO_CONTENT);
        for id in ["carol-1", "carol-2"] {
            assert_eq!(bank.card(id).await["state"], "DELETED", "{id} deleted with its consumer");
            let (_, history) = bank.call(Method::GET, &format!("/cards/{id}/history"), None).await;
            assert_eq!(history["entries"][0]["reasonCode"], "CLOSED_ACCOUNT");
        }
        let notifications = bank.notifications().await;
        let cascaded: Vec<(&str, &str)> = notifications[before..].iter().map(|n| (n["operation"].as_str().unwrap(), n["cardId"].as_str().unwrap())).collect();
        assert_eq!(cascaded, [("DELETE", "carol-1"), ("DELETE", "carol-2")], "one notification per card");
        let (_, consumer) = bank.call(Method::GET, "/consumers/carol", None).await;
        assert_eq!(consumer["state"], "DELETED");
        // Deleted is final.
        assert_refused(&bank.call(Method::PUT, "/consumers/carol", Some(json!({}))).await, StatusCode::FORBIDDEN, "CONSUMER_DELETED", "consumer carol");
        assert_refused(&bank.register_card("carol-3", "carol", "VISA_LIGHT", VISA_4).await, StatusCode::FORBIDDEN, "CONSUMER_DELETED", "consumer carol");
        assert_refused(&bank.register_card("carol-3", "carol", "VISA_LIGHT", VISA_1).await, StatusCode::FORBIDDEN, "PAN_NOT_ALLOWED", "this PAN");
        assert_refused(&bank.call(Method::POST, "/consumers/carol/operations:delete", Some(json!({}))).await, StatusCode::FORBIDDEN, "CONSUMER_DELETED", "consumer carol");
        assert_refused(&bank.call(Method::GET, "/consumers/nobody", None).await, StatusCode::NOT_FOUND, "CONSUMER_NOT_FOUND", "consumer nobody");
        // Field validation.
        for (body, text) in [
            (json!({"personalInformation": {"email": "not-an-email"}}), "personalInformation.email is invalid"),
            (json!({"personalInformation": {"language": "english"}}), "personalInformation.language is invalid"),
            (json!({"personalInformation": {"mobilePhoneNumber": "2125550123"}}), "personalInformation.mobilePhoneNumber is invalid"),
            (json!({"personalInformation": {"address": {"countryCode": "USA"}}}), "personalInformation.address.countryCode is invalid"),
            (json!({"personalInformation": {"nickname": "x"}}), "personalInformation.nickname is invalid"),
        ] {
            let answer = bank.call(Method::PUT, "/consumers/erin", Some(body)).await;
            assert_refused(&answer, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", text);
        }
        assert_refused(&bank.call(Method::GET, "/consumers/erin", None).await, StatusCode::NOT_FOUND, "CONSUMER_NOT_FOUND", "consumer erin");
        app.stop().await;
    }

    async fn idempotency_keys_replay_and_refuse_reuse(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", VISA_1).await.0, StatusCode::NO_CONTENT);
        let suspend = |key: &str, reason: &str| {
            bank.v2(Method::POST, "/cards/card-1/operations:suspend").header("idempotency-key", key).json(&json!({"reasonCode": reason})).send()
        };
        let first = suspend("key-1", "CARD_LOST").await.unwrap();
        assert_eq!(first.status(), StatusCode::NO_CONTENT);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let again = suspend("key-1", "CARD_LOST").await.unwrap();
        assert_eq!(again.status(), StatusCode::NO_CONTENT, "replayed, though a second suspend would be refused");
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let other_body = crate::support::read(suspend("key-1", "FRAUD").await.unwrap()).await;
        assert_refused(&other_body, StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key");
        let suspends = bank.notifications().await.iter().filter(|n| n["operation"] == "SUSPEND").count();
        assert_eq!(suspends, 1, "one suspension notified");
        // Without a key, the same request runs again (and is refused by the state).
        let answer = bank.operate("card-1", "suspend", json!({"reasonCode": "CARD_LOST"})).await;
        assert_eq!(answer.0, StatusCode::FORBIDDEN);

        // Create replays the same cardId.
        assert_eq!(bank.call(Method::PUT, "/consumers/bob", Some(json!({}))).await.0, StatusCode::NO_CONTENT);
        let create = || {
            bank.v2(Method::POST, "/cards").header("idempotency-key", "create-1").json(&json!({"consumerId": "bob", "cardProductId": "VISA_LIGHT",
                "accounts": [{"default": true, "number": "1", "currencyCode": "EUR", "type": "PREPAID"}]})).send()
        };
        let (status, first) = crate::support::read(create().await.unwrap()).await;
        assert_eq!(status, StatusCode::CREATED);
        let replay = create().await.unwrap();
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        let (status, second) = crate::support::read(replay).await;
        assert_eq!((status, second), (StatusCode::CREATED, first));
        let creates = bank.notifications().await.iter().filter(|n| n["operation"] == "CREATE").count();
        assert_eq!(creates, 1);
        // A refused request stores nothing under its key: fixing it and retrying with the key works.
        let refused = bank.v2(Method::PUT, "/consumers/x").header("idempotency-key", "k").json(&json!({"personalInformation": {"email": "bad"}})).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let bad_key = bank.v2(Method::PUT, "/consumers/x").header("idempotency-key", "").json(&json!({})).send().await.unwrap();
        assert_eq!(bad_key.status(), StatusCode::BAD_REQUEST);
        app.stop().await;
    }

    async fn both_operation_path_forms_and_validation_of_paths_and_headers(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        assert_eq!(bank.register_card("card-1", "c1", "VISA_LIGHT", VISA_1).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.call(Method::POST, "/cards/card-1/operations/suspend", Some(json!({"reasonCode": "USER_DECISION"}))).await.0, StatusCode::NO_CONTENT);
        assert_eq!(bank.call(Method::POST, "/cards/card-1/operations:resume", Some(json!({"reasonCode": "USER_DECISION"}))).await.0, StatusCode::NO_CONTENT);
        assert_refused(&bank.call(Method::POST, "/cards/card-1/operations:explode", Some(json!({}))).await, StatusCode::NOT_FOUND, "NOT_FOUND", "no route");
        assert_refused(&bank.call(Method::GET, "/cards/card%2F1", None).await, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", "cardId is invalid");
        assert_refused(&bank.call(Method::GET, "/cards/nope", None).await, StatusCode::NOT_FOUND, "CARD_NOT_FOUND", "card nope");
        assert_refused(&bank.operate("nope", "suspend", json!({"reasonCode": "FRAUD"})).await, StatusCode::NOT_FOUND, "CARD_NOT_FOUND", "card nope");
        let bad_user = crate::support::read(bank.v2(Method::GET, "/cards/card-1").header("x-user-id", "much-too-long-user-id").send().await.unwrap()).await;
        assert_refused(&bad_user, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", "x-user-id is invalid");
        let missing = bank.call(Method::PUT, "/cards/card-2", Some(json!({"cardProductId": "VISA_LIGHT", "encryptedData": "x"}))).await;
        assert_refused(&missing, StatusCode::BAD_REQUEST, "FIELD_MISSING", "consumerId is required");
        let unknown = bank.call(Method::PUT, "/cards/card-2", Some(json!({"consumerId": "c", "cardProductId": "VISA_LIGHT", "encryptedData": "x", "pan": "4111111111111111"}))).await;
        assert_refused(&unknown, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", "pan is invalid: is not a known field");
        assert!(!unknown.1.to_string().contains("4111111111111111"));
        let names = bank.call(Method::PUT, "/cards/card-2", Some(json!({"consumerId": "c", "cardProductId": "VISA_LIGHT", "encryptedData": "x", "cardholderName": "J0hn"}))).await;
        assert_refused(&names, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", "cardholderName is invalid");
        let stray = bank.operate("card-1", "suspend", json!({"reasonCode": "FRAUD", "newCardId": "x"})).await;
        assert_refused(&stray, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", "newCardId is invalid");
        let replace = bank.operate("card-1", "replace", json!({"reasonCode": "CARD_LOST", "encryptedData": bank.pan(VISA_2, "1230")})).await;
        assert_refused(&replace, StatusCode::BAD_REQUEST, "FIELD_MISSING", "newCardId is required");
        let same = bank.operate("card-1", "replace", json!({"reasonCode": "CARD_LOST", "newCardId": "card-1", "encryptedData": bank.pan(VISA_2, "1230")})).await;
        assert_refused(&same, StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", "newCardId is invalid");
        let same_pan = bank.operate("card-1", "replace", json!({"reasonCode": "CARD_LOST", "newCardId": "card-2", "encryptedData": bank.pan(VISA_1, "1230")})).await;
        assert_refused(&same_pan, StatusCode::FORBIDDEN, "PAN_NOT_ALLOWED", "this PAN");
        assert_eq!(bank.card("card-1").await["state"], "ACTIVE", "refused replaces change nothing");
        app.stop().await;
    }
}
