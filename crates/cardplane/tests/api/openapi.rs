//! The published contract: `/openapi.json` is the document generated from the code, any change of
//! it shows as a snapshot diff, every documented operation is routed, and no route is served
//! without a description.

use crate::support::{TestApp, read};
use cardplane_testkit::Backend;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// `(method, path template)` of every operation the document describes.
fn documented_operations(document: &Value) -> Vec<(Method, String)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("an HTTP method");
            operations.push((method, path.clone()));
        }
    }
    operations
}

/// The template with each parameter given a plausible value.
fn concrete(template: &str) -> String {
    template
        .replace("{issuerId}", "BANK00000A")
        .replace("{consumerId}", "consumer-1")
        .replace("{cardId}", "card-1")
        .replace("{operationId}", "0123456789abcdef")
        .replace("{asset}", "swagger-ui.css")
}

#[tokio::test]
async fn the_served_document_is_the_generated_one_and_its_snapshot() {
    let app = TestApp::builder(Backend::Sqlite).start().await;
    let (status, served) = app.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let generated = serde_json::to_value(cardplane_api::openapi::document()).unwrap();
    assert_eq!(served, generated);
    assert_eq!(served["openapi"], "3.1.0");
    // Any change of the wire is a reviewed diff of this snapshot (`cargo insta review`).
    insta::assert_json_snapshot!("openapi", served);
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::builder(Backend::Sqlite).start().await;
    let document = serde_json::to_value(cardplane_api::openapi::document()).unwrap();
    let operations = documented_operations(&document);
    assert!(operations.len() > 30, "only {} operations documented", operations.len());
    for (method, template) in operations {
        let path = concrete(&template);
        assert!(!path.contains('{'), "a parameter of {template} has no test value");
        let request = app.request(method.clone(), &path).header("content-type", "application/json").body("{}");
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // The router's own answers when nothing matches: 404 "no route for ..." and 405.
        let unrouted = status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::NOT_FOUND
                && body["error"].as_str().is_some_and(|e| e.starts_with("no route for")));
        assert!(!unrouted, "{method} {template} is documented but not routed: {status} {body}");
    }
}

#[tokio::test]
async fn a_route_that_is_not_documented_does_not_exist() {
    let app = TestApp::builder(Backend::Sqlite).start().await;
    let bank = app.bank("BANK00000A").await;
    for path in [
        "/banking/v2/issuers/BANK00000A/cards/card-1/operations:frobnicate",
        "/banking/v2/issuers/BANK00000A/cards/card-1/operations/SUSPEND",
        "/banking/v2/issuers/BANK00000A/consumers/consumer-1/operations:suspend",
        "/banking/v1/issuers/BANK00000A/cards/card-1",
    ] {
        let request = app.request(Method::POST, path).bearer_auth(&bank.token).json(&serde_json::json!({}));
        let (status, body) = read(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["errorCode"], "NOT_FOUND", "{path}");
    }
    // `{operationId}:redeliver` is served by a one-segment route; other suffixes are not routes.
    let (status, body) = app.call(Method::POST, "/admin/v1/notifications/0123456789abcdef:resend", None).await;
    assert_eq!((status, body["errorCode"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
}

/// Routes reach the router only through `utoipa_axum::routes!`, which takes each one's path from its
/// `#[utoipa::path]`: a plain axum `.route(` would serve a path the document does not describe.
/// The one exception is listed, and `every_documented_operation_is_routed` covers it.
#[test]
fn no_route_is_added_around_the_document() {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src");
    let mut plain = Vec::new();
    let mut stack = vec![source];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    if line.contains(".route(") || line.contains(".nest(") || line.contains(".route_service(") {
                        plain.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert_eq!(plain.len(), 1, "routes added outside the document: {plain:#?}");
    assert!(plain[0].contains(".route(redeliver_route::PATH, post(redeliver))"), "{plain:#?}");
}

#[tokio::test]
async fn the_documentation_page_works_offline() {
    let app = TestApp::builder(Backend::Sqlite).start().await;
    let page = app.request(Method::GET, "/docs").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/openapi.json") && html.contains("SwaggerUIBundle"));
    // Everything it loads comes from this server: no CDN.
    assert!(!html.contains("http://") && !html.contains("https://"), "the page loads something from elsewhere");
    for (asset, content_type, marker) in [
        ("/docs/swagger-ui-bundle.js", "application/javascript", "SwaggerUIBundle"),
        ("/docs/swagger-ui.css", "text/css", ".swagger-ui"),
    ] {
        assert!(html.contains(asset), "the page does not load {asset}");
        let response = app.request(Method::GET, asset).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert_eq!(response.headers()["content-type"], content_type, "{asset}");
        assert!(response.text().await.unwrap().contains(marker), "{asset}");
    }
    let (status, body) = read(app.request(Method::GET, "/docs/nothing.js").send().await.unwrap()).await;
    assert_eq!((status, body["errorCode"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
}
