//! [`AccessTokens`], the [`TokenService`] port: issuers' ES256 assertions in, HS256 access tokens out.
//!
//! Access tokens are JWTs signed with HMAC-SHA-256 under a key derived from the master key. So they
//! need no storage, survive a restart, and are accepted by every instance sharing the master key.
//! A verified token is cached until it expires, so a request with a known token costs a hash-map
//! look-up, not a MAC and a JSON parse.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardplane_app::ports::{AccessToken, TokenService};
use cardplane_domain::auth::{ACCESS_TOKEN_LIFETIME, AssertionClaims, AssertionRefusal};
use cardplane_domain::ids::IssuerId;
use cardplane_domain::keys::P256PublicKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Who signs and who may read our access tokens.
const TOKEN_ISSUER: &str = "cardplane";
const TOKEN_AUDIENCE: &str = "cardplane-banking";
/// The scope granted: the whole banking API of the issuer [ours; D1 shows space-separated scopes].
pub const SCOPE: &str = "d1-api:consumer:full d1-api:card:full";
/// How many verified tokens are kept; beyond it the least recently used are verified again.
const CACHE_CAPACITY: usize = 100_000;

#[derive(Debug, Serialize, Deserialize)]
struct TokenClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    scope: String,
}

pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    verified: Cache<String, (IssuerId, i64)>,
}

impl AccessTokens {
    /// `key`: the derived token-signing key (see [`crate::vault::Purpose::AccessTokens`]).
    pub fn new(key: &[u8; 32]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the Clock port, not the system time.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            verified: Cache::new(CACHE_CAPACITY),
        }
    }
}

fn string_or_list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(many) => many.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

impl TokenService for AccessTokens {
    fn read_assertion(&self, assertion: &str) -> Result<(Option<String>, AssertionClaims), AssertionRefusal> {
        if assertion.len() > 8192 {
            return Err(AssertionRefusal::Malformed("the assertion is too long"));
        }
        // `alg: none` and unknown algorithms fail here already.
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| AssertionRefusal::Malformed("the assertion is not a signed JWT"))?;
        if header.alg != Algorithm::ES256 {
            return Err(AssertionRefusal::BadSignature);
        }
        let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(assertion)
            .map_err(|_| AssertionRefusal::Malformed("the assertion's claims are not a JSON object"))?
            .claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let aud = match claims.get("aud") {
            None => None,
            Some(aud) => Some(string_or_list(aud).ok_or(AssertionRefusal::Malformed("aud must be a string"))?),
        };
        let claims = AssertionClaims {
            iss: text("iss"),
            sub: text("sub"),
            exp: number("exp"),
            iat: number("iat"),
            aud,
            jti: text("jti"),
        };
        Ok((header.kid, claims))
    }

    fn verify_assertion(&self, assertion: &str, key: &P256PublicKey) -> Result<(), AssertionRefusal> {
        let decoding =
            DecodingKey::from_ec_components(&URL_SAFE_NO_PAD.encode(key.x()), &URL_SAFE_NO_PAD.encode(key.y()))
                .map_err(|_| AssertionRefusal::BadSignature)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(assertion, &decoding, &validation)
            .map(|_| ())
            .map_err(|_| AssertionRefusal::BadSignature)
    }

    fn issue_access_token(&self, issuer: &IssuerId, now: OffsetDateTime) -> AccessToken {
        let mut jti = [0u8; 16];
        SystemRandom::new().fill(&mut jti).expect("the system random source works");
        let claims = TokenClaims {
            iss: TOKEN_ISSUER.into(),
            sub: issuer.to_string(),
            aud: TOKEN_AUDIENCE.into(),
            iat: now.unix_timestamp(),
            exp: (now + ACCESS_TOKEN_LIFETIME).unix_timestamp(),
            jti: URL_SAFE_NO_PAD.encode(jti),
            scope: SCOPE.into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of our own claims cannot fail");
        AccessToken { token, expires_in_seconds: ACCESS_TOKEN_LIFETIME.whole_seconds(), scope: SCOPE.into() }
    }

    fn authenticate(&self, token: &str, now: OffsetDateTime) -> Option<IssuerId> {
        let now = now.unix_timestamp();
        if let Some((issuer, exp)) = self.verified.get(token) {
            return (exp > now).then_some(issuer);
        }
        if token.len() > 2048 {
            return None;
        }
        let claims = jsonwebtoken::decode::<TokenClaims>(token, &self.decoding, &self.validation).ok()?.claims;
        let issuer = IssuerId::parse(claims.sub).ok()?;
        self.verified.insert(token.to_owned(), (issuer.clone(), claims.exp));
        (claims.exp > now).then_some(issuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> IssuerId {
        IssuerId::parse("BANK000001").unwrap()
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn tokens_authenticate_until_they_expire() {
        let tokens = AccessTokens::new(&[7; 32]);
        let granted = tokens.issue_access_token(&issuer(), at(0));
        assert_eq!(granted.expires_in_seconds, 900);
        assert_eq!(tokens.authenticate(&granted.token, at(1)), Some(issuer()));
        assert_eq!(tokens.authenticate(&granted.token, at(899)), Some(issuer()), "from the cache");
        assert_eq!(tokens.authenticate(&granted.token, at(900)), None);
        let fresh_cache = AccessTokens::new(&[7; 32]);
        assert_eq!(fresh_cache.authenticate(&granted.token, at(900)), None, "expired without the cache too");
        assert_eq!(fresh_cache.authenticate(&granted.token, at(10)), Some(issuer()), "survives a restart");
    }

    #[test]
    fn forged_tokens_do_not_authenticate() {
        let tokens = AccessTokens::new(&[7; 32]);
        let other_key = AccessTokens::new(&[8; 32]).issue_access_token(&issuer(), at(0));
        assert_eq!(tokens.authenticate(&other_key.token, at(1)), None);
        let genuine = tokens.issue_access_token(&issuer(), at(0)).token;
        let (head, rest) = genuine.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["sub"] = "BANK000002".into();
        let swapped = format!("{head}.{}.{signature}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        assert_eq!(tokens.authenticate(&swapped, at(1)), None);
        for junk in ["", "abc", "a.b.c", &"x".repeat(5000)] {
            assert_eq!(tokens.authenticate(junk, at(1)), None);
        }
    }
}
