//! Issuer authentication: the token endpoint against assertions made by pyjwt (the way real D1
//! integrations make them), and its refusals.

use crate::support::TestApp;
use cardplane_testkit::{INTEROP_FIXTURE, backend_tests};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

pub fn fixture() -> Value {
    serde_json::from_str(INTEROP_FIXTURE).unwrap()
}

/// Onboards the fixture's issuer, with the fixture's signing key, and pins the clock to the
/// fixture's time.
pub async fn onboard_fixture_issuer(app: &TestApp) -> Value {
    let fixture = fixture();
    app.clock.set(OffsetDateTime::from_unix_timestamp(fixture["now"].as_i64().unwrap()).unwrap());
    let body = json!({
        "name": "Interop Bank",
        "assertionKeys": [fixture["assertionKey"]],
        "cardProducts": [{ "cardProductId": "VISA_LIGHT", "scheme": "VISA", "authorisationMode": "LIGHT" }]
    });
    let (status, answer) = app.onboard(fixture["issuerId"].as_str().unwrap(), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    fixture
}

/// Posts a token request as a form, the way D1 clients do.
pub async fn token_form(app: &TestApp, assertion: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = app
        .request(Method::POST, "/authz/v1/oauth2/token")
        .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion)])
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.json().await.unwrap())
}

backend_tests! {
    async fn a_pyjwt_assertion_gets_a_token(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let fixture = onboard_fixture_issuer(&app).await;
        let (status, headers, body) = token_form(&app, fixture["assertions"]["valid"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert!(body["scope"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(body["access_token"].as_str().is_some_and(|t| t.len() > 20));
        assert_eq!(headers["cache-control"], "no-store");

        // JSON bodies are accepted too, and the optional claims may be absent or a list.
        for case in ["validMinimal", "validAudienceList"] {
            let (status, body) = app
                .call(Method::POST, "/authz/v1/oauth2/token", Some(json!({
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": fixture["assertions"][case],
                })))
                .await;
            assert_eq!(status, StatusCode::OK, "{case}: {body}");
        }
        app.stop().await;
    }

    async fn bad_assertions_are_refused_in_the_oauth_shape(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let fixture = onboard_fixture_issuer(&app).await;
        let cases = [
            ("algNone", "invalid_request"),
            ("hs256WithPublicKey", "invalid_grant"),
            ("unknownKid", "invalid_grant"),
            ("signedByAnotherKey", "invalid_grant"),
            ("expired", "invalid_grant"),
            ("thirtyMinutes", "invalid_grant"),
            ("issNotSub", "invalid_grant"),
            ("wrongAudience", "invalid_grant"),
            ("iatInTheFuture", "invalid_grant"),
            ("noExp", "invalid_grant"),
            ("unknownIssuer", "invalid_grant"),
        ];
        for (case, error) in cases {
            let (status, headers, body) = token_form(&app, fixture["assertions"][case].as_str().unwrap()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
            assert_eq!(body["error"], error, "{case}: {body}");
            assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{case}");
            assert!(body.get("access_token").is_none());
            assert_eq!(headers["cache-control"], "no-store");
        }
        app.stop().await;
    }

    async fn a_jti_cannot_be_replayed(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let fixture = onboard_fixture_issuer(&app).await;
        let assertion = fixture["assertions"]["valid"].as_str().unwrap();
        assert_eq!(token_form(&app, assertion).await.0, StatusCode::OK);
        let (status, _, body) = token_form(&app, assertion).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"error": "invalid_grant", "error_description": "this jti was already used"}));
        // The assertions without a jti may be used again (D1 does not require one).
        let minimal = fixture["assertions"]["validMinimal"].as_str().unwrap();
        assert_eq!(token_form(&app, minimal).await.0, StatusCode::OK);
        assert_eq!(token_form(&app, minimal).await.0, StatusCode::OK);
        app.stop().await;
    }

    async fn malformed_token_requests_are_refused(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        onboard_fixture_issuer(&app).await;
        let post = |form: Vec<(&'static str, &'static str)>| {
            app.request(Method::POST, "/authz/v1/oauth2/token").form(&form).send()
        };
        let body = |response: reqwest::Response| async move { (response.status(), response.json::<Value>().await.unwrap()) };
        let (status, answer) = body(post(vec![("assertion", "x")]).await.unwrap()).await;
        assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
        let (status, answer) = body(post(vec![("grant_type", "client_credentials"), ("assertion", "x")]).await.unwrap()).await;
        assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unsupported_grant_type")));
        let (status, answer) = body(post(vec![("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")]).await.unwrap()).await;
        assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
        let (status, answer) = body(post(vec![("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", "not.a.jwt")]).await.unwrap()).await;
        assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
        let response = app.request(Method::POST, "/authz/v1/oauth2/token").header("content-type", "text/plain").body("x").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        app.stop().await;
    }
}
