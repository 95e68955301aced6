//! Micro-benchmarks of the per-request cryptography: decrypting `encryptedData` (one ECDH per
//! request), and checking bearer tokens (a cache look-up once verified; HMAC on a miss), plus the
//! ES256 assertion check of the token endpoint.
//!
//! Run: `cargo bench -p cardplane-jose --bench crypto`. Besides criterion's own report, the run ends
//! with each figure as a ratio to baselines measured in the same run (a bare P-256 ECDH agreement,
//! the floor of any decryption), since absolute times on shared machines mean little.

use aws_lc_rs::agreement::{self, ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::rand::SystemRandom;
use cardplane_app::ports::{CardDataVault, KeyVault, TokenService};
use cardplane_domain::credentials::{CardCredentials, Expiry, Pan};
use cardplane_domain::ids::IssuerId;
use cardplane_jose::{AccessTokens, MasterKey, Vault};
use criterion::{BatchSize, Criterion, criterion_group};
use std::hint::black_box;
use std::time::Duration;
use time::OffsetDateTime;

fn benches(c: &mut Criterion) {
    let vault = Vault::new(&MasterKey::parse(&"11".repeat(32)).unwrap());
    let issuer = IssuerId::parse("BENCH00001").unwrap();
    let now = OffsetDateTime::now_utc();
    let key = vault.new_encryption_key(&issuer, now);
    let keys = [key.clone()];
    let credentials = CardCredentials {
        pan: Pan::parse("f", "4111111111111111").unwrap(),
        expiry: Expiry::parse("f", "1230").unwrap(),
        cvv: None,
        name: None,
    };
    let jwe = vault.encrypt_card_data(&credentials, &key.key.public_key, &key.key.kid);

    let mut group = c.benchmark_group("card-data");
    group.bench_function("baseline: ECDH P-256 agreement", |b| {
        let rng = SystemRandom::new();
        b.iter_batched(
            || EphemeralPrivateKey::generate(&ECDH_P256, &rng).unwrap(),
            |ours| {
                agreement::agree_ephemeral(
                    ours,
                    UnparsedPublicKey::new(&ECDH_P256, key.key.public_key.sec1()),
                    (),
                    |z| Ok(black_box(z.len())),
                )
                .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("decrypt encryptedData (JWE ECDH-ES + A256GCM)", |b| {
        b.iter(|| vault.decrypt_card_data(&issuer, &keys, black_box(&jwe), "encryptedData").unwrap())
    });
    group.bench_function("vault credentials (seal + PAN fingerprint)", |b| {
        b.iter(|| vault.vault_credentials(black_box(&credentials)))
    });
    group.finish();

    let tokens = AccessTokens::new(&[9; 32]);
    let token = tokens.issue_access_token(&issuer, now).token;
    let mut group = c.benchmark_group("tokens");
    group.bench_function("authenticate, verified before (cache hit)", |b| {
        b.iter(|| tokens.authenticate(black_box(&token), now).unwrap())
    });
    group.bench_function("authenticate, first time (HMAC + claims)", |b| {
        b.iter_batched(
            || AccessTokens::new(&[9; 32]),
            |fresh| fresh.authenticate(black_box(&token), now).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let signer =
        aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let assertion = sign_assertion(&signer, now);
    let public = {
        use aws_lc_rs::signature::KeyPair;
        cardplane_domain::keys::P256PublicKey::from_sec1(signer.public_key().as_ref()).unwrap()
    };
    group.bench_function("verify an ES256 assertion (token endpoint)", |b| {
        b.iter(|| tokens.verify_assertion(black_box(&assertion), &public).unwrap())
    });
    group.finish();
}

fn sign_assertion(signer: &aws_lc_rs::signature::EcdsaKeyPair, now: OffsetDateTime) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let header = B64.encode(r#"{"alg":"ES256","kid":"k"}"#);
    let exp = now.unix_timestamp() + 300;
    let claims = B64.encode(format!(r#"{{"iss":"BENCH00001","sub":"BENCH00001","exp":{exp}}}"#));
    let input = format!("{header}.{claims}");
    let signature = signer.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", B64.encode(signature.as_ref()))
}

/// Reads criterion's estimates of this run and prints each mean as a ratio to its group's baseline.
fn print_ratios() {
    let root = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").to_owned());
    let mean = |group: &str, bench: &str| -> Option<f64> {
        // Criterion keeps the name as the directory, with `:` made `_`.
        let dir = bench.replace(':', "_");
        let path = format!("{root}/criterion/{group}/{dir}/new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["mean"]["point_estimate"].as_f64()
    };
    let Some(ecdh) = mean("card-data", "baseline: ECDH P-256 agreement") else {
        println!("(no criterion estimates found: ratios not printed)");
        return;
    };
    println!("\nRatios to the ECDH P-256 baseline of this run ({:.1} µs):", ecdh / 1e3);
    for (group, bench) in [
        ("card-data", "decrypt encryptedData (JWE ECDH-ES + A256GCM)"),
        ("card-data", "vault credentials (seal + PAN fingerprint)"),
        ("tokens", "authenticate, verified before (cache hit)"),
        ("tokens", "authenticate, first time (HMAC + claims)"),
        ("tokens", "verify an ES256 assertion (token endpoint)"),
    ] {
        if let Some(ns) = mean(group, bench) {
            println!("  {bench:<50} {:>8.3} x ECDH   ({:.2} µs)", ns / ecdh, ns / 1e3);
        }
    }
}

criterion_group! {
    name = crypto;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = benches
}

fn main() {
    crypto();
    Criterion::default().configure_from_args().final_summary();
    print_ratios();
}
