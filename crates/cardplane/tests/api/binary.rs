//! The real `cardplane` binary: the default SQLite start, the master key file, SIGTERM, log lines,
//! the configuration layers and the `issuer` commands.

use crate::issuer_stub::{IssuerStub, eventually, eventually_within};
use crate::support::{SigningKey, onboarding};
use cardplane_testkit::{Backend, TestDatabase};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn cardplane(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cardplane"));
    command.current_dir(dir).kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("CARDPLANE_") && name != "CARDPLANE_TEST_POSTGRES_URL" {
            command.env_remove(name);
        }
    }
    command
}

/// A `cardplane serve` child process and every log line it wrote so far.
struct Served {
    child: Child,
    base: String,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl Served {
    async fn start(mut command: Command) -> Result<Served, String> {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut plain = Vec::new();
        let addr = loop {
            let Some(line) = lines.next_line().await.unwrap() else {
                return Err(plain.join("\n"));
            };
            match serde_json::from_str::<Value>(&line) {
                Ok(entry) => {
                    let addr = entry["fields"]["addr"].as_str().map(str::to_owned);
                    logs.lock().unwrap().push(entry);
                    if let Some(addr) = addr {
                        break addr;
                    }
                }
                Err(_) => plain.push(line),
            }
        };
        let sink = Arc::clone(&logs);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(entry);
                }
            }
        });
        Ok(Served { child, base: format!("http://{addr}"), logs })
    }

    /// SIGTERM, then the exit status.
    async fn terminate(mut self) -> (std::process::ExitStatus, Vec<Value>) {
        let pid = self.child.id().expect("running") as i32;
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let status = self.child.wait().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let logs = self.logs.lock().unwrap().clone();
        (status, logs)
    }
}

#[tokio::test]
async fn the_first_command_runs_on_a_new_sqlite_file_and_keeps_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(cardplane(dir.path())).await.expect("serves");
    let client = crate::support::http_client();
    let ready = client.get(format!("{}/readyz", served.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(dir.path().join("cardplane.db").exists(), "the default database file");
    let key_file = dir.path().join("cardplane.master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let key_text = std::fs::read_to_string(&key_file).unwrap();

    let onboarded = client
        .put(format!("{}/admin/v1/issuers/BANK000001", served.base))
        .header("x-correlation-id", "onboarding-trace-1")
        .json(&onboarding("Bank One", &SigningKey::generate()))
        .send()
        .await
        .unwrap();
    assert_eq!(onboarded.status(), 200);
    let (status, logs) = served.terminate().await;
    assert!(status.success(), "SIGTERM ends cleanly: {status:?}");

    let created_key =
        logs.iter().filter(|l| l["fields"]["message"].as_str().unwrap_or("").contains("master key")).count();
    assert_eq!(created_key, 1, "says once that it made a master key");
    let of_request: Vec<&Value> = logs.iter().filter(|l| l["span"]["path"] == "/admin/v1/issuers/BANK000001").collect();
    assert!(of_request.len() >= 2, "the request logged its lines: {logs:?}");
    assert!(of_request.iter().all(|l| l["span"]["correlation_id"] == "onboarding-trace-1"));
    assert!(logs.iter().any(|l| l["fields"]["message"] == "cardplane stopped"));

    let served = Served::start(cardplane(dir.path())).await.expect("serves again");
    let issuer = client.get(format!("{}/admin/v1/issuers/BANK000001", served.base)).send().await.unwrap();
    assert_eq!(issuer.status(), 200, "the issuer survived the restart");
    let (status, logs) = served.terminate().await;
    assert!(status.success(), "SIGTERM ends cleanly after the restart: {status:?} {logs:?}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key_text, "the key file is reused, not replaced");
    assert!(!logs.iter().any(|l| { l["fields"]["message"].as_str().unwrap_or("").contains("created one") }));
}

#[tokio::test]
async fn a_database_without_its_master_key_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(cardplane(dir.path())).await.expect("serves");
    served.terminate().await;
    std::fs::remove_file(dir.path().join("cardplane.master.key")).unwrap();
    let error = Served::start(cardplane(dir.path())).await.err().expect("refuses to start");
    assert!(error.contains("master key"), "{error}");
}

#[tokio::test]
async fn the_wrong_master_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(cardplane(dir.path())).await.expect("serves");
    let client = crate::support::http_client();
    let product = serde_json::json!({"cardProductId": "VISA", "scheme": "VISA", "authorisationMode": "NONE"});
    OnboardedBank::onboard(&client, &served.base, "KEYS000001", product).await;
    served.terminate().await;
    let mut wrong_key = cardplane(dir.path());
    wrong_key.env("CARDPLANE_MASTER_KEY", "ab".repeat(32));
    let error = Served::start(wrong_key).await.err().expect("refuses to start");
    assert!(error.contains("the master key does not open this database's keys"), "{error}");
    let served = Served::start(cardplane(dir.path())).await.expect("the right key still serves");
    served.terminate().await;
}

#[tokio::test]
async fn postgres_needs_a_master_key() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = cardplane(dir.path());
    command.env("CARDPLANE_DATABASE_URL", &db.url);
    let error = Served::start(command).await.err().expect("refuses to start");
    assert!(error.contains("a master key is required with PostgreSQL"), "{error}");
    let mut command = cardplane(dir.path());
    command.env("CARDPLANE_DATABASE_URL", &db.url).env("CARDPLANE_MASTER_KEY", "ab".repeat(32));
    let served = Served::start(command).await.expect("serves on PostgreSQL");
    let ready = crate::support::http_client().get(format!("{}/readyz", served.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(served.terminate().await.0.success());
}

async fn output(command: &mut Command) -> (bool, String, String) {
    let out = command.output().await.unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test]
async fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cardplane.toml"), "database_url = \"sqlite://from-file.db\"\n").unwrap();
    let migrate = |env: bool, flag: bool| {
        let mut command = cardplane(dir.path());
        command.args(["--config", "cardplane.toml", "migrate"]);
        if env {
            command.env("CARDPLANE_DATABASE_URL", "sqlite://from-env.db");
        }
        if flag {
            command.args(["--database-url", "sqlite://from-flag.db"]);
        }
        command
    };
    let (ok, stdout, _) = output(&mut migrate(false, false)).await;
    assert!(ok && stdout.contains("sqlite://from-file.db"), "{stdout}");
    let (ok, stdout, _) = output(&mut migrate(true, false)).await;
    assert!(ok && stdout.contains("sqlite://from-env.db"), "{stdout}");
    let (ok, stdout, _) = output(&mut migrate(true, true)).await;
    assert!(ok && stdout.contains("sqlite://from-flag.db"), "{stdout}");
    assert!(dir.path().join("from-flag.db").exists());

    std::fs::write(dir.path().join("bad.toml"), "no_such_key = 1\n").unwrap();
    let (ok, _, stderr) = output(cardplane(dir.path()).args(["--config", "bad.toml", "migrate"])).await;
    assert!(!ok && stderr.contains("bad.toml"), "{stderr}");
}

async fn issuer_commands_on(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    std::fs::write(dir.path().join("bank.json"), onboarding("CLI Bank", &key).to_string()).unwrap();
    let run = |args: &[&str]| {
        let mut command = cardplane(dir.path());
        command.env("CARDPLANE_DATABASE_URL", &db.url).env("CARDPLANE_MASTER_KEY", "cd".repeat(32)).args(args);
        command
    };
    let (ok, stdout, stderr) = output(&mut run(&["issuer", "add", "CLIBANK001", "--from", "bank.json"])).await;
    assert!(ok, "{stderr}");
    let added: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(added["name"], "CLI Bank");

    let (ok, stdout, _) = output(&mut run(&["issuer", "show", "CLIBANK001"])).await;
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), added);

    let (ok, stdout, _) = output(&mut run(&["issuer", "rotate-key", "CLIBANK001"])).await;
    assert!(ok);
    let rotated: Value = serde_json::from_str(&stdout).unwrap();
    assert_ne!(rotated["kid"], added["encryptionKeys"][0]["kid"]);

    let (ok, stdout, _) = output(&mut run(&["issuer", "list"])).await;
    assert!(ok);
    let list: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list[0]["encryptionKeys"].as_array().unwrap().len(), 2);
    assert_eq!(list[0]["encryptionKeys"][0], rotated, "the rotated key is active");

    let (ok, _, stderr) = output(&mut run(&["issuer", "show", "NOBANK0001"])).await;
    assert!(!ok && stderr.contains("NOBANK0001 is not onboarded"), "{stderr}");
    std::fs::write(dir.path().join("bad.json"), r#"{"name":"x","assertionKeys":[{"kid":"k"}]}"#).unwrap();
    let (ok, _, stderr) = output(&mut run(&["issuer", "add", "CLIBANK002", "--from", "bad.json"])).await;
    assert!(!ok && stderr.contains("assertionKeys[0].jwk is required"), "{stderr}");
}

#[tokio::test]
async fn issuer_commands_on_sqlite() {
    issuer_commands_on(Backend::Sqlite).await;
}

#[tokio::test]
async fn issuer_commands_on_postgres() {
    issuer_commands_on(Backend::Postgres).await;
}

/// An issuer onboarded on a running binary, as its backend holds it: a token and the key to
/// encrypt card data to.
struct OnboardedBank {
    token: String,
    recipient: cardplane_domain::keys::P256PublicKey,
    kid: String,
}

impl OnboardedBank {
    async fn onboard(client: &reqwest::Client, base: &str, issuer: &str, product: serde_json::Value) -> Self {
        Self::onboard_with(client, base, issuer, product, serde_json::json!(null)).await
    }

    /// Onboards with `callback` settings (`null` for none).
    async fn onboard_with(
        client: &reqwest::Client,
        base: &str,
        issuer: &str,
        product: serde_json::Value,
        callback: serde_json::Value,
    ) -> Self {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        use serde_json::json;
        let key = SigningKey::generate();
        let onboarded: Value = client
            .put(format!("{base}/admin/v1/issuers/{issuer}"))
            .json(&json!({"name": issuer, "assertionKeys": [{"kid": "k", "jwk": key.public_jwk()}], "cardProducts": [product], "callback": callback}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jwk = &onboarded["encryptionKeys"][0];
        let coordinate = |c: &str| B64.decode(jwk[c].as_str().unwrap()).unwrap();
        let point = [vec![4u8], coordinate("x"), coordinate("y")].concat();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let assertion = key.sign("k", &json!({"iss": issuer, "sub": issuer, "exp": now + 300}));
        let token: Value = client
            .post(format!("{base}/authz/v1/oauth2/token"))
            .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        OnboardedBank {
            token: token["access_token"].as_str().unwrap().to_owned(),
            recipient: cardplane_domain::keys::P256PublicKey::from_sec1(&point).unwrap(),
            kid: jwk["kid"].as_str().unwrap().to_owned(),
        }
    }

    fn encrypt(&self, plaintext: &serde_json::Value) -> String {
        cardplane_jose::jwe::encrypt(plaintext.to_string().as_bytes(), &self.recipient, &self.kid)
    }
}

/// Card data never reaches a log line, an answer, or a database file in clear.
#[tokio::test]
async fn card_data_never_appears_in_logs_answers_or_the_database() {
    use serde_json::json;

    const PANS: [&str; 4] = ["4556737586899855", "4916338506082832", "4539578763621486", "4556737586899856"];
    let dir = tempfile::tempdir().unwrap();
    let mut command = cardplane(dir.path());
    command.env("CARDPLANE_LOG", "debug");
    let served = Served::start(command).await.expect("serves");
    let client = crate::support::http_client();
    let url = |path: &str| format!("{}{path}", served.base);
    let mut answers = String::new();

    let product = json!({"cardProductId": "VISA", "scheme": "VISA", "authorisationMode": "NONE"});
    let bank = OnboardedBank::onboard(&client, &served.base, "SECRET0001", product).await;
    let token = bank.token.clone();
    let encrypt =
        |pan: &str, exp: &str| bank.encrypt(&json!({"pan": pan, "exp": exp, "cvv": "987", "name": "ZED SECRETNAME"}));
    let calls: Vec<(reqwest::Method, &str, Value)> = vec![
        (
            reqwest::Method::PUT,
            "/cards/c1",
            json!({"consumerId": "z", "cardProductId": "VISA", "encryptedData": encrypt(PANS[0], "0731")}),
        ),
        (
            reqwest::Method::PUT,
            "/cards/c1",
            json!({"consumerId": "z", "cardProductId": "VISA", "encryptedData": encrypt(PANS[0], "0731")}),
        ),
        (
            reqwest::Method::PUT,
            "/cards/c2",
            json!({"consumerId": "z", "cardProductId": "VISA", "encryptedData": encrypt(PANS[0], "0731")}),
        ),
        (
            reqwest::Method::PUT,
            "/cards/c3",
            json!({"consumerId": "z", "cardProductId": "VISA", "encryptedData": encrypt(PANS[3], "0731")}),
        ),
        (
            reqwest::Method::PUT,
            "/cards/c4",
            json!({"consumerId": "z", "cardProductId": "VISA", "encryptedData": "x", "pan": PANS[3]}),
        ),
        (
            reqwest::Method::POST,
            "/cards/c1/operations:renew",
            json!({"reasonCode": "CARD_EXPIRING", "encryptedData": encrypt(PANS[1], "0832")}),
        ),
        (
            reqwest::Method::POST,
            "/cards/c1/operations:replace",
            json!({"reasonCode": "CARD_LOST", "newCardId": "c5", "encryptedData": encrypt(PANS[2], "0933")}),
        ),
        (reqwest::Method::POST, "/cards/c5/operations:suspend", json!({"reasonCode": "CARD_LOST"})),
        (reqwest::Method::POST, "/consumers/z/operations:delete", json!({})),
    ];
    for (method, path, body) in calls {
        let response = client
            .request(method, url(&format!("/banking/v2/issuers/SECRET0001{path}")))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        answers.push_str(&response.text().await.unwrap());
    }
    for path in ["/cards/c1", "/cards/c5", "/cards/c1/history", "/consumers/z/cards"] {
        let response =
            client.get(url(&format!("/banking/v2/issuers/SECRET0001{path}"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        answers.push_str(&response.text().await.unwrap());
    }
    assert!(answers.contains("\"last4\":\"1486\""), "the last four digits are shown: {answers}");
    let (status, logs) = served.terminate().await;
    assert!(status.success());
    let logs: String = logs.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n");
    assert!(logs.len() > 1000, "debug logs were captured");

    let mut files = String::new();
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        files.push_str(&format!("{} ", path.display()));
        raw.extend(std::fs::read(&path).unwrap());
    }
    assert!(files.contains("cardplane.db"), "{files}");
    let find = |haystack: &[u8], needle: &str| haystack.windows(needle.len()).any(|w| w == needle.as_bytes());
    for secret in PANS.iter().copied().chain(["SECRETNAME"]) {
        assert!(!find(logs.as_bytes(), secret), "{secret} in the logs");
        assert!(!find(answers.as_bytes(), secret), "{secret} in an answer");
        assert!(!find(&raw, secret), "{secret} in a database file");
    }
    // Expiries as string values: bare, four digits occur by chance in timings and timestamps.
    for secret in ["\"0731\"", "\"0832\"", "\"cvv\"", "\"exp\""] {
        assert!(!find(logs.as_bytes(), secret), "{secret} in the logs");
        assert!(!find(&raw, secret), "{secret} in a database file");
    }
}

/// `cardplane` in `dir` on the test's database: the default SQLite file in `dir`, or PostgreSQL
/// with a master key.
fn on_database(dir: &Path, db: &TestDatabase) -> Command {
    let mut command = cardplane(dir);
    if db.backend == Backend::Postgres {
        command.env("CARDPLANE_DATABASE_URL", &db.url).env("CARDPLANE_MASTER_KEY", "ef".repeat(32));
    }
    command
}

/// What was acknowledged survives `kill -9`: every card answered 204 is there after a restart, with
/// the notification its change queued (they are written in one transaction).
async fn acknowledged_writes_survive_kill_9(backend: Backend) {
    use serde_json::json;

    let db = TestDatabase::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let command = || on_database(dir.path(), &db);
    let mut served = Served::start(command()).await.expect("serves");
    let client = crate::support::http_client();
    let product = json!({"cardProductId": "VISA", "scheme": "VISA", "authorisationMode": "NONE"});
    // The worker delivers to a real issuer stub all along, and is killed with the server.
    let stub = IssuerStub::start().await;
    let bank = std::sync::Arc::new(
        OnboardedBank::onboard_with(&client, &served.base, "CRASH00001", product, stub.callback(100)).await,
    );
    let token = bank.token.clone();

    // Distinct Luhn-valid Visa PANs: 4 + 14 digits of the counter + check digit.
    let pan = |n: u64| {
        let body = format!("4{n:014}");
        format!("{body}{}", cardplane_domain::credentials::luhn_check_digit(&body))
    };
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for writer in 0..8u64 {
        let (client, base, bank, acknowledged) =
            (client.clone(), served.base.clone(), bank.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..10_000u64 {
                let n = writer * 100_000 + i;
                let jwe = bank.encrypt(&json!({"pan": pan(n), "exp": "1230"}));
                let sent = client
                    .put(format!("{base}/banking/v2/issuers/CRASH00001/cards/card-{n}"))
                    .bearer_auth(&bank.token)
                    .json(&json!({"consumerId": "c", "cardProductId": "VISA", "encryptedData": jwe}))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 204 => acknowledged.lock().unwrap().push(n),
                    _ => break, // the server is gone
                }
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 150 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pid = served.child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    served.child.wait().await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let served = Served::start(command()).await.expect("restarts after kill -9");
    let notifications: Value = client
        .get(format!("{}/admin/v1/issuers/CRASH00001/notifications", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let notified: std::collections::HashSet<&str> =
        notifications["notifications"].as_array().unwrap().iter().map(|n| n["cardId"].as_str().unwrap()).collect();
    for n in &acknowledged {
        let card = client
            .get(format!("{}/banking/v2/issuers/CRASH00001/cards/card-{n}", served.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(card.status(), 200, "acknowledged card-{n} was lost");
        assert!(notified.contains(format!("card-{n}").as_str()), "the notification of card-{n} was lost");
    }
    assert!(acknowledged.len() >= 150);
    // Every acknowledged registration reaches the issuer, whether before the crash or after the
    // restart: none is lost (some may come twice, which operationIds let the issuer see). A batch
    // the killed worker held waits for its lease (15 s) to run out: that is the wait allowed here.
    let wait = std::time::Duration::from_secs(45);
    let delivered = eventually_within(wait, "every acknowledged card's notification", || async {
        let cards: std::collections::HashSet<String> = stub
            .operations()
            .await
            .iter()
            .filter(|o| o["operation"] == "REGISTER")
            .map(|o| o["cardId"].as_str().unwrap().to_owned())
            .collect();
        acknowledged.iter().all(|n| cards.contains(&format!("card-{n}"))).then_some(cards.len())
    })
    .await;
    assert!(delivered >= acknowledged.len());
    served.terminate().await;
}

/// The crash between the commit and the delivery: a suspend is acknowledged while no worker runs,
/// the server is killed, and the restarted server delivers the notification.
async fn a_notification_acknowledged_before_a_crash_is_delivered_after_it(backend: Backend) {
    use serde_json::json;

    let db = TestDatabase::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let command = || on_database(dir.path(), &db);
    let mut without_worker = command();
    without_worker.env("CARDPLANE_WORKER", "0");
    let mut served = Served::start(without_worker).await.expect("serves");
    let client = crate::support::http_client();
    let stub = IssuerStub::start().await;
    let product = json!({"cardProductId": "VISA", "scheme": "VISA", "authorisationMode": "NONE"});
    let bank = OnboardedBank::onboard_with(&client, &served.base, "CRASH00002", product, stub.callback(10)).await;
    let card = format!("{}/banking/v2/issuers/CRASH00002/cards/card-1", served.base);
    let jwe = bank.encrypt(&json!({"pan": "4111111111111111", "exp": "1230"}));
    let registered = client
        .put(&card)
        .bearer_auth(&bank.token)
        .json(&json!({"consumerId": "c", "cardProductId": "VISA", "encryptedData": jwe}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 204);
    let suspended = client
        .post(format!("{card}/operations:suspend"))
        .bearer_auth(&bank.token)
        .json(&json!({"reasonCode": "CARD_LOST"}))
        .send()
        .await
        .unwrap();
    assert_eq!(suspended.status(), 204);
    let pid = served.child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    served.child.wait().await.unwrap();
    assert!(stub.operations().await.is_empty(), "nothing was delivered before the crash");

    let served = Served::start(command()).await.expect("restarts after kill -9");
    let received = eventually("the notifications after the restart", || async {
        let ops = stub.operations().await;
        (ops.len() >= 2).then_some(ops)
    })
    .await;
    let kinds: Vec<&str> = received.iter().map(|o| o["operation"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["REGISTER", "SUSPEND"]);
    served.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_acknowledged_before_a_crash_is_delivered_after_it_on_sqlite() {
    a_notification_acknowledged_before_a_crash_is_delivered_after_it(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_acknowledged_before_a_crash_is_delivered_after_it_on_postgres() {
    a_notification_acknowledged_before_a_crash_is_delivered_after_it(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_on_sqlite() {
    acknowledged_writes_survive_kill_9(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_on_postgres() {
    acknowledged_writes_survive_kill_9(Backend::Postgres).await;
}

/// The platform scaled out: an API-only `serve --worker=false` and a separate `cardplane worker`
/// on one PostgreSQL; the worker delivers what the server acknowledged, and stops on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_worker_process_delivers_for_an_api_only_server() {
    use serde_json::json;

    let db = TestDatabase::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let command = || on_database(dir.path(), &db);
    let mut api_only = command();
    api_only.env("CARDPLANE_WORKER", "false");
    let served = Served::start(api_only).await.expect("serves");
    let client = crate::support::http_client();
    let stub = IssuerStub::start().await;
    let product = json!({"cardProductId": "VISA", "scheme": "VISA", "authorisationMode": "NONE"});
    let bank = OnboardedBank::onboard_with(&client, &served.base, "SCALE00001", product, stub.callback(10)).await;
    let jwe = bank.encrypt(&json!({"pan": "4111111111111111", "exp": "1230"}));
    let registered = client
        .put(format!("{}/banking/v2/issuers/SCALE00001/cards/card-1", served.base))
        .bearer_auth(&bank.token)
        .json(&json!({"consumerId": "c", "cardProductId": "VISA", "encryptedData": jwe}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 204);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(stub.operations().await.is_empty(), "an API-only server sends nothing");

    let mut worker = command().arg("worker").stderr(Stdio::null()).spawn().expect("the worker starts");
    let received = eventually("the REGISTER notification", || async {
        let ops = stub.operations().await;
        (!ops.is_empty()).then_some(ops)
    })
    .await;
    assert_eq!(received[0]["operation"], "REGISTER");
    let pid = worker.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), worker.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the worker stops cleanly on SIGTERM: {status}");
    served.terminate().await;
}

/// `cardplane bench` starts its own server, measures the baseline and the scenario in one run,
/// and reports every request as answered (a mix of registrations, reads and suspend/resume); with
/// `--rounds` it alternates them and pools the rounds, each round's ratio listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_command_measures_a_scenario_against_its_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let output = cardplane(dir.path())
        .args(["bench", "--scenario", "mix", "--connections", "4", "--seconds", "1", "--cards", "3000"])
        .args(["--rounds", "2"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines = |label: &str| stdout.lines().filter(|l| l.trim_start().starts_with(label)).count();
    let line = |label: &str| stdout.lines().find(|l| l.trim_start().starts_with(label)).map(str::to_owned);
    assert_eq!(
        (lines("baseline GET /healthz:"), lines("mix:")),
        (2, 2),
        "a baseline and a scenario per round: {stdout}"
    );
    let baseline = line("baseline, all rounds:").expect("a pooled baseline line");
    let mix = line("mix, all rounds:").expect("a pooled scenario line");
    assert!(baseline.contains("failed 0") && mix.contains("failed 0"), "{stdout}");
    assert!(mix.contains("x baseline") && mix.contains("p99"), "{stdout}");
    let ok = |l: &str| l.split("(ok ").nth(1).and_then(|r| r.split(',').next()).map(|n| n.parse::<usize>().unwrap());
    let per_round: usize = stdout.lines().filter(|l| l.trim_start().starts_with("mix:")).filter_map(ok).sum();
    assert_eq!(ok(&mix), Some(per_round), "the pooled line counts every round's requests: {stdout}");
    let by_round = line("ratio by round:").expect("the ratio of each round");
    assert_eq!(by_round.matches(", ").count(), 1, "{stdout}");
    assert!(!stdout.contains("ran out of prepared cards"), "{stdout}");
}

/// The drain scenario makes its backlog with the worker off, restarts the server, and counts every
/// notification arriving at its own issuer stub exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_command_drains_a_notification_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let output = cardplane(dir.path())
        .args(["bench", "--scenario", "drain", "--notifications", "500", "--batch", "20"])
        .args(["--connections", "4", "--seconds", "1"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let drain = stdout.lines().find(|l| l.trim_start().starts_with("drain:")).expect("a drain line");
    assert!(
        drain.contains("(500 of 500 in") && drain.contains("0 repeated") && drain.contains("x baseline"),
        "{stdout}"
    );
}

/// `--compare-with` drives the same requests at another server in the same run and prints the
/// ratio; a server that refuses them all makes the run fail, with the refusals listed by status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_command_compares_with_another_server() {
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let mock = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path_regex(r"^/banking/v2/issuers/BENCH\d+/cards/bench-\d+$"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mock)
        .await;
    let run = |target: String| {
        let dir = tempfile::tempdir().unwrap();
        async move {
            let output = cardplane(dir.path())
                .args(["bench", "--scenario", "register", "--connections", "2", "--seconds", "1", "--cards", "100"])
                .args(["--compare-with", &target])
                .output()
                .await
                .unwrap();
            (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
        }
    };

    let (succeeded, stdout) = run(mock.uri()).await;
    assert!(succeeded, "{stdout}");
    let compared = stdout.lines().find(|l| l.trim_start().starts_with("compared:")).expect("a comparison line");
    assert!(compared.contains("x the requests/s of register at"), "{stdout}");
    // A registration run also says what one decryption of `encryptedData` costs this machine.
    let floor = stdout.lines().find(|l| l.trim_start().starts_with("decryption floor:")).expect("a floor line");
    let micros: f64 = floor.split(':').nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    let ratio: f64 = floor.split("= ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(micros > 1.0 && micros < 100_000.0 && ratio > 0.0, "{stdout}");
    let put = mock.received_requests().await.unwrap_or_default();
    assert!(!put.is_empty(), "the compared server saw no request");
    let tokens: std::collections::BTreeSet<_> =
        put.iter().map(|r| r.headers.get("authorization").map(|h| h.to_str().unwrap().to_owned())).collect();
    assert!(
        tokens.len() == 1 && tokens.iter().all(|t| t.as_deref().is_some_and(|t| t.starts_with("Bearer "))),
        "every compared request carries the same bearer token: {tokens:?}"
    );

    // A server that serves none of it (wiremock answers 404 to what no mock matches).
    let refusing = MockServer::start().await;
    let (succeeded, stdout) = run(refusing.uri()).await;
    assert!(!succeeded, "{stdout}");
    assert!(stdout.contains("failed: HTTP 404 x"), "{stdout}");
}
