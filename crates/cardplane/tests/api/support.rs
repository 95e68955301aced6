//! `TestApp`: the real server on port 0 with a database of its own, and a client for it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardplane::config::{LogFormat, MasterKeySource, Settings};
use cardplane::server::RunningServer;
use cardplane_app::ports::OffsetClock;
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
    admin_token: Option<String>,
    toml_issuers: Option<String>,
}

impl TestApp {
    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder { backend, admin_token: None, toml_issuers: None }
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
    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.to_owned());
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
            log_format: LogFormat::Json,
            issuers,
        };
        let clock = Arc::new(OffsetClock::new());
        let server = cardplane::server::start_with(settings.clone(), clock.clone(), std::future::pending())
            .await
            .expect("the server starts");
        TestApp {
            _db: db,
            clock,
            base: format!("http://{}", server.addr),
            client: reqwest::Client::new(),
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
