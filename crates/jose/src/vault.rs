//! [`Vault`]: secrets sealed under keys derived from the master key, issuer encryption keys, and
//! card data (the `encryptedData` JWE in transit, the PAN vault at rest).
//!
//! Sealed format (version 1): `0x01 || nonce (12) || AES-256-GCM ciphertext || tag (16)`, with the
//! caller's context string as additional data, so a sealed value only opens in the place it was
//! sealed for.

use crate::jwe::{JweError, ParsedJwe};
use crate::jwk::thumbprint;
use crate::master::MasterKey;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256};
use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use cardplane_app::ports::{
    CardDataVault, KeyVault, StoredEncryptionKey, UnsealError, VaultedCredentials, encryption_key_context,
};
use cardplane_domain::FieldError;
use cardplane_domain::credentials::{CardCredentials, Cvv, Expiry, Pan};
use cardplane_domain::ids::{IssuerId, KeyId};
use cardplane_domain::keys::{EncryptionKey, P256PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use time::OffsetDateTime;

const SEALED_V1: u8 = 1;
const TAG_LEN: usize = 16;

/// One derived key's purpose. Each purpose gets an independent key (HKDF info), so a key used to
/// seal secrets is never also the PAN key or the token key.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// Sealing small secrets: issuers' private keys, OAuth client secrets.
    SealSecrets,
    /// Sealing card credentials at rest (the PAN vault).
    SealCardData,
    /// The keyed PAN fingerprint (HMAC-SHA-256).
    PanFingerprint,
    /// Signing access tokens (HMAC-SHA-256).
    AccessTokens,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::SealSecrets => b"cardplane/v1/seal-secrets",
            Purpose::SealCardData => b"cardplane/v1/seal-card-data",
            Purpose::PanFingerprint => b"cardplane/v1/pan-fingerprint",
            Purpose::AccessTokens => b"cardplane/v1/access-tokens",
        }
    }
}

struct Len32;

impl KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// Derives the 32-byte key for `purpose` from the master key (HKDF-SHA-256).
pub fn derive(master: &MasterKey, purpose: Purpose) -> [u8; 32] {
    let prk = Salt::new(HKDF_SHA256, b"cardplane master key").extract(master.bytes());
    let mut out = [0u8; 32];
    prk.expand(&[purpose.info()], Len32).and_then(|okm| okm.fill(&mut out)).expect("HKDF can always produce 32 bytes");
    out
}

/// AES-256-GCM with random nonces, in the sealed format of this module.
struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl Sealer {
    fn new(key: &[u8; 32]) -> Self {
        Self {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32 bytes is an AES-256 key")),
            random: SystemRandom::new(),
        }
    }

    fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).expect("the system random source works");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut body)
            .expect("AES-GCM sealing of a small secret cannot fail");
        sealed.extend_from_slice(&body);
        sealed
    }

    fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, UnsealError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEALED_V1 {
            return Err(UnsealError);
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN]).map_err(|_| UnsealError)?;
        let mut body = sealed[1 + NONCE_LEN..].to_vec();
        let plaintext =
            self.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut body).map_err(|_| UnsealError)?;
        Ok(plaintext.to_vec())
    }
}

/// The sealing context of card credentials.
const CARD_DATA_CONTEXT: &str = "card-credentials:v1";

/// Card credentials as sealed at rest and as sent in `encryptedData`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsJson {
    pan: String,
    exp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cvv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl CredentialsJson {
    fn of(credentials: &CardCredentials) -> Self {
        Self {
            pan: credentials.pan.expose().to_owned(),
            exp: credentials.expiry.mmyy(),
            cvv: credentials.cvv.as_ref().map(|c| c.expose().to_owned()),
            name: credentials.name.clone(),
        }
    }

    fn parse(field: &str, json: &[u8]) -> Result<CardCredentials, FieldError> {
        // serde's message could quote the plaintext: it is replaced, never passed on.
        let plain: CredentialsJson = serde_json::from_slice(json).map_err(|_| {
            FieldError::invalid(field, "the decrypted data must be a JSON object with pan, exp and optional cvv, name")
        })?;
        Ok(CardCredentials {
            pan: Pan::parse(field, &plain.pan)?,
            expiry: Expiry::parse(field, &plain.exp)?,
            cvv: plain.cvv.as_deref().map(|c| Cvv::parse(field, c)).transpose()?,
            name: plain.name.as_deref().map(|n| CardCredentials::name(field, n)).transpose()?,
        })
    }
}

/// Holds the keys derived from the master key. The master key itself is not kept.
pub struct Vault {
    sealing: Sealer,
    card_data: Sealer,
    fingerprint: hmac::Key,
    /// Issuers' private encryption keys, unsealed once and kept for ECDH: (issuer, kid) → key.
    private_keys: RwLock<HashMap<(String, String), Arc<agreement::PrivateKey>>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(***)")
    }
}

impl Vault {
    pub fn new(master: &MasterKey) -> Self {
        Self {
            sealing: Sealer::new(&derive(master, Purpose::SealSecrets)),
            card_data: Sealer::new(&derive(master, Purpose::SealCardData)),
            fingerprint: hmac::Key::new(hmac::HMAC_SHA256, &derive(master, Purpose::PanFingerprint)),
            private_keys: RwLock::new(HashMap::new()),
        }
    }

    /// The private half of a stored key, unsealed once and then served from memory.
    fn private_key(
        &self,
        issuer: &IssuerId,
        stored: &StoredEncryptionKey,
    ) -> Result<Arc<agreement::PrivateKey>, UnsealError> {
        let slot = (issuer.to_string(), stored.key.kid.to_string());
        if let Some(key) = self.private_keys.read().expect("never poisoned").get(&slot) {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(self.open_encryption_key(issuer, stored)?);
        self.private_keys.write().expect("never poisoned").insert(slot, Arc::clone(&key));
        Ok(key)
    }

    /// The private half of a stored encryption key, for ECDH.
    pub fn open_encryption_key(
        &self,
        issuer: &IssuerId,
        stored: &StoredEncryptionKey,
    ) -> Result<agreement::PrivateKey, UnsealError> {
        let scalar = self.open(&encryption_key_context(issuer, &stored.key.kid), &stored.sealed_private_key)?;
        agreement::PrivateKey::from_private_key(&ECDH_P256, &scalar).map_err(|_| UnsealError)
    }
}

impl KeyVault for Vault {
    fn new_encryption_key(&self, issuer: &IssuerId, now: OffsetDateTime) -> StoredEncryptionKey {
        let private = agreement::PrivateKey::generate(&ECDH_P256).expect("P-256 key generation works");
        let public = private.compute_public_key().expect("a fresh key has a public half");
        let public_key = P256PublicKey::from_sec1(public.as_ref()).expect("aws-lc returns uncompressed points");
        let kid = KeyId::parse(thumbprint(&public_key)).expect("a thumbprint is a valid kid");
        let scalar: EcPrivateKeyBin<'_> = private.as_be_bytes().expect("an EC key has a scalar");
        let sealed_private_key = self.seal(&encryption_key_context(issuer, &kid), scalar.as_ref());
        StoredEncryptionKey {
            key: EncryptionKey { kid, public_key, created_at: now, retired_at: None },
            sealed_private_key,
        }
    }

    fn is_valid_public_key(&self, key: &P256PublicKey) -> bool {
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.sec1()).is_ok()
    }

    fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        self.sealing.seal(context, plaintext)
    }

    fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, UnsealError> {
        self.sealing.open(context, sealed)
    }
}

impl CardDataVault for Vault {
    fn decrypt_card_data(
        &self,
        issuer: &IssuerId,
        keys: &[StoredEncryptionKey],
        jwe: &str,
        field: &str,
    ) -> Result<CardCredentials, FieldError> {
        let refuse = |error: JweError| FieldError::invalid(field, error.to_string());
        let parsed = ParsedJwe::parse(jwe).map_err(refuse)?;
        let kid = parsed.kid().ok_or_else(|| refuse(JweError::UnknownKey))?;
        let stored = keys.iter().find(|k| k.key.kid.as_str() == kid).ok_or_else(|| refuse(JweError::UnknownKey))?;
        let private = self.private_key(issuer, stored).map_err(|_| refuse(JweError::Decryption))?;
        let plaintext = parsed.decrypt(&private).map_err(refuse)?;
        CredentialsJson::parse(field, &plaintext)
    }

    fn key_id_of(&self, jwe: &str) -> Option<String> {
        crate::jwe::key_id(jwe)
    }

    fn encrypt_card_data(&self, credentials: &CardCredentials, recipient: &P256PublicKey, kid: &KeyId) -> String {
        let plaintext = serde_json::to_vec(&CredentialsJson::of(credentials)).expect("credentials serialise");
        crate::jwe::encrypt(&plaintext, recipient, kid.as_str())
    }

    fn vault_credentials(&self, credentials: &CardCredentials) -> VaultedCredentials {
        let plaintext = serde_json::to_vec(&CredentialsJson::of(credentials)).expect("credentials serialise");
        VaultedCredentials {
            sealed: self.card_data.seal(CARD_DATA_CONTEXT, &plaintext),
            pan_fingerprint: self.pan_fingerprint(&credentials.pan),
            last4: credentials.pan.last4().to_owned(),
        }
    }

    fn open_credentials(&self, sealed: &[u8]) -> Result<CardCredentials, UnsealError> {
        let plaintext = self.card_data.open(CARD_DATA_CONTEXT, sealed)?;
        CredentialsJson::parse("sealed", &plaintext).map_err(|_| UnsealError)
    }

    fn pan_fingerprint(&self, pan: &Pan) -> Vec<u8> {
        hmac::sign(&self.fingerprint, pan.expose().as_bytes()).as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::new(&MasterKey::parse(&"11".repeat(32)).unwrap())
    }

    #[test]
    fn sealed_secrets_open_only_in_their_context_and_under_their_key() {
        let vault = vault();
        let sealed = vault.seal("callback-client-secret:ISSUER0001", b"s3cret");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(vault.open("callback-client-secret:ISSUER0001", &sealed).unwrap(), b"s3cret");
        assert!(vault.open("callback-client-secret:ISSUER0002", &sealed).is_err());
        let other = Vault::new(&MasterKey::parse(&"22".repeat(32)).unwrap());
        assert!(other.open("callback-client-secret:ISSUER0001", &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(vault.open("callback-client-secret:ISSUER0001", &tampered).is_err());
        assert!(vault.open("x", &[]).is_err());
    }

    #[test]
    fn encryption_keys_are_p256_with_thumbprint_kids_and_reopen() {
        let vault = vault();
        let issuer = IssuerId::parse("ISSUER0001").unwrap();
        let stored = vault.new_encryption_key(&issuer, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(stored.key.kid.as_str(), thumbprint(&stored.key.public_key));
        assert!(vault.is_valid_public_key(&stored.key.public_key));
        let private = vault.open_encryption_key(&issuer, &stored).unwrap();
        assert_eq!(private.compute_public_key().unwrap().as_ref(), stored.key.public_key.sec1());
        let other_issuer = IssuerId::parse("ISSUER0002").unwrap();
        assert!(vault.open_encryption_key(&other_issuer, &stored).is_err(), "sealed to its issuer");
    }

    fn credentials(pan: &str) -> CardCredentials {
        CardCredentials {
            pan: Pan::parse("encryptedData", pan).unwrap(),
            expiry: Expiry::parse("encryptedData", "1230").unwrap(),
            cvv: Some(Cvv::parse("encryptedData", "987").unwrap()),
            name: Some("JANE DOE".into()),
        }
    }

    #[test]
    fn card_data_decrypts_with_current_and_retired_keys_only_of_its_issuer() {
        let vault = vault();
        let issuer = IssuerId::parse("ISSUER0001").unwrap();
        let old = vault.new_encryption_key(&issuer, OffsetDateTime::UNIX_EPOCH);
        let new = vault.new_encryption_key(&issuer, OffsetDateTime::UNIX_EPOCH);
        let keys = [old.clone(), new.clone()];
        let card = credentials("4111111111111111");
        for key in [&old, &new] {
            let jwe = vault.encrypt_card_data(&card, &key.key.public_key, &key.key.kid);
            assert_eq!(vault.decrypt_card_data(&issuer, &keys, &jwe, "encryptedData").unwrap(), card);
        }
        let jwe = vault.encrypt_card_data(&card, &new.key.public_key, &new.key.kid);
        let error = vault.decrypt_card_data(&issuer, &[old], &jwe, "encryptedData").unwrap_err();
        assert_eq!(error.to_string(), "encryptedData is invalid: names no encryption key of this issuer (kid)");
    }

    #[test]
    fn bad_plaintexts_are_refused_without_echoing_them() {
        let vault = vault();
        let issuer = IssuerId::parse("ISSUER0001").unwrap();
        let key = vault.new_encryption_key(&issuer, OffsetDateTime::UNIX_EPOCH);
        for plaintext in [
            r#"{"pan":"4111111111111112","exp":"1230"}"#,
            r#"{"pan":"4111111111111111","exp":"1330"}"#,
            r#"{"pan":"4111111111111111","exp":"1230","cvv":"12"}"#,
            r#"{"pan":"4111111111111111","exp":"1230","track2":"4111111111111111=3012"}"#,
            r#"{"exp":"1230"}"#,
            "4111111111111111",
        ] {
            let jwe = crate::jwe::encrypt(plaintext.as_bytes(), &key.key.public_key, key.key.kid.as_str());
            let error =
                vault.decrypt_card_data(&issuer, std::slice::from_ref(&key), &jwe, "encryptedData").unwrap_err();
            assert_eq!(error.field, "encryptedData");
            let text = error.to_string();
            for secret in ["4111111111111111", "1230", "1330", "3012"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[test]
    fn the_pan_vault_seals_and_fingerprints() {
        let vault = vault();
        let card = credentials("5500000000000004");
        let vaulted = vault.vault_credentials(&card);
        assert_eq!(vaulted.last4, "0004");
        assert!(!vaulted.sealed.windows(16).any(|w| w == b"5500000000000004"));
        assert_eq!(vault.open_credentials(&vaulted.sealed).unwrap(), card);
        assert_eq!(vaulted.pan_fingerprint, vault.vault_credentials(&card).pan_fingerprint, "stable");
        assert_ne!(vaulted.sealed, vault.vault_credentials(&card).sealed, "fresh nonce each time");
        let other = Vault::new(&MasterKey::parse(&"22".repeat(32)).unwrap());
        assert_ne!(vaulted.pan_fingerprint, other.pan_fingerprint(&card.pan), "keyed by the master key");
        assert!(other.open_credentials(&vaulted.sealed).is_err());
    }

    #[test]
    fn points_off_the_curve_are_refused() {
        let mut point = [0u8; 65];
        point[0] = 4;
        point[64] = 1;
        assert!(!vault().is_valid_public_key(&P256PublicKey::from_sec1(&point).unwrap()));
    }
}
