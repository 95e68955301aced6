//! `cardplane bench`: a load generator for the banking API, with its baseline measured in the same
//! run.
//!
//! It starts a server (this binary, `serve`, on a fresh SQLite file or the given database) or uses
//! the one at `--url`, onboards an issuer, mints a real access token and real JWE card data (made
//! before the clock starts, so that the generator does not compete with the server for the CPU),
//! then drives one scenario at a fixed number of connections for a fixed time. Every figure is
//! printed beside the throughput of the server's no-op route (`GET /healthz`) driven the same way
//! in the same run, as a ratio: the machines are shared and noisy, and only ratios travel.
//!
//! The measured requests go out on bare keep-alive HTTP/1.1 connections ([`Link`]), driven by a
//! thread per core, each a single-threaded runtime owning its share of the connections
//! ([`Lanes`]), as `wrk` does: the generator shares the machine with the server, and every
//! microsecond it spends on a request is taken from the server. Setting up (onboarding, tokens,
//! the standing cards) goes through `reqwest`.

use anyhow::{Context, bail};
use aws_lc_rs::agreement::{ECDH_P256, PrivateKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::body::Bytes;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{HeaderValue, Method, Request, Uri};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use cardplane_domain::credentials::luhn_check_digit;
use cardplane_domain::keys::P256PublicKey;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

/// What the load generator drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `PUT /cards/{cardId}` with fresh card data: the durable write path, one ECDH each.
    Register,
    /// `POST …/operations:suspend` then `:resume` on cards registered beforehand.
    Lifecycle,
    /// `GET /cards/{cardId}`.
    Get,
    /// A quarter registrations, a quarter suspend/resume, half reads.
    Mix,
    /// A backlog of `--notifications` notifications, made with the worker off, drained by a
    /// restarted server to an issuer stub in this process. Needs a server the bench starts.
    Drain,
}

/// The options of `cardplane bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The scenario to drive.
    #[arg(long, value_enum, default_value = "register")]
    pub scenario: Scenario,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long each measured phase lasts, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// How long the baseline phase lasts, in seconds (default: `--seconds`). Shorter when the
    /// bench only fills a database (`--cards 1000000 --seconds 3600`, say).
    #[arg(long)]
    pub baseline_seconds: Option<u64>,
    /// How many times to measure the baseline and then the scenario, in turn. With more than one,
    /// the run ends with the rounds pooled: the machine's speed drifts over a run (other tenants,
    /// page cache, turbo), and alternating short phases puts both figures of a ratio under the
    /// same drift. Registrations continue with fresh cards from round to round.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub rounds: u16,
    /// Card registrations to prepare (each needs its JWE made ahead); the register phase stops
    /// early when they run out. Default: 20,000 for each second of registration phases
    /// (`--seconds` x `--rounds`, more than the fastest machine yet registers), at least 100,000.
    #[arg(long)]
    pub cards: Option<usize>,
    /// Drain: how many notifications the backlog holds.
    #[arg(long, default_value_t = 100_000)]
    pub notifications: usize,
    /// Drain: the issuer's `maxBatchSize` (operations per notification call, 1 to 100).
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// The load generator's threads (default: one per core). Each drives its share of the
    /// connections on a single-threaded runtime.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// A running server to measure instead of starting one (its admin API must accept this
    /// process: loopback, or CARDPLANE_ADMIN_TOKEN).
    #[arg(long)]
    pub url: Option<String>,
    /// Also drive the same requests (same bodies, same token) at this server in the same run, and
    /// print cardplane's throughput as a ratio to it: a mock of the same API (Prism on
    /// `cardplane openapi`, say; `scripts/bench-vs-prism.sh` sets that up). Any 2xx counts as ok.
    #[arg(long, value_name = "URL")]
    pub compare_with: Option<String>,
}

impl BenchArgs {
    fn baseline_duration(&self) -> Duration {
        Duration::from_secs(self.baseline_seconds.unwrap_or(self.seconds))
    }

    /// How many registrations to prepare: `--cards`, or enough for every registration phase.
    fn cards(&self) -> usize {
        const PER_SECOND: u64 = 20_000;
        let enough = PER_SECOND.saturating_mul(self.seconds).saturating_mul(u64::from(self.rounds));
        self.cards.unwrap_or_else(|| usize::try_from(enough).unwrap_or(usize::MAX).max(100_000))
    }

    fn lanes(&self) -> anyhow::Result<Lanes> {
        Lanes::start(self.threads.map_or_else(cores, usize::from)).context("cannot start the load generator's threads")
    }
}

/// The machine's cores, which the load generator's threads and the floor's ceiling count.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: BenchArgs, database_url: Option<String>) -> anyhow::Result<()> {
    cardplane_connectors::install_tls_provider();
    let workdir = tempfile::tempdir().context("cannot make a working directory")?;
    if args.scenario == Scenario::Drain {
        if args.url.is_some() {
            bail!("the drain scenario restarts the server, so it needs one the bench starts (no --url)");
        }
        return drain(&args, workdir.path(), database_url).await;
    }
    let (base, server) = match &args.url {
        Some(url) => (url.trim_end_matches('/').to_owned(), None),
        None => {
            let (base, child) = start_server(workdir.path(), database_url, true).await?;
            (base, Some(child))
        }
    };
    let outcome = measure(&args, &base).await;
    if let Some(mut child) = server {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    outcome
}

async fn measure(args: &BenchArgs, base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let bank = Bank::onboard(&http, base).await?;
    let lifecycle_cards =
        if matches!(args.scenario, Scenario::Lifecycle | Scenario::Get | Scenario::Mix) { args.connections } else { 0 };
    // Only registrations use fresh cards: the other scenarios need none made (each is an ECDH).
    let fresh_cards = if matches!(args.scenario, Scenario::Register | Scenario::Mix) { args.cards() } else { 0 };
    let cards = prepare_cards(&bank, fresh_cards + lifecycle_cards);
    // The cards the other scenarios work on, one per connection, registered before the clock.
    let (standing, fresh) = cards.split_at(lifecycle_cards);
    for (i, (card_id, body)) in standing.iter().enumerate() {
        let response = bank.put(&http, base, card_id, body).await?;
        if response != 204 {
            bail!("registering standing card {i} answered HTTP {response}");
        }
    }
    let lanes = args.lanes()?;
    let target = Target::resolve(base).await?;
    let duration = Duration::from_secs(args.seconds);
    let rounds = if args.rounds > 1 { format!(", {} rounds", args.rounds) } else { String::new() };
    println!(
        "cardplane bench: {:?}, {} connections, {} s per phase{rounds}, against {base}",
        args.scenario, args.connections, args.seconds
    );
    // Every request of a phase is made before its clock starts, down to its path and body bytes:
    // what the generator spends per request is taken from the server (only putting the parts
    // together, sending and reading answers are left in the loop). Made once per target, for
    // all its rounds.
    let prepared = |target: &Target| Arc::new(Requests::new(&bank, target, fresh, standing));
    let lanes = &lanes;
    let drive = |label: String, target: Target, requests: Arc<Requests>, reuse_cards: bool, progress: Arc<Progress>| {
        let bank = bank.clone();
        let (scenario, connections) = (args.scenario, args.connections);
        let request = move |connection: usize, n: usize| {
            let kind = match scenario {
                Scenario::Mix => [Scenario::Register, Scenario::Get, Scenario::Lifecycle, Scenario::Get][n % 4],
                other => other,
            };
            let authorization = Some(bank.authorization());
            Some(match kind {
                Scenario::Register => {
                    let mut next = progress.next_card.fetch_add(1, Ordering::Relaxed);
                    // A stateless mock may see the same card again; cardplane may not.
                    if reuse_cards && !requests.register.is_empty() {
                        next %= requests.register.len();
                    }
                    // Out of prepared cards: this connection is done.
                    let (path, body) = requests.register.get(next)?;
                    requests.request(Method::PUT, path, authorization, Some(body))
                }
                Scenario::Get => requests.request(Method::GET, &requests.get[connection], authorization, None),
                _ => {
                    // Each connection suspends and resumes its own card, in turn.
                    let step = progress.operations[connection].fetch_add(1, Ordering::Relaxed);
                    let path = if step.is_multiple_of(2) {
                        &requests.suspend[connection]
                    } else {
                        &requests.resume[connection]
                    };
                    requests.request(Method::POST, path, authorization, Some(&requests.operation_body))
                }
            })
        };
        async move { phase(lanes, &target, &label, connections, duration, request).await }
    };
    // Each registration's one unavoidable cost, timed in each round while the server is idle:
    // the machine's speed drifts by half within minutes, as the baseline does.
    let mut floors = Vec::new();
    let label = format!("{:?}", args.scenario).to_lowercase();
    let progress = Arc::new(Progress::new(args.connections));
    let requests = prepared(&target);
    let mut measured = Vec::with_capacity(usize::from(args.rounds));
    for _ in 0..args.rounds {
        if args.scenario == Scenario::Register {
            // Let the server finish the last phase's checkpoint first.
            tokio::time::sleep(Duration::from_millis(250)).await;
            floors.push(decryption_floor()?);
        }
        let baseline = baseline(lanes, &target, args.connections, args.baseline_duration()).await;
        let result = drive(label.clone(), target.clone(), Arc::clone(&requests), false, Arc::clone(&progress)).await;
        result.print(Some(&baseline));
        measured.push((baseline, result));
    }
    if progress.next_card.load(Ordering::Relaxed) > fresh.len() {
        println!("{:>24}  ran out of prepared cards: raise --cards for full phases", "");
    }
    let (baseline, result) = if measured.len() == 1 {
        measured.pop().expect("one round")
    } else {
        let (baselines, results): (Vec<Phase>, Vec<Phase>) = measured.into_iter().unzip();
        let ratios: Vec<String> =
            baselines.iter().zip(&results).map(|(b, r)| format!("{:.3}", r.throughput() / b.throughput())).collect();
        let baseline = Phase::pooled("baseline, all rounds", &baselines);
        let result = Phase::pooled(&format!("{label}, all rounds"), &results);
        baseline.print(None);
        result.print(Some(&baseline));
        println!("{:>24}  ratio by round: {}", "", ratios.join(", "));
        (baseline, result)
    };
    if !floors.is_empty() {
        let floor = floors.iter().sum::<Duration>() / u32::try_from(floors.len()).unwrap_or(u32::MAX);
        let by_round: Vec<String> = floors.iter().map(|f| format!("{:.1}", f.as_secs_f64() * 1e6)).collect();
        // The ECDH of D1's `encryptedData` (ECDH-ES, P-256) is a fixed price per registration
        // that differs between processors far more than a no-op request does (45 µs on one
        // machine of ours, 73 µs on another with the faster `/healthz`): this line says how much
        // of a registration's ratio the processor's P-256 arithmetic alone decides.
        let cores = cores();
        let most = cores as f64 / floor.as_secs_f64();
        println!(
            "{:>24}: {:>9.1} µs of a core per encryptedData (parse, ECDH, KDF, AES-GCM; by round {}): \
             {cores} cores decrypt at most {most:.0}/s = {:.3} x baseline",
            "decryption floor",
            floor.as_secs_f64() * 1e6,
            by_round.join(", "),
            most / baseline.throughput()
        );
    }
    if let Some(other) = &args.compare_with {
        let other = other.trim_end_matches('/').to_owned();
        let at = Target::resolve(&other).await?;
        let fresh_progress = Arc::new(Progress::new(args.connections));
        let compared = drive(format!("{label} at {other}"), at.clone(), prepared(&at), true, fresh_progress).await;
        compared.print(Some(&baseline));
        if compared.ok == 0 {
            bail!("no request to {} succeeded: is it serving this API?", compared.label);
        }
        println!(
            "{:>24}: cardplane does {:.2} x the requests/s of {} (same requests, same run)",
            "compared",
            result.throughput() / compared.throughput(),
            compared.label
        );
    }
    Ok(())
}

/// Where a target's scenario stands, carried from round to round: the next prepared card to
/// register, and how many suspends and resumes each connection's card has had (an even count:
/// it is active, so the next is a suspend).
struct Progress {
    next_card: AtomicUsize,
    operations: Vec<AtomicUsize>,
}

impl Progress {
    fn new(connections: usize) -> Self {
        Self { next_card: AtomicUsize::new(0), operations: (0..connections).map(|_| AtomicUsize::new(0)).collect() }
    }
}

/// `application/json`, for the bodies the bench sends.
static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The requests of a phase against one server, made ahead: each prepared registration's path and
/// body, and each connection's own card's paths (its standing card: get, suspend, resume).
struct Requests {
    host: HeaderValue,
    register: Vec<(Uri, Bytes)>,
    get: Vec<Uri>,
    suspend: Vec<Uri>,
    resume: Vec<Uri>,
    operation_body: Bytes,
}

impl Requests {
    fn new(bank: &Bank, target: &Target, fresh: &[(String, Bytes)], standing: &[(String, Bytes)]) -> Self {
        let path = |card_id: &str, suffix: &str| target.path(&format!("{}{suffix}", bank.card_path(card_id)));
        Requests {
            host: target.host.clone(),
            register: fresh.iter().map(|(card_id, body)| (path(card_id, ""), body.clone())).collect(),
            get: standing.iter().map(|(card_id, _)| path(card_id, "")).collect(),
            suspend: standing.iter().map(|(card_id, _)| path(card_id, "/operations:suspend")).collect(),
            resume: standing.iter().map(|(card_id, _)| path(card_id, "/operations:resume")).collect(),
            operation_body: operation_body("USER_DECISION"),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &Uri,
        authorization: Option<HeaderValue>,
        json: Option<&Bytes>,
    ) -> Request<Full<Bytes>> {
        request(method, path, &self.host, authorization, json)
    }
}

/// The body of a suspend or resume.
fn operation_body(reason: &str) -> Bytes {
    Bytes::from(json!({ "reasonCode": reason }).to_string())
}

/// One request from parts made ahead (reference counts, no copies), with a JSON body if any.
fn request(
    method: Method,
    path: &Uri,
    host: &HeaderValue,
    authorization: Option<HeaderValue>,
    json: Option<&Bytes>,
) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(json.cloned().unwrap_or_default()));
    *request.method_mut() = method;
    *request.uri_mut() = path.clone();
    let headers = request.headers_mut();
    headers.insert(HOST, host.clone());
    if let Some(authorization) = authorization {
        headers.insert(AUTHORIZATION, authorization);
    }
    if json.is_some() {
        headers.insert(CONTENT_TYPE, JSON.clone());
    }
    request
}

/// A server the measured requests go to: where to connect, and its `Host`.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    /// The base URL's path, if it has one, before every request's own.
    prefix: String,
}

impl Target {
    /// The server at a base URL (`http://127.0.0.1:8080`, say): plain HTTP/1.1 only, as the load
    /// generator speaks nothing else.
    async fn resolve(base: &str) -> anyhow::Result<Target> {
        let uri: Uri = base.parse().with_context(|| format!("{base} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("the bench drives plain HTTP/1.1: {base} is not an http:// URL");
        }
        let authority = uri.authority().with_context(|| format!("{base} names no host"))?;
        let socket = if authority.port().is_some() { authority.to_string() } else { format!("{authority}:80") };
        let addr = tokio::net::lookup_host(&socket)
            .await
            .with_context(|| format!("cannot resolve {socket}"))?
            .next()
            .with_context(|| format!("{socket} resolves to no address"))?;
        let host = HeaderValue::from_str(authority.as_str()).context("an unusable host")?;
        Ok(Target { addr, host, prefix: uri.path().trim_end_matches('/').to_owned() })
    }

    /// `path` (which starts with `/`) under the base URL's path.
    fn path(&self, path: &str) -> Uri {
        format!("{}{path}", self.prefix).parse().expect("the bench's paths are valid")
    }
}

/// One keep-alive HTTP/1.1 connection of the load generator, opened again when the server has
/// closed it. Nothing but the request and its answer goes through it: no pool to check out of,
/// no URL to parse, no redirects to follow.
struct Link {
    target: Target,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Link {
    fn new(target: Target) -> Link {
        Link { target, sender: None }
    }

    /// Sends `request` and reads its answer to the end: its HTTP status, 0 if there was none.
    async fn send(&mut self, request: Request<Full<Bytes>>) -> u16 {
        match self.exchange(request).await {
            Ok(status) => status,
            Err(_) => {
                self.sender = None;
                0
            }
        }
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<u16> {
        // A connection the server closed between two requests (an idle timeout, `Connection:
        // close`) is opened again before the request, not counted as a failure.
        let open = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !open {
            let stream = tokio::net::TcpStream::connect(self.target.addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            // The connection's I/O runs beside this task, on the same thread; it ends with the link.
            tokio::spawn(connection);
            sender.ready().await?;
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("opened above");
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        // Read to the end, so that the connection can carry the next request.
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// The load generator's threads: one single-threaded runtime each, driving the connections of a
/// phase handed to it, as `wrk`'s threads do. A work-stealing runtime moved answers between
/// the two threads of a 2-core machine and woke them for each other: under `reqwest` on one, the
/// generator spent 13 to 18 µs of CPU on a `/healthz` request, more than the server did
/// (docs/PERFORMANCE.md, twenty-first sitting). The threads stop when this is dropped.
struct Lanes {
    lanes: Vec<tokio::runtime::Handle>,
    _stop: tokio::sync::watch::Sender<()>,
}

impl Lanes {
    fn start(threads: usize) -> std::io::Result<Lanes> {
        let (stop, stopped) = tokio::sync::watch::channel(());
        let mut lanes = Vec::with_capacity(threads);
        for index in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            lanes.push(runtime.handle().clone());
            let mut stopped = stopped.clone();
            std::thread::Builder::new().name(format!("load-{index}")).spawn(move || {
                // Until the sender goes: `changed` fails then.
                runtime.block_on(async move { while stopped.changed().await.is_ok() {} });
            })?;
        }
        Ok(Lanes { lanes, _stop: stop })
    }

    /// Runs the task of connection `connection` on its thread.
    fn spawn<T: Send + 'static>(
        &self,
        connection: usize,
        task: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.lanes[connection % self.lanes.len()].spawn(task)
    }
}

/// Starts this binary's `serve` on a free loopback port and waits until it is ready.
async fn start_server(
    dir: &std::path::Path,
    database_url: Option<String>,
    worker: bool,
) -> anyhow::Result<(String, tokio::process::Child)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command.current_dir(dir).args(["serve", "--listen", &format!("127.0.0.1:{port}")]).kill_on_drop(true);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    if let Some(url) = database_url {
        command.env("CARDPLANE_DATABASE_URL", url);
    }
    command.env("CARDPLANE_WORKER", if worker { "1" } else { "0" });
    let child = command.spawn().context("cannot start the server")?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok((base, child));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not become ready")
}

/// The issuer the load generator plays: its token and its encryption key.
#[derive(Clone)]
struct Bank {
    issuer: String,
    /// `Bearer <access token>`, renewed in the background before the token expires (a fill of a
    /// million cards outlasts one).
    authorization: Arc<RwLock<HeaderValue>>,
    recipient: P256PublicKey,
    kid: String,
}

impl Bank {
    async fn onboard(http: &reqwest::Client, base: &str) -> anyhow::Result<Bank> {
        Self::onboard_with(http, base, json!({})).await
    }

    /// Onboards with more onboarding fields (a `callback`, say).
    async fn onboard_with(http: &reqwest::Client, base: &str, extra: Value) -> anyhow::Result<Bank> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| anyhow::anyhow!("keygen"))?;
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])});
        let issuer = format!("BENCH{:05}", std::process::id() % 100_000);
        let mut body = json!({
            "name": "Bench Bank",
            "assertionKeys": [{"kid": "bench", "jwk": jwk}],
            "cardProducts": [{"cardProductId": "BENCH", "scheme": "VISA", "authorisationMode": "NONE"}],
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let mut onboard = http.put(format!("{base}/admin/v1/issuers/{issuer}")).json(&body);
        if let Ok(token) = std::env::var("CARDPLANE_ADMIN_TOKEN") {
            onboard = onboard.bearer_auth(token);
        }
        let onboarded: Value = onboard.send().await?.error_for_status()?.json().await?;
        let key = &onboarded["encryptionKeys"][0];
        let coordinate = |c: &str| B64.decode(key[c].as_str().unwrap_or_default()).unwrap_or_default();
        let recipient = P256PublicKey::from_sec1(&[vec![4u8], coordinate("x"), coordinate("y")].concat())
            .context("the server's encryption key is not a P-256 point")?;
        let pair = Arc::new(pair);
        let (authorization, lifetime) = Self::mint_token(http, base, &issuer, &pair).await?;
        let authorization = Arc::new(RwLock::new(authorization));
        let renewed = Arc::downgrade(&authorization);
        Self::keep_fresh(renewed, lifetime, http.clone(), base.to_owned(), issuer.clone(), pair);
        Ok(Bank { authorization, kid: key["kid"].as_str().context("no kid")?.to_owned(), issuer, recipient })
    }

    /// An access token for `issuer` (JWT-bearer grant, signed with its assertion key), as the
    /// `Authorization` header that carries it, and how long it lives.
    async fn mint_token(
        http: &reqwest::Client,
        base: &str,
        issuer: &str,
        pair: &EcdsaKeyPair,
    ) -> anyhow::Result<(HeaderValue, Duration)> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let header = B64.encode(json!({"alg": "ES256", "typ": "JWT", "kid": "bench"}).to_string());
        let claims = B64.encode(json!({"iss": issuer, "sub": issuer, "exp": now + 600}).to_string());
        let input = format!("{header}.{claims}");
        let signature = pair.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| anyhow::anyhow!("signing"))?;
        let assertion = format!("{input}.{}", B64.encode(signature.as_ref()));
        let granted: Value = http
            .post(format!("{base}/authz/v1/oauth2/token"))
            .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = granted["access_token"].as_str().context("no access_token")?;
        let authorization = HeaderValue::try_from(format!("Bearer {token}")).context("an unusable access token")?;
        Ok((authorization, Duration::from_secs(granted["expires_in"].as_u64().unwrap_or(900))))
    }

    /// Renews the token at half its lifetime for as long as a clone of this bank lives.
    fn keep_fresh(
        authorization: Weak<RwLock<HeaderValue>>,
        mut lifetime: Duration,
        http: reqwest::Client,
        base: String,
        issuer: String,
        pair: Arc<EcdsaKeyPair>,
    ) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lifetime / 2).await;
                let Some(authorization) = authorization.upgrade() else { return };
                match Self::mint_token(&http, &base, &issuer, &pair).await {
                    Ok((fresh, expires_in)) => {
                        *authorization.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                        lifetime = expires_in;
                    }
                    // Try again soon; the old token is still good for the other half.
                    Err(error) => {
                        eprintln!("renewing the bench's access token failed: {error:#}");
                        lifetime = Duration::from_secs(20);
                    }
                }
            }
        });
    }

    /// The `Authorization` header for the current token (a reference count, not a copy).
    fn authorization(&self) -> HeaderValue {
        self.authorization.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// A card's path in the banking API.
    fn card_path(&self, card_id: &str) -> String {
        format!("/banking/v2/issuers/{}/cards/{card_id}", self.issuer)
    }

    async fn put(&self, http: &reqwest::Client, base: &str, card_id: &str, body: &Bytes) -> anyhow::Result<u16> {
        let request =
            http.put(format!("{base}{}", self.card_path(card_id))).header(AUTHORIZATION, self.authorization());
        let response = request.header(CONTENT_TYPE, JSON.clone()).body(body.clone()).send().await?;
        Ok(response.status().as_u16())
    }
}

/// `count` register-card bodies with distinct PANs, their JWEs made now (one ECDH each) and the
/// bodies serialised, with a progress bar.
fn prepare_cards(bank: &Bank, count: usize) -> Vec<(String, Bytes)> {
    let bar = ProgressBar::new(count as u64).with_message("making card data");
    bar.set_style(ProgressStyle::with_template("{msg:>20} [{bar:40}] {pos}/{len} {eta}").expect("a valid template"));
    let run = std::process::id() % 1_000;
    let cards = (0..count)
        .map(|n| {
            let body = format!("4{run:03}{n:011}");
            let pan = format!("{body}{}", luhn_check_digit(&body));
            let jwe = cardplane_jose::jwe::encrypt(
                json!({"pan": pan, "exp": "1230"}).to_string().as_bytes(),
                &bank.recipient,
                &bank.kid,
            );
            bar.inc(1);
            let body = json!({"consumerId": "bench", "cardProductId": "BENCH", "encryptedData": jwe});
            (format!("bench-{n}"), Bytes::from(body.to_string()))
        })
        .collect();
    bar.finish_and_clear();
    cards
}

/// What one `encryptedData` decryption costs a core of this machine, the server's own code
/// (`cardplane_jose::jwe`: parse, ECDH with the recipient's static key, Concat KDF, AES-256-GCM)
/// on a JWE made as the prepared cards are, timed on this thread in five windows of 20 ms: the
/// fastest window, since a floor is what the core does when nothing else takes it (300 ms
/// measured whole came out between 84 and 124 µs a decryption on one machine in one hour).
fn decryption_floor() -> anyhow::Result<Duration> {
    let recipient = PrivateKey::generate(&ECDH_P256).context("cannot make a P-256 key")?;
    let public = recipient.compute_public_key().context("a P-256 key has a public half")?;
    let public = P256PublicKey::from_sec1(public.as_ref()).context("aws-lc gave no uncompressed point")?;
    let jwe = cardplane_jose::jwe::encrypt(br#"{"pan":"4111111111111111","exp":"1230"}"#, &public, "floor");
    let decrypt = || cardplane_jose::jwe::ParsedJwe::parse(&jwe).and_then(|parsed| parsed.decrypt(&recipient));
    for _ in 0..20 {
        decrypt().context("the bench cannot decrypt its own JWE")?;
    }
    let mut fastest = Duration::MAX;
    for _ in 0..5 {
        let (started, mut count) = (Instant::now(), 0u32);
        while started.elapsed() < Duration::from_millis(20) {
            std::hint::black_box(decrypt().context("the bench cannot decrypt its own JWE")?);
            count += 1;
        }
        fastest = fastest.min(started.elapsed() / count);
    }
    Ok(fastest)
}

/// The no-op route (`GET /healthz`, same middleware, same connections), measured and printed: the
/// baseline every other figure of the run is a ratio to.
async fn baseline(lanes: &Lanes, target: &Target, connections: usize, duration: Duration) -> Phase {
    // Made once, as the scenarios' paths are: the two phases' loops do the same work per request.
    let (healthz, host) = (target.path("/healthz"), target.host.clone());
    let baseline = phase(lanes, target, "baseline GET /healthz", connections, duration, move |_, _| {
        Some(request(Method::GET, &healthz, &host, None, None))
    })
    .await;
    baseline.print(None);
    baseline
}

/// What one phase measured.
struct Phase {
    label: String,
    ok: usize,
    /// The failures by HTTP status (0: no answer), so that a failing run says why.
    failed_by_status: BTreeMap<u16, usize>,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Phase {
    fn empty(label: &str) -> Phase {
        Phase {
            label: label.to_owned(),
            ok: 0,
            failed_by_status: BTreeMap::new(),
            elapsed: Duration::ZERO,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }

    /// The phases of several rounds as one: their requests over their summed durations, their
    /// latencies in one histogram.
    fn pooled(label: &str, phases: &[Phase]) -> Phase {
        let mut pooled = Phase::empty(label);
        for phase in phases {
            pooled.ok += phase.ok;
            pooled.elapsed += phase.elapsed;
            for (status, count) in &phase.failed_by_status {
                *pooled.failed_by_status.entry(*status).or_default() += count;
            }
            let _ = pooled.latency.add(&phase.latency);
        }
        pooled
    }

    fn failed(&self) -> usize {
        self.failed_by_status.values().sum()
    }

    /// `HTTP 401 x 12, no answer x 3`, say.
    fn failures(&self) -> String {
        let each = self.failed_by_status.iter().map(|(status, count)| match status {
            0 => format!("no answer x {count}"),
            status => format!("HTTP {status} x {count}"),
        });
        each.collect::<Vec<_>>().join(", ")
    }

    fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, baseline: Option<&Phase>) {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        let ratio =
            baseline.map_or(String::new(), |b| format!("  = {:.3} x baseline", self.throughput() / b.throughput()));
        println!(
            "{:>24}: {:>9.0} req/s{ratio}  (ok {}, failed {})  latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            self.label,
            self.throughput(),
            self.ok,
            self.failed(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            self.latency.max() as f64 / 1000.0,
        );
        if self.failed() > 0 {
            println!("{:>24}  failed: {}", "", self.failures());
        }
    }
}

/// Sends `request(connection, n)` on `connections` connections to `target` for `duration`, each
/// sending its next request when the last one is answered (ok when 2xx; a request without an
/// answer counts as failed with status 0). `None` means the connection has run out of work
/// (register, when its prepared cards are used up).
async fn phase<F>(
    lanes: &Lanes,
    target: &Target,
    label: &str,
    connections: usize,
    duration: Duration,
    request: F,
) -> Phase
where
    F: Fn(usize, usize) -> Option<Request<Full<Bytes>>> + Send + Sync + 'static,
{
    let bar = ProgressBar::new(duration.as_secs()).with_message(label.to_owned());
    bar.set_style(ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} s").expect("a valid template"));
    let started = Instant::now();
    let deadline = started + duration;
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(250)).await;
                bar.set_position(started.elapsed().as_secs().min(duration.as_secs()));
            }
        })
    };
    let request = Arc::new(request);
    let tasks: Vec<_> = (0..connections)
        .map(|connection| {
            let (request, mut link) = (Arc::clone(&request), Link::new(target.clone()));
            lanes.spawn(connection, async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
                let (mut ok, mut n) = (0usize, 0usize);
                let mut failed = BTreeMap::<u16, usize>::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let Some(next) = request(connection, n) else {
                        break;
                    };
                    let status = link.send(next).await;
                    n += 1;
                    if (200..300).contains(&status) {
                        ok += 1;
                        let _ = latency.record(sent.elapsed().as_micros().max(1) as u64);
                    } else {
                        *failed.entry(status).or_default() += 1;
                    }
                }
                (ok, failed, latency)
            })
        })
        .collect();
    let mut phase = Phase::empty(label);
    for task in tasks {
        if let Ok((ok, failed, latency)) = task.await {
            phase.ok += ok;
            for (status, count) in failed {
                *phase.failed_by_status.entry(status).or_default() += count;
            }
            let _ = phase.latency.add(latency);
        }
    }
    phase.elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    phase
}

/// The drain scenario: a backlog made with the worker off, then timed as a restarted server's worker
/// delivers it to an issuer stub running in this process.
async fn drain(args: &BenchArgs, dir: &std::path::Path, database_url: Option<String>) -> anyhow::Result<()> {
    let stub = IssuerStub::start().await?;
    let (base, mut server) = start_server(dir, database_url.clone(), false).await?;
    let http = reqwest::Client::new();
    let callback = json!({"callback": {
        "baseUrl": stub.base, "clientId": "bench", "clientSecret": "bench-secret",
        "maxBatchSize": args.batch,
    }});
    let bank = Bank::onboard_with(&http, &base, callback).await?;
    let cards = prepare_cards(&bank, args.connections);
    for (card_id, body) in &cards {
        let status = bank.put(&http, &base, card_id, body).await?;
        if status != 204 {
            bail!("registering card {card_id} answered HTTP {status}");
        }
    }
    println!(
        "cardplane bench: Drain, {} notifications in calls of up to {}, {} connections to make them",
        args.notifications, args.batch, args.connections
    );
    let (lanes, target) = (args.lanes()?, Target::resolve(&base).await?);
    let baseline = baseline(&lanes, &target, args.connections, args.baseline_duration()).await;

    // The backlog: suspend/resume pairs, one notification each, until there are enough (the
    // registrations above made one each too).
    let made = AtomicUsize::new(cards.len());
    let wanted = args.notifications;
    let backlog = {
        let operations: Vec<[Uri; 2]> = (cards.iter())
            .map(|(card_id, _)| {
                let card = bank.card_path(card_id);
                [target.path(&format!("{card}/operations:suspend")), target.path(&format!("{card}/operations:resume"))]
            })
            .collect();
        let (bank, host, body) = (bank.clone(), target.host.clone(), operation_body("USER_DECISION"));
        phase(
            &lanes,
            &target,
            "making the backlog",
            args.connections,
            Duration::from_secs(3600),
            move |connection, n| {
                if made.fetch_add(1, Ordering::Relaxed) >= wanted {
                    return None;
                }
                let path = &operations[connection][n % 2];
                Some(request(Method::POST, path, &host, Some(bank.authorization()), Some(&body)))
            },
        )
        .await
    };
    if backlog.failed() > 0 {
        bail!("{} operations of the backlog failed ({})", backlog.failed(), backlog.failures());
    }
    let _ = server.start_kill();
    let _ = server.wait().await;

    // The clock starts when the server (its worker on) starts on the backlog.
    let started = Instant::now();
    let (_, mut server) = start_server(dir, database_url, true).await?;
    let bar = ProgressBar::new(wanted as u64).with_message("draining");
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {per_sec}").expect("a valid template"),
    );
    let timeout = Duration::from_secs(600);
    while stub.delivered() < wanted && started.elapsed() < timeout {
        bar.set_position(stub.delivered() as u64);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let _ = server.start_kill();
    let _ = server.wait().await;
    let delivered = stub.delivered();
    let rate = delivered as f64 / elapsed.as_secs_f64();
    println!(
        "{:>24}: {:>9.0} notifications/s  = {:.3} x baseline  ({delivered} of {wanted} in {:.1} s, {} calls, {} repeated, \
         including the server's start)",
        "drain",
        rate,
        rate / baseline.throughput(),
        elapsed.as_secs_f64(),
        stub.calls.load(Ordering::Relaxed),
        stub.repeated.load(Ordering::Relaxed),
    );
    if delivered < wanted {
        bail!("only {delivered} of {wanted} notifications arrived within {timeout:?}");
    }
    Ok(())
}

/// An issuer backend on loopback, in this process: grants tokens and counts the operations it is
/// notified of, each operationId once (delivery is at least once; repeats are counted apart).
struct IssuerStub {
    base: String,
    seen: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    calls: Arc<AtomicUsize>,
    repeated: Arc<AtomicUsize>,
}

impl IssuerStub {
    async fn start() -> anyhow::Result<IssuerStub> {
        use axum::routing::post;
        let seen: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
        let (calls, repeated) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let notified = {
            let (seen, calls, repeated) = (seen.clone(), calls.clone(), repeated.clone());
            move |axum::Json(body): axum::Json<Value>| async move {
                calls.fetch_add(1, Ordering::Relaxed);
                let mut seen = seen.lock().expect("the stub's set is never poisoned");
                for operation in body["operations"].as_array().into_iter().flatten() {
                    if !seen.insert(operation["operationId"].as_str().unwrap_or_default().to_owned()) {
                        repeated.fetch_add(1, Ordering::Relaxed);
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        };
        let token =
            || async { axum::Json(json!({"access_token": "bench-token", "token_type": "Bearer", "expires_in": 3600})) };
        let app = axum::Router::new()
            .route("/authz/d1/v1/oauth2/token", post(token))
            .route("/notifications/d1/v2/issuers/{issuer}/cards", post(notified));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(IssuerStub { base, seen, calls, repeated })
    }

    fn delivered(&self) -> usize {
        self.seen.lock().expect("the stub's set is never poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parsed(options: &[&str]) -> BenchArgs {
        Command::parse_from(std::iter::once("bench").chain(options.iter().copied())).args
    }

    #[test]
    fn enough_cards_are_prepared_for_every_registration_phase_unless_told() {
        assert_eq!(parsed(&[]).cards(), 200_000, "10 s at 20,000/s");
        assert_eq!(parsed(&["--seconds", "5", "--rounds", "3"]).cards(), 300_000);
        assert_eq!(parsed(&["--seconds", "1"]).cards(), 100_000, "never fewer than 100,000");
        assert_eq!(parsed(&["--seconds", "3600", "--cards", "1000000"]).cards(), 1_000_000);
        assert_eq!(parsed(&["--cards", "42"]).cards(), 42);
    }

    #[tokio::test]
    async fn a_target_keeps_the_base_urls_host_and_path() {
        let target = Target::resolve("http://127.0.0.1:8080/d1/").await.unwrap();
        assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(target.host, "127.0.0.1:8080");
        assert_eq!(target.path("/healthz"), "/d1/healthz");

        let bare = Target::resolve("http://127.0.0.1").await.unwrap();
        assert_eq!((bare.addr.port(), bare.path("/healthz")), (80, "/healthz".parse::<Uri>().unwrap()));
    }

    #[tokio::test]
    async fn a_target_the_generator_cannot_speak_to_is_refused() {
        for base in ["https://127.0.0.1:8443", "127.0.0.1:8080", "not a url"] {
            assert!(Target::resolve(base).await.is_err(), "{base} accepted");
        }
    }

    #[test]
    fn a_request_carries_host_token_and_json_only_when_given() {
        let (path, host) = ("/healthz".parse::<Uri>().unwrap(), HeaderValue::from_static("127.0.0.1:1"));
        let bare = request(Method::GET, &path, &host, None, None);
        assert_eq!(bare.headers().len(), 1, "{bare:?}");
        assert_eq!(bare.headers()[HOST], "127.0.0.1:1");

        let body = operation_body("USER_DECISION");
        let token = HeaderValue::from_static("Bearer t");
        let full = request(Method::POST, &path, &host, Some(token), Some(&body));
        assert_eq!((full.method(), full.uri()), (&Method::POST, &path));
        assert_eq!(full.headers()[AUTHORIZATION], "Bearer t");
        assert_eq!(full.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(body, r#"{"reasonCode":"USER_DECISION"}"#);
    }
}
