//! An onboarded issuer and the settings it was onboarded with.

use crate::FieldError;
use crate::ids::{IssuerId, KeyId};
use crate::keys::AssertionKey;
use crate::product::CardProduct;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use time::OffsetDateTime;

/// An issuer's display name: 1–128 characters, no control characters [ours].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerName(String);

impl IssuerName {
    pub fn parse(name: &str) -> Result<Self, FieldError> {
        let len = name.chars().count();
        if (1..=128).contains(&len) && !name.chars().any(char::is_control) && !name.trim().is_empty() {
            Ok(Self(name.to_owned()))
        } else {
            Err(FieldError::invalid("name", "must be 1 to 128 characters without control characters"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An absolute `http` or `https` URL without query or fragment, kept without a trailing slash so
/// that paths can be appended to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let refuse = || FieldError::invalid(field, "must be an absolute http(s) URL without query or fragment");
        let url = url::Url::parse(value).map_err(|_| refuse())?;
        let ok = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if !ok || value.len() > 2048 {
            return Err(refuse());
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This URL with `path` (starting with `/`) appended.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret an issuer gave us (its OAuth client secret). Never printed: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How cardplane calls the issuer's backend (outbound.md): its token endpoint, notifications and
/// look-ups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackSettings {
    pub base_url: HttpUrl,
    /// Default `{baseUrl}/authz/d1/v1/oauth2/token` [D1].
    pub token_url: HttpUrl,
    /// OAuth client credentials; without them outbound calls carry no `Authorization` [D1: optional].
    pub client: Option<OAuthClient>,
    pub scope: Option<String>,
    /// Most operations in one notification call: 1–100, default 1.
    pub max_batch_size: u8,
    /// Whether the issuer keeps consumers' personal data in D1; if not, D1 asks for it when needed.
    pub stores_consumer_data: bool,
}

/// OAuth2 client credentials for the issuer's token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: Secret,
}

impl CallbackSettings {
    pub const DEFAULT_TOKEN_PATH: &'static str = "/authz/d1/v1/oauth2/token";

    pub fn max_batch_size(size: i64) -> Result<u8, FieldError> {
        match u8::try_from(size) {
            Ok(n @ 1..=100) => Ok(n),
            _ => Err(FieldError::invalid("maxBatchSize", "must be a whole number from 1 to 100")),
        }
    }

    pub fn scope(scope: &str) -> Result<String, FieldError> {
        // RFC 6749 §3.3: space-separated tokens of printable ASCII except `"` and `\`.
        let ok = (1..=512).contains(&scope.len())
            && scope.bytes().all(|b| b == b' ' || (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        ok.then(|| scope.to_owned())
            .ok_or_else(|| FieldError::invalid("scope", "must be RFC 6749 scope tokens, at most 512 characters"))
    }

    pub fn client(client_id: &str, client_secret: &str) -> Result<OAuthClient, FieldError> {
        // RFC 6749 §2.3.1 sends both through HTTP Basic; a colon in the id would break that.
        if !(1..=256).contains(&client_id.len()) || client_id.contains(':') || client_id.chars().any(char::is_control) {
            return Err(FieldError::invalid(
                "clientId",
                "must be 1 to 256 characters without ':' or control characters",
            ));
        }
        if !(1..=512).contains(&client_secret.len()) || client_secret.chars().any(char::is_control) {
            return Err(FieldError::invalid("clientSecret", "must be 1 to 512 characters without control characters"));
        }
        Ok(OAuthClient { client_id: client_id.to_owned(), client_secret: Secret::new(client_secret.to_owned()) })
    }
}

/// A value of the `x-pod` header: 1–128 printable ASCII characters [D1].
pub fn pod_name(name: &str) -> Result<String, FieldError> {
    let ok = (1..=128).contains(&name.len()) && name.bytes().all(|b| (0x21..=0x7e).contains(&b));
    ok.then(|| name.to_owned())
        .ok_or_else(|| FieldError::invalid("pods", "pod names must be 1 to 128 printable characters"))
}

/// Where the transit wallet server of the issuer answers, and its pods (outbound.md §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletServerSettings {
    pub base_url: HttpUrl,
    /// `x-pod` value → base URL of that pod.
    pub pods: BTreeMap<String, HttpUrl>,
}

/// Everything an issuer is onboarded with. Checked as a whole: key ids and product ids are unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onboarding {
    pub name: IssuerName,
    pub assertion_keys: Vec<AssertionKey>,
    pub card_products: Vec<CardProduct>,
    pub callback: Option<CallbackSettings>,
    pub wallet_server: Option<WalletServerSettings>,
}

impl Onboarding {
    pub fn new(
        name: IssuerName,
        assertion_keys: Vec<AssertionKey>,
        card_products: Vec<CardProduct>,
        callback: Option<CallbackSettings>,
        wallet_server: Option<WalletServerSettings>,
    ) -> Result<Self, FieldError> {
        if assertion_keys.is_empty() {
            return Err(FieldError::invalid("assertionKeys", "must hold at least one key"));
        }
        if assertion_keys.len() > 20 {
            return Err(FieldError::invalid("assertionKeys", "must hold at most 20 keys"));
        }
        let mut kids: HashSet<&KeyId> = HashSet::new();
        for (i, key) in assertion_keys.iter().enumerate() {
            if !kids.insert(&key.kid) {
                return Err(FieldError::invalid("kid", "is used twice").within(&format!("assertionKeys[{i}]")));
            }
        }
        let mut product_ids = HashSet::new();
        for (i, product) in card_products.iter().enumerate() {
            if !product_ids.insert(&product.id) {
                return Err(FieldError::invalid("cardProductId", "is used twice").within(&format!("cardProducts[{i}]")));
            }
        }
        Ok(Self { name, assertion_keys, card_products, callback, wallet_server })
    }
}

/// An onboarded issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub id: IssuerId,
    pub onboarding: Onboarding,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_trailing_slash_and_refuse_queries() {
        assert_eq!(HttpUrl::parse("baseUrl", "http://127.0.0.1:9000/").unwrap().as_str(), "http://127.0.0.1:9000");
        assert_eq!(
            HttpUrl::parse("baseUrl", "https://bank.example/d1/").unwrap().join("/notifications"),
            "https://bank.example/d1/notifications"
        );
        for bad in ["ftp://x", "http://", "not a url", "http://h/?q=1", "http://h/#f", "http://u:p@h/"] {
            assert_eq!(HttpUrl::parse("baseUrl", bad).unwrap_err().field, "baseUrl", "{bad}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let client = CallbackSettings::client("id", "hunter2").unwrap();
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[test]
    fn names_and_batch_sizes() {
        assert!(IssuerName::parse("Bank of Tests").is_ok());
        assert!(IssuerName::parse("").is_err());
        assert!(IssuerName::parse("a\nb").is_err());
        assert!(CallbackSettings::max_batch_size(0).is_err());
        assert_eq!(CallbackSettings::max_batch_size(100), Ok(100));
        assert!(CallbackSettings::max_batch_size(101).is_err());
        assert!(CallbackSettings::client("a:b", "s").is_err());
    }
}
