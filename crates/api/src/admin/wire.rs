//! Wire types of the admin API, and their parsing into domain types.
//!
//! The same [`OnboardingRequest`] is read from the admin API's JSON, from `[[issuers]]` in the TOML
//! configuration and by `cardplane issuer add`, so all three accept exactly the same input.

use crate::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardplane_app::OnboardedIssuer;
use cardplane_domain::FieldError;
use cardplane_domain::ids::{CardProductId, KeyId};
use cardplane_domain::issuer::{
    CallbackSettings, HttpUrl, Issuer, IssuerName, Onboarding, WalletServerSettings, pod_name,
};
use cardplane_domain::keys::{AssertionKey, EncryptionKey, P256PublicKey};
use cardplane_domain::product::{AuthorisationMode, BinRange, CardProduct, ValidityYears};
use cardplane_domain::scheme::Scheme;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

/// `PUT /admin/v1/issuers/{issuerId}` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OnboardingRequest {
    /// Optional in the admin API (the path names the issuer; if given, it must match); required in
    /// the TOML file's `[[issuers]]`.
    #[schema(pattern = "^[A-Za-z0-9_-]{10}$")]
    pub issuer_id: Option<String>,
    #[schema(min_length = 1, max_length = 128, example = "Bank of Examples")]
    pub name: String,
    #[schema(max_items = 20)]
    pub assertion_keys: Vec<AssertionKeyInput>,
    #[serde(default)]
    pub card_products: Vec<CardProductInput>,
    pub callback: Option<CallbackInput>,
    pub wallet_server: Option<WalletServerInput>,
}

/// An ES256 public key, as a JWK or as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionKeyInput {
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub kid: String,
    /// JWK members beyond the EC ones are allowed (RFC 7517 §4: ignore what you do not know).
    #[schema(value_type = Option<Object>)]
    pub jwk: Option<Map<String, Value>>,
    pub pem: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CardProductInput {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,48}$")]
    pub card_product_id: String,
    #[schema(value_type = crate::openapi::Scheme)]
    pub scheme: String,
    #[schema(pattern = "^(NONE|LIGHT|FULL)$", example = "NONE")]
    pub authorisation_mode: String,
    pub bin_range: Option<BinRangeInput>,
    #[serde(default)]
    pub physical: bool,
    #[schema(minimum = 1, maximum = 10)]
    pub validity_years: Option<i64>,
    #[serde(default)]
    pub used_for_transactions: bool,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BinRangeInput {
    #[schema(pattern = "^[0-9]{6,19}$")]
    pub from: String,
    #[schema(pattern = "^[0-9]{6,19}$")]
    pub to: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CallbackInput {
    #[schema(pattern = "^https?://", max_length = 2048, example = "https://issuer.example.com")]
    pub base_url: String,
    #[schema(pattern = "^https?://", max_length = 2048, example = "https://issuer.example.com")]
    pub token_url: Option<String>,
    #[schema(min_length = 1, max_length = 256)]
    pub client_id: Option<String>,
    #[schema(min_length = 1, max_length = 512, format = Password)]
    pub client_secret: Option<String>,
    #[schema(min_length = 1, max_length = 512)]
    pub scope: Option<String>,
    #[schema(minimum = 1, maximum = 100)]
    pub max_batch_size: Option<i64>,
    pub stores_consumer_data: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WalletServerInput {
    #[schema(pattern = "^https?://", max_length = 2048, example = "https://issuer.example.com")]
    pub base_url: String,
    #[serde(default)]
    pub pods: BTreeMap<String, String>,
}

impl OnboardingRequest {
    /// Parses the request into the domain's [`Onboarding`]; the first refused field wins.
    pub fn into_domain(self) -> Result<Onboarding, ApiError> {
        let name = IssuerName::parse(&self.name)?;
        let assertion_keys = self
            .assertion_keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| key.into_domain().map_err(|e| e.within(&format!("assertionKeys[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let card_products = self
            .card_products
            .into_iter()
            .enumerate()
            .map(|(i, product)| product.into_domain().map_err(|e| e.within(&format!("cardProducts[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let callback = self.callback.map(|c| c.into_domain().map_err(|e| e.within("callback"))).transpose()?;
        let wallet_server =
            self.wallet_server.map(|w| w.into_domain().map_err(|e| e.within("walletServer"))).transpose()?;
        Ok(Onboarding::new(name, assertion_keys, card_products, callback, wallet_server)?)
    }
}

impl AssertionKeyInput {
    fn into_domain(self) -> Result<AssertionKey, FieldError> {
        let kid = KeyId::parse(self.kid)?;
        let public_key = match (self.jwk, self.pem) {
            (Some(jwk), None) => parse_jwk(&jwk, &kid).map_err(|e| e.within("jwk"))?,
            (None, Some(pem)) => parse_pem(&pem)?,
            (None, None) => return Err(FieldError::missing("jwk")),
            (Some(_), Some(_)) => {
                return Err(FieldError::invalid("pem", "give either jwk or pem, not both"));
            }
        };
        Ok(AssertionKey { kid, public_key })
    }
}

/// An EC P-256 public JWK → its point. The curve membership is checked later by the key vault.
fn parse_jwk(jwk: &Map<String, Value>, kid: &KeyId) -> Result<P256PublicKey, FieldError> {
    let text = |member: &str| {
        jwk.get(member).map(|v| v.as_str().ok_or_else(|| FieldError::invalid(member, "must be a string")))
    };
    let require = |member: &str, expected: &str| match text(member).transpose()? {
        None => Err(FieldError::missing(member)),
        Some(value) if value == expected => Ok(()),
        Some(_) => Err(FieldError::invalid(member, format!("must be {expected}"))),
    };
    require("kty", "EC")?;
    require("crv", "P-256")?;
    if jwk.contains_key("d") {
        return Err(FieldError::invalid("d", "is a private key member: give the public key only"));
    }
    for (member, expected) in [("alg", "ES256"), ("use", "sig")] {
        if text(member).is_some() {
            require(member, expected)?;
        }
    }
    if text("kid").transpose()?.is_some_and(|inner| inner != kid.as_str()) {
        return Err(FieldError::invalid("kid", "must equal the key's kid"));
    }
    let coordinate = |member: &str| -> Result<Vec<u8>, FieldError> {
        let value = text(member).ok_or_else(|| FieldError::missing(member))??;
        URL_SAFE_NO_PAD
            .decode(value)
            .ok()
            .filter(|bytes| bytes.len() == 32)
            .ok_or_else(|| FieldError::invalid(member, "must be 32 bytes in base64url"))
    };
    let mut sec1 = vec![0x04];
    sec1.extend(coordinate("x")?);
    sec1.extend(coordinate("y")?);
    Ok(P256PublicKey::from_sec1(&sec1).expect("65 bytes starting 0x04"))
}

/// The DER prefix of a SubjectPublicKeyInfo holding an uncompressed P-256 point: SEQUENCE {
/// SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes: 0 unused bits, then the point) }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn parse_pem(text: &str) -> Result<P256PublicKey, FieldError> {
    let refuse = || FieldError::invalid("pem", "must be a PEM PUBLIC KEY holding an uncompressed P-256 key");
    let block = pem::parse(text).map_err(|_| refuse())?;
    let der = block.contents();
    if block.tag() != "PUBLIC KEY" || der.len() != P256_SPKI_PREFIX.len() + 65 || der[..26] != P256_SPKI_PREFIX {
        return Err(refuse());
    }
    P256PublicKey::from_sec1(&der[26..]).ok_or_else(refuse)
}

impl CardProductInput {
    fn into_domain(self) -> Result<CardProduct, FieldError> {
        let id = CardProductId::parse(self.card_product_id)?;
        let scheme: Scheme = self.scheme.parse().map_err(|()| {
            FieldError::invalid("scheme", "must be one of VISA, MASTERCARD, AMEX, DISCOVER, JCB, UNIONPAY")
        })?;
        let authorisation_mode: AuthorisationMode = self
            .authorisation_mode
            .parse()
            .map_err(|()| FieldError::invalid("authorisationMode", "must be one of NONE, LIGHT, FULL"))?;
        let bin_range = self
            .bin_range
            .map(|r| BinRange::parse(&r.from, &r.to, scheme).map_err(|e| e.within("binRange")))
            .transpose()?;
        let validity = self.validity_years.map(ValidityYears::parse).transpose()?.unwrap_or(ValidityYears::DEFAULT);
        Ok(CardProduct {
            id,
            scheme,
            authorisation_mode,
            bin_range,
            physical: self.physical,
            validity,
            used_for_transactions: self.used_for_transactions,
        })
    }
}

impl CallbackInput {
    fn into_domain(self) -> Result<CallbackSettings, FieldError> {
        let base_url = HttpUrl::parse("baseUrl", &self.base_url)?;
        let token_url = match self.token_url {
            Some(url) => HttpUrl::parse("tokenUrl", &url)?,
            None => HttpUrl::parse("tokenUrl", &base_url.join(CallbackSettings::DEFAULT_TOKEN_PATH))?,
        };
        let client = match (self.client_id, self.client_secret) {
            (Some(id), Some(secret)) => Some(CallbackSettings::client(&id, &secret)?),
            (Some(_), None) => return Err(FieldError::missing("clientSecret")),
            (None, Some(_)) => return Err(FieldError::missing("clientId")),
            (None, None) => None,
        };
        Ok(CallbackSettings {
            base_url,
            token_url,
            client,
            scope: self.scope.as_deref().map(CallbackSettings::scope).transpose()?,
            max_batch_size: CallbackSettings::max_batch_size(self.max_batch_size.unwrap_or(1))?,
            stores_consumer_data: self.stores_consumer_data.unwrap_or(true),
        })
    }
}

impl WalletServerInput {
    fn into_domain(self) -> Result<WalletServerSettings, FieldError> {
        let base_url = HttpUrl::parse("baseUrl", &self.base_url)?;
        let pods = self
            .pods
            .into_iter()
            .map(|(pod, url)| {
                let url = HttpUrl::parse(&format!("pods.{pod}"), &url)?;
                Ok((pod_name(&pod)?, url))
            })
            .collect::<Result<_, FieldError>>()?;
        Ok(WalletServerSettings { base_url, pods })
    }
}

// ---- answers ----

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("a UTC timestamp formats as RFC 3339")
}

/// A public EC JWK.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[schema(as = Jwk)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

impl PublicJwk {
    fn p256(key: &P256PublicKey) -> Self {
        Self {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode(key.x()),
            y: URL_SAFE_NO_PAD.encode(key.y()),
            kid: None,
            use_: None,
            alg: None,
        }
    }

    /// The JWK an issuer encrypts `encryptedData` to.
    pub fn encryption(key: &EncryptionKey) -> Self {
        Self {
            kid: Some(key.kid.to_string()),
            use_: Some("enc".into()),
            alg: Some("ECDH-ES".into()),
            ..Self::p256(&key.public_key)
        }
    }
}

/// `{"keys": [...]}`: the active key first, then retired ones from newest to oldest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<PublicJwk>,
}

impl JwkSet {
    pub fn encryption(keys: &[EncryptionKey]) -> Self {
        Self { keys: keys.iter().rev().map(PublicJwk::encryption).collect() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AssertionKey)]
pub struct AssertionKeyView {
    kid: String,
    jwk: PublicJwk,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CardProduct)]
pub struct CardProductView {
    card_product_id: String,
    #[schema(value_type = crate::openapi::Scheme)]
    scheme: &'static str,
    #[schema(value_type = String, pattern = "^(NONE|LIGHT|FULL)$")]
    authorisation_mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    bin_range: Option<BinRangeView>,
    physical: bool,
    validity_years: u8,
    used_for_transactions: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = BinRange)]
pub struct BinRangeView {
    from: String,
    to: String,
}

/// The callback settings, without the client secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Callback)]
pub struct CallbackView {
    base_url: String,
    token_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    max_batch_size: u8,
    stores_consumer_data: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WalletServer)]
pub struct WalletServerView {
    base_url: String,
    pods: BTreeMap<String, String>,
}

/// An onboarded issuer as the admin API shows it: never with secrets.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Issuer)]
pub struct IssuerView {
    issuer_id: String,
    name: String,
    assertion_keys: Vec<AssertionKeyView>,
    card_products: Vec<CardProductView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback: Option<CallbackView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wallet_server: Option<WalletServerView>,
    /// Public JWKs, the active key first.
    encryption_keys: Vec<PublicJwk>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<&OnboardedIssuer> for IssuerView {
    fn from(onboarded: &OnboardedIssuer) -> Self {
        let Issuer { id, onboarding, created_at, updated_at } = &onboarded.issuer;
        IssuerView {
            issuer_id: id.to_string(),
            name: onboarding.name.as_str().to_owned(),
            assertion_keys: onboarding
                .assertion_keys
                .iter()
                .map(|k| AssertionKeyView { kid: k.kid.to_string(), jwk: PublicJwk::p256(&k.public_key) })
                .collect(),
            card_products: onboarding
                .card_products
                .iter()
                .map(|p| CardProductView {
                    card_product_id: p.id.to_string(),
                    scheme: p.scheme.as_str(),
                    authorisation_mode: p.authorisation_mode.as_str(),
                    bin_range: p.bin_range.as_ref().map(|r| BinRangeView { from: r.from().into(), to: r.to().into() }),
                    physical: p.physical,
                    validity_years: p.validity.get(),
                    used_for_transactions: p.used_for_transactions,
                })
                .collect(),
            callback: onboarding.callback.as_ref().map(|c| CallbackView {
                base_url: c.base_url.to_string(),
                token_url: c.token_url.to_string(),
                client_id: c.client.as_ref().map(|client| client.client_id.clone()),
                scope: c.scope.clone(),
                max_batch_size: c.max_batch_size,
                stores_consumer_data: c.stores_consumer_data,
            }),
            wallet_server: onboarding.wallet_server.as_ref().map(|w| WalletServerView {
                base_url: w.base_url.to_string(),
                pods: w.pods.iter().map(|(pod, url)| (pod.clone(), url.to_string())).collect(),
            }),
            encryption_keys: JwkSet::encryption(&onboarded.encryption_keys).keys,
            created_at: rfc3339(*created_at),
            updated_at: rfc3339(*updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuerList {
    pub issuers: Vec<IssuerView>,
}

/// `{"notifications": [...]}` of the admin API.
#[derive(Debug, Serialize, ToSchema)]
pub struct Notifications {
    pub notifications: Vec<NotificationView>,
}

/// A notification as it is sent to the issuer, with its delivery record.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Notification)]
pub struct NotificationView {
    #[serde(flatten)]
    operation: crate::banking::wire::OperationView,
    /// `PENDING`, `DELIVERED` or `DEAD` (dead-lettered).
    #[schema(value_type = crate::openapi::DeliveryStatus)]
    delivery_status: &'static str,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
}

impl From<&cardplane_domain::delivery::Delivery> for NotificationView {
    fn from(delivery: &cardplane_domain::delivery::Delivery) -> Self {
        Self {
            operation: (&delivery.operation).into(),
            delivery_status: delivery.state.as_str(),
            attempts: delivery.attempts,
            next_attempt_at: delivery.next_attempt_at.map(rfc3339),
            last_attempt_at: delivery.last_attempt_at.map(rfc3339),
            last_error: delivery.last_error.clone(),
            delivered_at: delivery.delivered_at.map(rfc3339),
        }
    }
}
