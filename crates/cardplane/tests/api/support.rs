//! `TestApp`: the real server on port 0 with a database of its own, and a client for it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardplane::config::{LogFormat, MasterKeySource, Settings};
use cardplane::server::RunningServer;
use cardplane_app::ports::{Clock, OffsetClock};
use cardplane_testkit::{Backend, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

pub struct TestApp {
    /// Held so the database lives as long as the app (dropped, it is deleted).
    _db: TestDatabase,
    /// The server's clock; tests move it instead of sleeping.
    pub clock: Arc<OffsetClock>,
    pub base: String,
    pub client: reqwest::Client,
    settings: Settings,
    server: Option<RunningServer>,
    pub admin_token: Option<String>,
}

pub struct TestAppBuilder {
    backend: Backend,
    sandbox: bool,
    admin_token: Option<String>,
    toml_issuers: Option<String>,
    worker: bool,
}

impl TestApp {
    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder { backend, sandbox: false, admin_token: None, toml_issuers: None, worker: false }
    }

    /// The use cases the server runs on (to drive workers of a test's own on the same store).
    pub fn platform(&self) -> cardplane_app::Platform {
        self.server.as_ref().expect("running").platform.clone()
    }

    /// Settings a worker of the test's own would run with (fast polling, short call timeouts).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Stops the server (gracefully) and starts it again on the same database and key.
    pub async fn restart(&mut self) {
        self.server.take().expect("running").stop().await.expect("a clean stop");
        let server = cardplane::server::start_with(self.settings.clone(), self.clock.clone(), std::future::pending())
            .await
            .expect("the server restarts");
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("a clean stop");
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.admin_token {
            Some(token) if path.starts_with("/admin/") => request.bearer_auth(token),
            _ => request,
        }
    }

    /// Sends and returns the status and the JSON body (`Value::Null` when empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let bytes = response.bytes().await.expect("a body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON") };
        (status, body)
    }

    pub async fn onboard(&self, issuer_id: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, &format!("/admin/v1/issuers/{issuer_id}"), Some(body)).await
    }
}

impl TestAppBuilder {
    pub fn sandbox(mut self) -> Self {
        self.sandbox = true;
        self
    }

    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.to_owned());
        self
    }

    /// Runs the worker in the server, polling every 20 ms with 1 s call timeouts. (Without it,
    /// notifications stay queued: most tests look at the outbox, not at deliveries.)
    pub fn worker(mut self) -> Self {
        self.worker = true;
        self
    }

    /// `[[issuers]]` entries for a TOML configuration file.
    pub fn toml_issuers(mut self, toml: &str) -> Self {
        self.toml_issuers = Some(toml.to_owned());
        self
    }

    pub async fn start(self) -> TestApp {
        let db = TestDatabase::new(self.backend).await;
        let issuers = match &self.toml_issuers {
            Some(toml) => {
                let file: cardplane::config::FileConfig = toml::from_str(toml).expect("valid TOML");
                file.issuers
            }
            None => Vec::new(),
        };
        let settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.clone(),
            master_key: MasterKeySource::Value("5a".repeat(32)),
            admin_token: self.admin_token.clone(),
            token_audience: cardplane::config::DEFAULT_TOKEN_AUDIENCE.to_owned(),
            sandbox: self.sandbox,
            log_format: LogFormat::Json,
            issuers,
            worker: self.worker,
            http_threads: 2,
            worker_settings: cardplane_worker::WorkerSettings {
                lanes: 2,
                idle_poll: std::time::Duration::from_millis(20),
                lease: time::Duration::seconds(15),
            },
            outbound: cardplane_connectors::OutboundSettings { call_timeout: std::time::Duration::from_secs(1) },
        };
        let clock = Arc::new(OffsetClock::new());
        let server = cardplane::server::start_with(settings.clone(), clock.clone(), std::future::pending())
            .await
            .expect("the server starts");
        TestApp {
            _db: db,
            clock,
            base: format!("http://{}", server.addr),
            client: crate::support::http_client(),
            settings,
            server: Some(server),
            admin_token: self.admin_token,
        }
    }
}

/// An issuer's ES256 signing key, as an issuer's backend would hold it.
pub struct SigningKey {
    pub pair: aws_lc_rs::signature::EcdsaKeyPair,
}

impl SigningKey {
    pub fn generate() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        Self { pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap() }
    }

    fn point(&self) -> Vec<u8> {
        use aws_lc_rs::signature::KeyPair;
        self.pair.public_key().as_ref().to_vec()
    }

    pub fn public_jwk(&self) -> Value {
        let point = self.point();
        json!({ "kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]) })
    }

    pub fn public_pem(&self) -> String {
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        der.extend(self.point());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n", &b64[..64], &b64[64..])
    }
}

/// A complete onboarding body.
pub fn onboarding(name: &str, key: &SigningKey) -> Value {
    json!({
        "name": name,
        "assertionKeys": [{ "kid": "issuer-sig-1", "jwk": key.public_jwk() }],
        "cardProducts": [{
            "cardProductId": "VISA_CLASSIC",
            "scheme": "VISA",
            "authorisationMode": "LIGHT",
            "binRange": { "from": "41111100", "to": "41111199" },
            "physical": true,
            "validityYears": 4,
            "usedForTransactions": true
        }],
        "callback": {
            "baseUrl": "http://127.0.0.1:9/bank",
            "clientId": "d1-client",
            "clientSecret": "the-client-secret",
            "scope": "d1:notify",
            "maxBatchSize": 20,
            "storesConsumerData": false
        },
        "walletServer": { "baseUrl": "http://127.0.0.1:9/ws", "pods": { "pod-1": "http://127.0.0.1:9/ws1" } }
    })
}

/// An issuer's backend talking to cardplane: it onboards itself, signs its token assertions and
/// encrypts card data to the key cardplane gave it.
pub struct Bank<'a> {
    pub app: &'a TestApp,
    pub issuer_id: String,
    pub key: SigningKey,
    pub token: String,
    pub encryption_jwk: Value,
}

impl SigningKey {
    /// A compact ES256 JWS over `claims`, with `kid`.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let header = B64.encode(json!({"alg": "ES256", "typ": "JWT", "kid": kid}).to_string());
        let payload = B64.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let signature = self.pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(signature.as_ref()))
    }
}

/// The products every test bank is onboarded with.
pub fn bank_products() -> Value {
    json!([
        { "cardProductId": "VISA_LIGHT", "scheme": "VISA", "authorisationMode": "LIGHT",
          "binRange": { "from": "41111100", "to": "41111199" } },
        { "cardProductId": "VISA_TX", "scheme": "VISA", "authorisationMode": "NONE", "usedForTransactions": true },
        { "cardProductId": "VISA_FULL", "scheme": "VISA", "authorisationMode": "FULL" },
        { "cardProductId": "MC_LIGHT", "scheme": "MASTERCARD", "authorisationMode": "LIGHT",
          "binRange": { "from": "555555", "to": "555555" } },
        { "cardProductId": "AMEX_NOBIN", "scheme": "AMEX", "authorisationMode": "LIGHT" }
    ])
}

impl TestApp {
    /// Onboards `issuer_id` and gets it a token.
    pub async fn bank(&self, issuer_id: &str) -> Bank<'_> {
        self.bank_with(issuer_id, json!({})).await
    }

    /// Onboards `issuer_id` with more onboarding fields (`callback`, say) and gets it a token.
    pub async fn bank_with(&self, issuer_id: &str, extra: Value) -> Bank<'_> {
        let key = SigningKey::generate();
        let mut body = json!({
            "name": format!("Bank {issuer_id}"),
            "assertionKeys": [{ "kid": "sig-1", "jwk": key.public_jwk() }],
            "cardProducts": bank_products(),
        });
        body.as_object_mut().unwrap().extend(extra.as_object().expect("an object").clone());
        let (status, onboarded) = self.onboard(issuer_id, body).await;
        assert_eq!(status, StatusCode::OK, "{onboarded}");
        let mut bank = Bank {
            app: self,
            issuer_id: issuer_id.to_owned(),
            key,
            token: String::new(),
            encryption_jwk: onboarded["encryptionKeys"][0].clone(),
        };
        bank.token = bank.fresh_token().await;
        bank
    }
}

impl Bank<'_> {
    pub fn assertion(&self) -> String {
        let now = self.app.clock.now().unix_timestamp();
        self.key.sign(
            "sig-1",
            &json!({ "iss": self.issuer_id, "sub": self.issuer_id, "aud": "https://api.d1.thalescloud.io",
                     "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string() }),
        )
    }

    pub async fn fresh_token(&self) -> String {
        let response = self
            .app
            .request(Method::POST, "/authz/v1/oauth2/token")
            .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &self.assertion())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    /// `encryptedData` for a card, as the issuer would make it.
    pub fn card_data(&self, plaintext: Value) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let coordinate = |c: &str| B64.decode(self.encryption_jwk[c].as_str().unwrap()).unwrap();
        let point = [vec![4u8], coordinate("x"), coordinate("y")].concat();
        let key = cardplane_domain::keys::P256PublicKey::from_sec1(&point).unwrap();
        cardplane_jose::jwe::encrypt(
            plaintext.to_string().as_bytes(),
            &key,
            self.encryption_jwk["kid"].as_str().unwrap(),
        )
    }

    pub fn pan(&self, pan: &str, exp: &str) -> String {
        self.card_data(json!({ "pan": pan, "exp": exp }))
    }

    /// A request to `/banking/v2/issuers/{issuerId}{path}` with this bank's token.
    pub fn v2(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.app.request(method, &format!("/banking/v2/issuers/{}{path}", self.issuer_id)).bearer_auth(&self.token)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.v2(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.unwrap()).await
    }

    pub async fn register_card(
        &self,
        card_id: &str,
        consumer_id: &str,
        product: &str,
        pan: &str,
    ) -> (StatusCode, Value) {
        let body =
            json!({ "consumerId": consumer_id, "cardProductId": product, "encryptedData": self.pan(pan, "1230") });
        self.call(Method::PUT, &format!("/cards/{card_id}"), Some(body)).await
    }

    pub async fn operate(&self, card_id: &str, op: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("/cards/{card_id}/operations:{op}"), Some(body)).await
    }

    pub async fn card(&self, card_id: &str) -> Value {
        let (status, card) = self.call(Method::GET, &format!("/cards/{card_id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{card}");
        card
    }

    /// Every operation queued for notification, in order.
    pub async fn notifications(&self) -> Vec<Value> {
        let (status, body) =
            self.app.call(Method::GET, &format!("/admin/v1/issuers/{}/notifications", self.issuer_id), None).await;
        assert_eq!(status, StatusCode::OK);
        body["notifications"].as_array().unwrap().clone()
    }
}

/// Status and JSON body (`Null` when empty) of a response.
pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON") })
}

/// Asserts an error answer: status, code, and that the text starts with `text`.
pub fn assert_refused(answer: &(StatusCode, Value), status: StatusCode, code: &str, text: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["errorCode"], code, "{}", answer.1);
    let message = answer.1["error"].as_str().unwrap_or_default();
    assert!(message.starts_with(text), "expected {text:?}, got {message:?}");
}

/// An HTTP client for the tests. reqwest's rustls is built without a crypto provider of its own
/// (cardplane installs aws-lc-rs, see `connectors`), so the tests install it too.
pub fn http_client() -> reqwest::Client {
    cardplane_connectors::install_tls_provider();
    reqwest::Client::new()
}
