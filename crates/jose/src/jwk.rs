//! JWK helpers.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardplane_domain::keys::P256PublicKey;

/// The RFC 7638 thumbprint of a P-256 public key, base64url: a key id that anybody holding the
/// public key can recompute.
pub fn thumbprint(key: &P256PublicKey) -> String {
    // RFC 7638 §3.2: the required members only, in lexicographic order, without white space.
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(key.x()),
        URL_SAFE_NO_PAD.encode(key.y())
    );
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_an_independent_computation() {
        // The P-256 generator as a key; the expected thumbprint was computed independently with
        // Python's hashlib over the RFC 7638 canonical JSON.
        let x = "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296";
        let y = "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5";
        let mut sec1 = vec![4u8];
        for hex in [x, y] {
            sec1.extend((0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()));
        }
        let key = P256PublicKey::from_sec1(&sec1).unwrap();
        assert_eq!(thumbprint(&key), "xx0BcA-wMohw8atYDJOe6peGModklG2wRHBlXHMvl0M");
    }
}
