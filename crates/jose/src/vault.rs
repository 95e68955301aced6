//! [`Vault`]: secrets sealed under keys derived from the master key, and issuer encryption keys.
//!
//! Sealed format (version 1): `0x01 || nonce (12) || AES-256-GCM ciphertext || tag (16)`, with the
//! caller's context string as additional data, so a sealed value only opens in the place it was
//! sealed for.

use crate::jwk::thumbprint;
use crate::master::MasterKey;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256};
use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use cardplane_app::ports::{KeyVault, StoredEncryptionKey, UnsealError, encryption_key_context};
use cardplane_domain::ids::{IssuerId, KeyId};
use cardplane_domain::keys::{EncryptionKey, P256PublicKey};
use time::OffsetDateTime;

const SEALED_V1: u8 = 1;
const TAG_LEN: usize = 16;

/// Holds the keys derived from the master key. The master key itself is not kept.
pub struct Vault {
    sealing: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(***)")
    }
}

/// One derived key's purpose. Each purpose gets an independent key (HKDF info), so a key used to
/// seal secrets is never also the PAN key or the token key.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    SealSecrets,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::SealSecrets => b"cardplane/v1/seal-secrets",
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
    prk.expand(&[purpose.info()], Len32)
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF can always produce 32 bytes");
    out
}

impl Vault {
    pub fn new(master: &MasterKey) -> Self {
        let key = derive(master, Purpose::SealSecrets);
        let sealing = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &key).expect("32 bytes is an AES-256 key"),
        );
        Self {
            sealing,
            random: SystemRandom::new(),
        }
    }

    /// The private half of a stored encryption key, for ECDH.
    pub fn open_encryption_key(
        &self,
        issuer: &IssuerId,
        stored: &StoredEncryptionKey,
    ) -> Result<agreement::PrivateKey, UnsealError> {
        let scalar = self.open(
            &encryption_key_context(issuer, &stored.key.kid),
            &stored.sealed_private_key,
        )?;
        agreement::PrivateKey::from_private_key(&ECDH_P256, &scalar).map_err(|_| UnsealError)
    }
}

impl KeyVault for Vault {
    fn new_encryption_key(&self, issuer: &IssuerId, now: OffsetDateTime) -> StoredEncryptionKey {
        let private =
            agreement::PrivateKey::generate(&ECDH_P256).expect("P-256 key generation works");
        let public = private
            .compute_public_key()
            .expect("a fresh key has a public half");
        let public_key =
            P256PublicKey::from_sec1(public.as_ref()).expect("aws-lc returns uncompressed points");
        let kid = KeyId::parse(thumbprint(&public_key)).expect("a thumbprint is a valid kid");
        let scalar: EcPrivateKeyBin<'_> = private.as_be_bytes().expect("an EC key has a scalar");
        let sealed_private_key = self.seal(&encryption_key_context(issuer, &kid), scalar.as_ref());
        StoredEncryptionKey {
            key: EncryptionKey {
                kid,
                public_key,
                created_at: now,
                retired_at: None,
            },
            sealed_private_key,
        }
    }

    fn is_valid_public_key(&self, key: &P256PublicKey) -> bool {
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.sec1()).is_ok()
    }

    fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .expect("AES-GCM sealing of a small secret cannot fail");
        sealed.extend_from_slice(&body);
        sealed
    }

    fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, UnsealError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEALED_V1 {
            return Err(UnsealError);
        }
        let nonce =
            Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN]).map_err(|_| UnsealError)?;
        let mut body = sealed[1 + NONCE_LEN..].to_vec();
        let plaintext = self
            .sealing
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut body)
            .map_err(|_| UnsealError)?;
        Ok(plaintext.to_vec())
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
        assert_eq!(
            vault
                .open("callback-client-secret:ISSUER0001", &sealed)
                .unwrap(),
            b"s3cret"
        );
        assert!(
            vault
                .open("callback-client-secret:ISSUER0002", &sealed)
                .is_err()
        );
        let other = Vault::new(&MasterKey::parse(&"22".repeat(32)).unwrap());
        assert!(
            other
                .open("callback-client-secret:ISSUER0001", &sealed)
                .is_err()
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(
            vault
                .open("callback-client-secret:ISSUER0001", &tampered)
                .is_err()
        );
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
        assert_eq!(
            private.compute_public_key().unwrap().as_ref(),
            stored.key.public_key.sec1()
        );
        let other_issuer = IssuerId::parse("ISSUER0002").unwrap();
        assert!(
            vault.open_encryption_key(&other_issuer, &stored).is_err(),
            "sealed to its issuer"
        );
    }

    #[test]
    fn points_off_the_curve_are_refused() {
        let mut point = [0u8; 65];
        point[0] = 4;
        point[64] = 1;
        assert!(!vault().is_valid_public_key(&P256PublicKey::from_sec1(&point).unwrap()));
    }
}
