//! Card data encrypted by an independent implementation (jwcrypto) decrypts here, and what it must
//! refuse is refused. The fixture is `cardplane-testkit/fixtures/interop.json`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardplane_app::ports::{CardDataVault, KeyVault, StoredEncryptionKey, encryption_key_context};
use cardplane_domain::ids::{IssuerId, KeyId};
use cardplane_domain::keys::{EncryptionKey, P256PublicKey};
use cardplane_testkit::{INTEROP_FIXTURE, test_vault};
use serde_json::Value;
use time::OffsetDateTime;

fn fixture() -> Value {
    serde_json::from_str(INTEROP_FIXTURE).unwrap()
}

/// The fixture's encryption key as the store would hold it: sealed under the test master key.
fn stored_key(issuer: &IssuerId, fixture: &Value) -> StoredEncryptionKey {
    let key = &fixture["encryptionKey"];
    let part = |name: &str| URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap();
    let kid = KeyId::parse(key["kid"].as_str().unwrap()).unwrap();
    let point = [vec![4u8], part("x"), part("y")].concat();
    StoredEncryptionKey {
        sealed_private_key: test_vault().seal(&encryption_key_context(issuer, &kid), &part("d")),
        key: EncryptionKey {
            kid,
            public_key: P256PublicKey::from_sec1(&point).unwrap(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            retired_at: None,
        },
    }
}

#[test]
fn jwcrypto_card_data_decrypts() {
    let fixture = fixture();
    let issuer = IssuerId::parse(fixture["issuerId"].as_str().unwrap()).unwrap();
    let keys = [stored_key(&issuer, &fixture)];
    let vault = test_vault();
    for case in ["panExp", "allFields", "withApuApv"] {
        let data = &fixture["cardData"][case];
        let credentials = vault
            .decrypt_card_data(&issuer, &keys, data["jwe"].as_str().unwrap(), "encryptedData")
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let plaintext = &data["plaintext"];
        assert_eq!(credentials.pan.expose(), plaintext["pan"], "{case}");
        assert_eq!(credentials.expiry.mmyy(), plaintext["exp"], "{case}");
        assert_eq!(credentials.cvv.as_ref().map(|c| c.expose()), plaintext["cvv"].as_str(), "{case}");
        assert_eq!(credentials.name.as_deref(), plaintext["name"].as_str(), "{case}");
    }
}

#[test]
fn what_jwcrypto_made_wrong_is_refused_without_card_data() {
    let fixture = fixture();
    let issuer = IssuerId::parse(fixture["issuerId"].as_str().unwrap()).unwrap();
    let keys = [stored_key(&issuer, &fixture)];
    let vault = test_vault();
    for (case, expected) in [
        ("toAnotherKey", "encryptedData is invalid: could not be decrypted"),
        ("tampered", "encryptedData is invalid: could not be decrypted"),
        ("badLuhn", "encryptedData is invalid: pan fails the Luhn check"),
    ] {
        let jwe = fixture["cardData"][case]["jwe"].as_str().unwrap();
        let error = vault.decrypt_card_data(&issuer, &keys, jwe, "encryptedData").unwrap_err();
        assert_eq!(error.to_string(), expected, "{case}");
    }
    let other_issuer = IssuerId::parse("OTHERBANK1").unwrap();
    let jwe = fixture["cardData"]["panExp"]["jwe"].as_str().unwrap();
    assert!(vault.decrypt_card_data(&other_issuer, &[], jwe, "encryptedData").is_err(), "no key of that issuer");
}
