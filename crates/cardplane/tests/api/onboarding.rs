//! Foundation: health, the error envelope, and onboarding through `/admin/v1`.

use crate::support::{SigningKey, TestApp, onboarding};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardplane_testkit::backend_tests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Checks `jwk` is a public P-256 encryption JWK whose kid is its RFC 7638 thumbprint.
fn assert_encryption_jwk(jwk: &Value) {
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["use"], "enc");
    assert_eq!(jwk["alg"], "ECDH-ES");
    assert!(jwk.get("d").is_none(), "never the private key");
    let coordinate = |c: &str| URL_SAFE_NO_PAD.decode(jwk[c].as_str().unwrap()).unwrap();
    let mut point = vec![4u8];
    point.extend(coordinate("x"));
    point.extend(coordinate("y"));
    assert_eq!(point.len(), 65);
    // Usable for what it is for: an ECDH agreement with it succeeds.
    use aws_lc_rs::agreement::{ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral};
    let ours = EphemeralPrivateKey::generate(&ECDH_P256, &aws_lc_rs::rand::SystemRandom::new()).unwrap();
    agree_ephemeral(ours, UnparsedPublicKey::new(&ECDH_P256, &point), (), |_| Ok(())).expect("a point on P-256");
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    let thumbprint = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
    assert_eq!(jwk["kid"], thumbprint.as_str());
}

fn assert_error(body: &Value, code: &str, field: &str) {
    assert_eq!(body["errorCode"], code, "{body}");
    let text = body["error"].as_str().expect("an error text");
    assert!(text.starts_with(field), "expected the error to name {field}: {body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "only errorCode and error: {body}");
}

backend_tests! {
    async fn health_and_readiness(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let (status, body) = app.call(Method::GET, "/healthz", None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "UP"})));
        let (status, body) = app.call(Method::GET, "/readyz", None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "READY"})));
        app.stop().await;
    }

    async fn an_issuer_is_onboarded_read_back_and_survives_a_restart(db: TestDatabase) {
        let mut app = TestApp::builder(db.backend).start().await;
        let key = SigningKey::generate();
        let (status, onboarded) = app.onboard("BANK000001", onboarding("Bank One", &key)).await;
        assert_eq!(status, StatusCode::OK, "{onboarded}");
        assert_eq!(onboarded["issuerId"], "BANK000001");
        assert_eq!(onboarded["name"], "Bank One");
        assert_eq!(onboarded["assertionKeys"][0]["kid"], "issuer-sig-1");
        assert_eq!(onboarded["assertionKeys"][0]["jwk"], key.public_jwk());
        assert_eq!(onboarded["cardProducts"][0], json!({
            "cardProductId": "VISA_CLASSIC", "scheme": "VISA", "authorisationMode": "LIGHT",
            "binRange": {"from": "41111100", "to": "41111199"}, "physical": true, "validityYears": 4,
            "usedForTransactions": true
        }));
        assert_eq!(onboarded["callback"], json!({
            "baseUrl": "http://127.0.0.1:9/bank", "tokenUrl": "http://127.0.0.1:9/bank/authz/d1/v1/oauth2/token",
            "clientId": "d1-client", "scope": "d1:notify", "maxBatchSize": 20, "storesConsumerData": false
        }));
        assert!(!onboarded.to_string().contains("the-client-secret"), "never answers with secrets");
        assert_eq!(onboarded["walletServer"]["pods"]["pod-1"], "http://127.0.0.1:9/ws1");
        let keys = onboarded["encryptionKeys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_encryption_jwk(&keys[0]);

        let (status, read) = app.call(Method::GET, "/admin/v1/issuers/BANK000001", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(read, onboarded);

        app.restart().await;
        let (status, after_restart) = app.call(Method::GET, "/admin/v1/issuers/BANK000001", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(after_restart, onboarded);
        app.stop().await;
    }

    async fn onboarding_again_keeps_the_keys_and_creation_time(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let key = SigningKey::generate();
        let (_, first) = app.onboard("BANK000001", onboarding("Bank One", &key)).await;
        let mut changed = onboarding("Bank One Renamed", &key);
        changed["cardProducts"] = json!([]);
        let (status, second) = app.onboard("BANK000001", changed).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(second["name"], "Bank One Renamed");
        assert_eq!(second["cardProducts"], json!([]));
        assert_eq!(second["encryptionKeys"], first["encryptionKeys"]);
        assert_eq!(second["createdAt"], first["createdAt"]);
        app.stop().await;
    }

    async fn a_pem_assertion_key_is_accepted(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let key = SigningKey::generate();
        let mut body = onboarding("Bank One", &key);
        body["assertionKeys"] = json!([{ "kid": "pem-key", "pem": key.public_pem() }]);
        let (status, onboarded) = app.onboard("BANK000001", body).await;
        assert_eq!(status, StatusCode::OK, "{onboarded}");
        assert_eq!(onboarded["assertionKeys"][0]["jwk"], key.public_jwk());
        app.stop().await;
    }

    async fn issuers_are_listed(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let key = SigningKey::generate();
        app.onboard("BANK000002", onboarding("Two", &key)).await;
        app.onboard("BANK000001", onboarding("One", &key)).await;
        let (status, list) = app.call(Method::GET, "/admin/v1/issuers", None).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = list["issuers"].as_array().unwrap().iter().map(|i| i["issuerId"].as_str().unwrap()).collect();
        assert_eq!(ids, ["BANK000001", "BANK000002"]);
        app.stop().await;
    }

    async fn malformed_onboardings_are_refused_naming_the_field_and_store_nothing(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let key = SigningKey::generate();
        let good = onboarding("Bank One", &key);
        // Sets (or adds) the member at `pointer`.
        let with = |pointer: &str, value: Value| {
            let mut body = good.clone();
            let (parent, member) = pointer.rsplit_once('/').unwrap();
            match body.pointer_mut(parent).unwrap_or_else(|| panic!("{pointer}")) {
                Value::Object(object) => {
                    object.insert(member.to_owned(), value);
                }
                Value::Array(array) => array[member.parse::<usize>().unwrap()] = value,
                _ => panic!("{pointer}"),
            }
            body
        };
        let without = |field: &str| {
            let mut body = good.clone();
            body.as_object_mut().unwrap().remove(field);
            body
        };
        let mut private_jwk = key.public_jwk();
        private_jwk["d"] = json!("AAAA");
        let mut off_curve = key.public_jwk();
        off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
        let duplicated_kid = json!([{"kid": "k", "jwk": key.public_jwk()}, {"kid": "k", "jwk": key.public_jwk()}]);
        let cases: Vec<(Value, &str, &str)> = vec![
            (without("name"), "FIELD_MISSING", "name"),
            (without("assertionKeys"), "FIELD_MISSING", "assertionKeys"),
            (with("/name", json!(42)), "FIELD_INVALID_FORMAT", "name"),
            (with("/name", json!("")), "FIELD_INVALID_FORMAT", "name"),
            (with("/assertionKeys", json!([])), "FIELD_INVALID_FORMAT", "assertionKeys"),
            (with("/assertionKeys/0/kid", json!("bad kid!")), "FIELD_INVALID_FORMAT", "assertionKeys[0].kid"),
            (with("/assertionKeys/0/jwk", json!({"kty": "RSA"})), "FIELD_INVALID_FORMAT", "assertionKeys[0].jwk.kty"),
            (with("/assertionKeys/0/jwk", private_jwk), "FIELD_INVALID_FORMAT", "assertionKeys[0].jwk.d"),
            (with("/assertionKeys/0/jwk", off_curve), "FIELD_INVALID_FORMAT", "assertionKeys[0]"),
            (with("/assertionKeys/0", json!({"kid": "k"})), "FIELD_MISSING", "assertionKeys[0].jwk"),
            (with("/assertionKeys/0", json!({"kid": "k", "pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"})), "FIELD_INVALID_FORMAT", "assertionKeys[0].pem"),
            (with("/assertionKeys", duplicated_kid), "FIELD_INVALID_FORMAT", "assertionKeys[1].kid"),
            (with("/cardProducts/0/scheme", json!("DINERS")), "FIELD_INVALID_FORMAT", "cardProducts[0].scheme"),
            (with("/cardProducts/0/authorisationMode", json!("SOME")), "FIELD_INVALID_FORMAT", "cardProducts[0].authorisationMode"),
            (with("/cardProducts/0/binRange/from", json!("51111100")), "FIELD_INVALID_FORMAT", "cardProducts[0].binRange.from"),
            (with("/cardProducts/0/validityYears", json!(11)), "FIELD_INVALID_FORMAT", "cardProducts[0].validityYears"),
            (with("/cardProducts/0/cardProductId", json!("x".repeat(49))), "FIELD_INVALID_FORMAT", "cardProducts[0].cardProductId"),
            (with("/cardProducts/0/physical", json!("yes")), "FIELD_INVALID_FORMAT", "cardProducts[0].physical"),
            (with("/callback/baseUrl", json!("ftp://bank")), "FIELD_INVALID_FORMAT", "callback.baseUrl"),
            (with("/callback/maxBatchSize", json!(0)), "FIELD_INVALID_FORMAT", "callback.maxBatchSize"),
            (with("/callback/maxBatchSize", json!(101)), "FIELD_INVALID_FORMAT", "callback.maxBatchSize"),
            (with("/callback/clientSecret", Value::Null), "FIELD_MISSING", "callback.clientSecret"),
            (with("/walletServer/pods", json!({"pod-1": "not a url"})), "FIELD_INVALID_FORMAT", "walletServer.pods.pod-1"),
            (with("/callback/unknown", json!(1)), "FIELD_INVALID_FORMAT", "callback.unknown"),
            (with("/issuerId", json!("BANK000009")), "FIELD_INVALID_FORMAT", "issuerId"),
        ];
        for (body, code, field) in cases {
            let (status, answer) = app.onboard("BANK000001", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
            assert_error(&answer, code, field);
        }
        let (status, answer) = app.onboard("BANK-1", good.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_error(&answer, "FIELD_INVALID_FORMAT", "issuerId");

        let (status, answer) = app.call(Method::GET, "/admin/v1/issuers/BANK000001", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
        assert_error(&answer, "ISSUER_NOT_FOUND", "issuer BANK000001");
        let (_, list) = app.call(Method::GET, "/admin/v1/issuers", None).await;
        assert_eq!(list, json!({"issuers": []}));
        app.stop().await;
    }

    async fn bodies_that_are_not_json_or_too_large_are_refused(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let path = "/admin/v1/issuers/BANK000001";
        let response = app.request(Method::PUT, path).header("content-type", "text/plain").body("{}").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_error(&response.json().await.unwrap(), "UNSUPPORTED_MEDIA_TYPE", "the body");
        let response = app.request(Method::PUT, path).header("content-type", "application/json").body("{\"name\":").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_error(&response.json().await.unwrap(), "FIELD_INVALID_FORMAT", "body");
        let huge = json!({ "name": "x".repeat(70 * 1024) });
        let (status, answer) = app.onboard("BANK000001", huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_error(&answer, "PAYLOAD_TOO_LARGE", "the body");
        app.stop().await;
    }

    async fn encryption_keys_rotate_and_old_ones_stay_listed(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let (_, onboarded) = app.onboard("BANK000001", onboarding("Bank One", &SigningKey::generate())).await;
        let first = onboarded["encryptionKeys"][0].clone();
        let (status, rotated) = app.call(Method::POST, "/admin/v1/issuers/BANK000001/encryption-keys:rotate", None).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        assert_encryption_jwk(&rotated);
        assert_ne!(rotated["kid"], first["kid"]);
        let (status, set) = app.call(Method::GET, "/admin/v1/issuers/BANK000001/encryption-keys", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(set, json!({ "keys": [rotated, first] }), "the active key first, the old one kept");
        let (status, _) = app.call(Method::POST, "/admin/v1/issuers/BANK000001/encryption-keys/rotate", None).await;
        assert_eq!(status, StatusCode::OK, "the slash form is accepted too");
        let (status, answer) = app.call(Method::POST, "/admin/v1/issuers/NOBANK0001/encryption-keys:rotate", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&answer, "ISSUER_NOT_FOUND", "issuer NOBANK0001");
        app.stop().await;
    }

    async fn the_admin_token_is_required_when_configured(db: TestDatabase) {
        let app = TestApp::builder(db.backend).admin_token("s3cr3t-admin-token").start().await;
        let url = format!("{}/admin/v1/issuers", app.base);
        let none = app.client.get(&url).send().await.unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(none.headers()["www-authenticate"], "Bearer");
        assert_error(&none.json().await.unwrap(), "UNAUTHORIZED", "a valid admin bearer token");
        let wrong = app.client.get(&url).bearer_auth("s3cr3t-admin-tokem").send().await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let (status, _) = app.call(Method::GET, "/admin/v1/issuers", None).await;
        assert_eq!(status, StatusCode::OK, "the right token passes");
        let (status, _) = app.call(Method::GET, "/healthz", None).await;
        assert_eq!(status, StatusCode::OK, "health needs no token");
        app.stop().await;
    }

    async fn unknown_routes_and_methods_answer_in_the_error_envelope(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let (status, body) = app.call(Method::GET, "/banking/v9/nothing", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&body, "NOT_FOUND", "no route for GET /banking/v9/nothing");
        let (status, body) = app.call(Method::DELETE, "/admin/v1/issuers", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_error(&body, "METHOD_NOT_ALLOWED", "DELETE is not allowed");
        app.stop().await;
    }

    async fn correlation_ids_are_echoed_made_or_refused(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let given = app.request(Method::GET, "/healthz").header("x-correlation-id", "trace_123-abc").send().await.unwrap();
        assert_eq!(given.headers()["x-correlation-id"], "trace_123-abc");
        let made = app.request(Method::GET, "/healthz").send().await.unwrap();
        let id = made.headers()["x-correlation-id"].to_str().unwrap().to_owned();
        assert!(!id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric()));
        let bad = app.request(Method::GET, "/healthz").header("x-correlation-id", "has spaces in it").send().await.unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_ne!(bad.headers()["x-correlation-id"], "has spaces in it");
        assert_error(&bad.json().await.unwrap(), "FIELD_INVALID_FORMAT", "x-correlation-id");
        app.stop().await;
    }

    async fn issuers_in_the_configuration_file_are_onboarded_at_start(db: TestDatabase) {
        let key = SigningKey::generate();
        let jwk = key.public_jwk();
        let toml = format!(
            r#"
            [[issuers]]
            issuerId = "TOMLBANK01"
            name = "Bank from TOML"
            assertionKeys = [{{ kid = "k1", jwk = {{ kty = "EC", crv = "P-256", x = "{}", y = "{}" }} }}]
            cardProducts = [{{ cardProductId = "MC_DEBIT", scheme = "MASTERCARD", authorisationMode = "NONE" }}]
            "#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let app = TestApp::builder(db.backend).toml_issuers(&toml).start().await;
        let (status, issuer) = app.call(Method::GET, "/admin/v1/issuers/TOMLBANK01", None).await;
        assert_eq!(status, StatusCode::OK, "{issuer}");
        assert_eq!(issuer["cardProducts"][0]["scheme"], "MASTERCARD");
        assert_eq!(issuer["cardProducts"][0]["validityYears"], 3, "the default validity");
        assert_eq!(issuer["assertionKeys"][0]["jwk"], jwk);
        app.stop().await;
    }
}
