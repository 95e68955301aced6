//! Compact JWE with `alg: ECDH-ES` (direct key agreement) and `enc: A256GCM` on P-256
//! (RFC 7516, RFC 7518 §4.6 and §5.3), on aws-lc-rs primitives.
//!
//! Written here rather than taken from a JOSE crate because the maintained Rust ones either lack
//! ECDH-ES or go through OpenSSL at about six times the cost of the ECDH itself, and decryption is on
//! the hot path of every card registration. It supports exactly this one algorithm pair and refuses
//! everything else (`zip`, `crit`, other `alg`/`enc`, a non-empty encrypted key).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardplane_domain::keys::P256PublicKey;
use serde::{Deserialize, Serialize};

/// Why a JWE was refused. Never carries any of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    #[error("is not a compact JWE")]
    Malformed,
    #[error("must use alg ECDH-ES and enc A256GCM on P-256")]
    Unsupported,
    #[error("names no encryption key of this issuer (kid)")]
    UnknownKey,
    #[error("could not be decrypted")]
    Decryption,
}

/// The largest JWE accepted: a card's plaintext is small; this bounds the work a caller can cause.
pub const MAX_JWE_LEN: usize = 8192;

#[derive(Debug, Serialize, Deserialize)]
struct EphemeralKey {
    kty: String,
    crv: String,
    x: String,
    y: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    enc: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    epk: EphemeralKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    apu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    zip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crit: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// A JWE whose header was read; the key it names can now be looked up.
pub struct ParsedJwe<'a> {
    header: Header,
    protected: &'a str,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
    epk_point: Vec<u8>,
}

fn b64(part: &str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| JweError::Malformed)
}

/// The protected header (the first part of a compact JWE), read as `T`.
fn protected_header<T: serde::de::DeserializeOwned>(protected: &str) -> Result<T, JweError> {
    serde_json::from_slice(&b64(protected)?).map_err(|_| JweError::Malformed)
}

/// The `kid` a compact JWE names, read from its protected header alone: cheaper than
/// [`ParsedJwe::parse`] (which decodes every part), for callers that only choose a key.
pub fn key_id(compact: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct KeyIdOnly {
        kid: Option<String>,
    }
    let protected = compact.split('.').next()?;
    protected_header::<KeyIdOnly>(protected).ok()?.kid
}

impl<'a> ParsedJwe<'a> {
    pub fn parse(compact: &'a str) -> Result<Self, JweError> {
        if compact.len() > MAX_JWE_LEN {
            return Err(JweError::Malformed);
        }
        let mut parts = compact.split('.');
        let (Some(protected), Some(encrypted_key), Some(iv), Some(ciphertext), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JweError::Malformed);
        };
        let header: Header = protected_header(protected)?;
        let supported = header.alg == "ECDH-ES"
            && header.enc == "A256GCM"
            && header.epk.kty == "EC"
            && header.epk.crv == "P-256"
            && header.zip.is_none()
            && header.crit.is_none()
            && encrypted_key.is_empty();
        if !supported {
            return Err(JweError::Unsupported);
        }
        let (x, y) = (b64(&header.epk.x)?, b64(&header.epk.y)?);
        if x.len() != 32 || y.len() != 32 {
            return Err(JweError::Malformed);
        }
        let epk_point = [&[0x04][..], &x, &y].concat();
        let (iv, ciphertext, tag) = (b64(iv)?, b64(ciphertext)?, b64(tag)?);
        if iv.len() != 12 || tag.len() != 16 {
            return Err(JweError::Malformed);
        }
        Ok(Self { header, protected, iv, ciphertext, tag, epk_point })
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    /// Decrypts with the recipient's private key.
    pub fn decrypt(self, recipient: &agreement::PrivateKey) -> Result<Vec<u8>, JweError> {
        let apu = self.header.apu.as_deref().map(b64).transpose()?.unwrap_or_default();
        let apv = self.header.apv.as_deref().map(b64).transpose()?.unwrap_or_default();
        let peer = UnparsedPublicKey::new(&ECDH_P256, &self.epk_point);
        // An invalid point (off the curve) fails the agreement.
        let cek = agreement::agree(recipient, peer, JweError::Decryption, |z| Ok(concat_kdf(z, &apu, &apv)))?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).map_err(|_| JweError::Decryption)?);
        let nonce = Nonce::try_assume_unique_for_key(&self.iv).map_err(|_| JweError::Malformed)?;
        let mut in_out = [self.ciphertext, self.tag].concat();
        let plaintext = key
            .open_in_place(nonce, Aad::from(self.protected.as_bytes()), &mut in_out)
            .map_err(|_| JweError::Decryption)?;
        Ok(plaintext.to_vec())
    }
}

/// The Concat KDF of NIST SP 800-56A as RFC 7518 §4.6.2 uses it for ECDH-ES direct with A256GCM:
/// one SHA-256 round over `1 || Z || AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo`.
fn concat_kdf(z: &[u8], apu: &[u8], apv: &[u8]) -> [u8; 32] {
    let with_length = |bytes: &[u8]| [&(bytes.len() as u32).to_be_bytes()[..], bytes].concat();
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&1u32.to_be_bytes());
    context.update(z);
    context.update(&with_length(b"A256GCM"));
    context.update(&with_length(apu));
    context.update(&with_length(apv));
    context.update(&256u32.to_be_bytes());
    context.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Encrypts `plaintext` to `recipient` (identified by `kid`) as a compact JWE.
pub fn encrypt(plaintext: &[u8], recipient: &P256PublicKey, kid: &str) -> String {
    let random = SystemRandom::new();
    let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, &random).expect("P-256 key generation works");
    let epk = ephemeral.compute_public_key().expect("an ephemeral key has a public half");
    let epk = epk.as_ref();
    let header = Header {
        alg: "ECDH-ES".into(),
        enc: "A256GCM".into(),
        kid: Some(kid.to_owned()),
        epk: EphemeralKey {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode(&epk[1..33]),
            y: URL_SAFE_NO_PAD.encode(&epk[33..65]),
        },
        apu: None,
        apv: None,
        zip: None,
        crit: None,
        cty: None,
        typ: None,
    };
    let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("a header serialises"));
    let peer = UnparsedPublicKey::new(&ECDH_P256, recipient.sec1());
    let cek = agreement::agree_ephemeral(ephemeral, peer, (), |z| Ok(concat_kdf(z, &[], &[])))
        .expect("the recipient key is a checked P-256 point");
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).expect("32 bytes is an AES-256 key"));
    let mut iv = [0u8; 12];
    random.fill(&mut iv).expect("the system random source works");
    let mut in_out = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(protected.as_bytes()), &mut in_out)
        .expect("AES-GCM sealing cannot fail for a small plaintext");
    format!(
        "{protected}..{}.{}.{}",
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(&in_out),
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient() -> (agreement::PrivateKey, P256PublicKey) {
        let private = agreement::PrivateKey::generate(&ECDH_P256).unwrap();
        let public = P256PublicKey::from_sec1(private.compute_public_key().unwrap().as_ref()).unwrap();
        (private, public)
    }

    #[test]
    fn round_trips() {
        let (private, public) = recipient();
        let jwe = encrypt(br#"{"pan":"4111111111111111","exp":"1229"}"#, &public, "k1");
        let parsed = ParsedJwe::parse(&jwe).unwrap();
        assert_eq!(parsed.kid(), Some("k1"));
        assert_eq!(parsed.decrypt(&private).unwrap(), br#"{"pan":"4111111111111111","exp":"1229"}"#);
    }

    /// The key a JWE names is read from its header alone, as the full parse reads it.
    #[test]
    fn the_key_id_comes_from_the_header_alone() {
        let (_, public) = recipient();
        assert_eq!(key_id(&encrypt(b"secret", &public, "k1")).as_deref(), Some("k1"));
        let header_only = |json: &str| format!("{}.the.rest.is.ignored", URL_SAFE_NO_PAD.encode(json));
        assert_eq!(key_id(&header_only(r#"{"kid":"k2","alg":"ECDH-ES"}"#)).as_deref(), Some("k2"));
        assert_eq!(key_id(&header_only(r#"{"alg":"ECDH-ES"}"#)), None);
        assert_eq!(key_id("not base64!.x"), None);
        assert_eq!(key_id(""), None);
    }

    #[test]
    fn refuses_tampering_other_keys_and_other_algorithms() {
        let (private, public) = recipient();
        let jwe = encrypt(b"secret", &public, "k1");
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        let mut ciphertext = URL_SAFE_NO_PAD.decode(&parts[3]).unwrap();
        ciphertext[0] ^= 1;
        parts[3] = URL_SAFE_NO_PAD.encode(ciphertext);
        assert_eq!(ParsedJwe::parse(&parts.join(".")).unwrap().decrypt(&private).err(), Some(JweError::Decryption));

        let (other, _) = recipient();
        assert_eq!(ParsedJwe::parse(&jwe).unwrap().decrypt(&other).err(), Some(JweError::Decryption));

        let header =
            |json: &str| format!("{}..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA", URL_SAFE_NO_PAD.encode(json));
        let epk = r#""epk":{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#;
        for bad in [
            format!(r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM",{epk}}}"#),
            format!(r#"{{"alg":"ECDH-ES","enc":"A128GCM",{epk}}}"#),
            format!(r#"{{"alg":"ECDH-ES","enc":"A256GCM","zip":"DEF",{epk}}}"#),
            format!(r#"{{"alg":"ECDH-ES","enc":"A256GCM","crit":["x"],{epk}}}"#),
        ] {
            assert_eq!(ParsedJwe::parse(&header(&bad)).err(), Some(JweError::Unsupported), "{bad}");
        }
        // The all-zero point is not on the curve: the agreement refuses it.
        let zero = header(&format!(r#"{{"alg":"ECDH-ES","enc":"A256GCM",{epk}}}"#));
        assert_eq!(ParsedJwe::parse(&zero).unwrap().decrypt(&private).err(), Some(JweError::Decryption));
        for malformed in ["", "a.b.c.d", "a.b.c.d.e.f", "!!!.x.y.z.w", &"a".repeat(MAX_JWE_LEN + 1)] {
            assert!(ParsedJwe::parse(malformed).is_err());
        }
    }
}
