//! Public-key material as the domain sees it. The cryptography (checking a point is on the curve,
//! sealing private keys) lives in the `jose` adapter; the domain only carries the checked values.

use crate::ids::KeyId;
use time::OffsetDateTime;

/// A P-256 public key as its SEC1 uncompressed point (`0x04 || x || y`, 65 bytes).
///
/// The shape is checked here; that the point lies on the curve is checked by the `jose` adapter,
/// the only place that builds one from untrusted input.
#[derive(Clone, PartialEq, Eq)]
pub struct P256PublicKey([u8; 65]);

impl P256PublicKey {
    pub fn from_sec1(bytes: &[u8]) -> Option<Self> {
        let point: [u8; 65] = bytes.try_into().ok()?;
        (point[0] == 0x04).then_some(Self(point))
    }

    pub fn sec1(&self) -> &[u8; 65] {
        &self.0
    }

    /// The affine x coordinate (32 bytes, big-endian).
    pub fn x(&self) -> &[u8] {
        &self.0[1..33]
    }

    /// The affine y coordinate (32 bytes, big-endian).
    pub fn y(&self) -> &[u8] {
        &self.0[33..65]
    }
}

impl std::fmt::Debug for P256PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P256PublicKey(..)")
    }
}

/// A public key an issuer signs its token assertions with (ES256), chosen by `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionKey {
    pub kid: KeyId,
    pub public_key: P256PublicKey,
}

/// A cardplane-side encryption key of an issuer: the key the issuer encrypts `encryptedData` to.
/// Only its public half is here; the private half stays sealed in the key store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionKey {
    pub kid: KeyId,
    pub public_key: P256PublicKey,
    pub created_at: OffsetDateTime,
    /// Set when a newer key took over. A retired key still decrypts; issuers should stop using it.
    pub retired_at: Option<OffsetDateTime>,
}

impl EncryptionKey {
    pub fn is_active(&self) -> bool {
        self.retired_at.is_none()
    }
}
