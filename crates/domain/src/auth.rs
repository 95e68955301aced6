//! The rules an issuer's token assertion must meet (inbound.md §1), as a pure function of the
//! claims and the time. The signature is checked by the `jose` adapter before these run.

use std::fmt;
use time::{Duration, OffsetDateTime};

/// The longest an assertion may live: `exp` at most 15 minutes after now [D1].
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::minutes(15);
/// How far in the future `iat` may be, for clocks that drift [ours].
pub const IAT_SKEW: Duration = Duration::seconds(60);
/// How long an access token lives: 900 s [D1].
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::seconds(900);

/// The claims of an assertion that the rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    /// `aud` as a string or an array of strings.
    pub aud: Option<Vec<String>>,
    pub jti: Option<String>,
}

/// Why an assertion was refused. The text goes to the caller in `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionRefusal {
    Malformed(&'static str),
    UnknownIssuer,
    UnknownKey,
    BadSignature,
    IssuerSubjectMismatch,
    MissingExpiry,
    Expired,
    TooLongLived,
    IssuedInTheFuture,
    WrongAudience,
    Replayed,
}

impl fmt::Display for AssertionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AssertionRefusal::Malformed(why) => why,
            AssertionRefusal::UnknownIssuer => "the assertion's iss is not an onboarded issuer",
            AssertionRefusal::UnknownKey => "the assertion's kid names no key of the issuer",
            AssertionRefusal::BadSignature => "the assertion's signature does not verify (ES256 required)",
            AssertionRefusal::IssuerSubjectMismatch => "iss and sub must both be the issuerId",
            AssertionRefusal::MissingExpiry => "exp is required",
            AssertionRefusal::Expired => "the assertion has expired",
            AssertionRefusal::TooLongLived => "exp must be at most 15 minutes ahead",
            AssertionRefusal::IssuedInTheFuture => "iat is in the future",
            AssertionRefusal::WrongAudience => "aud is not this server's audience",
            AssertionRefusal::Replayed => "this jti was already used",
        })
    }
}

impl AssertionClaims {
    /// The issuer the assertion claims to come from, before any check.
    pub fn claimed_issuer(&self) -> Option<&str> {
        self.iss.as_deref()
    }

    /// Checks the claims at `now` against `audience`; on success, returns until when the assertion
    /// is valid (how long its `jti` must be remembered).
    pub fn check(&self, now: OffsetDateTime, audience: &str) -> Result<OffsetDateTime, AssertionRefusal> {
        if self.iss.is_none() || self.iss != self.sub {
            return Err(AssertionRefusal::IssuerSubjectMismatch);
        }
        let exp = self.exp.ok_or(AssertionRefusal::MissingExpiry)?;
        let exp =
            OffsetDateTime::from_unix_timestamp(exp).map_err(|_| AssertionRefusal::Malformed("exp is out of range"))?;
        if exp <= now {
            return Err(AssertionRefusal::Expired);
        }
        if exp > now + MAX_ASSERTION_LIFETIME {
            return Err(AssertionRefusal::TooLongLived);
        }
        if let Some(iat) = self.iat
            && iat > (now + IAT_SKEW).unix_timestamp()
        {
            return Err(AssertionRefusal::IssuedInTheFuture);
        }
        if let Some(aud) = &self.aud
            && !aud.iter().any(|a| a == audience)
        {
            return Err(AssertionRefusal::WrongAudience);
        }
        Ok(exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUD: &str = "https://api.d1.thalescloud.io";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn claims() -> AssertionClaims {
        let t = now().unix_timestamp();
        AssertionClaims {
            iss: Some("BANK000001".into()),
            sub: Some("BANK000001".into()),
            exp: Some(t + 300),
            iat: Some(t),
            aud: Some(vec![AUD.into()]),
            jti: None,
        }
    }

    #[test]
    fn a_good_assertion_passes() {
        assert_eq!(claims().check(now(), AUD), Ok(now() + Duration::seconds(300)));
        let without_optional = AssertionClaims { iat: None, aud: None, ..claims() };
        assert!(without_optional.check(now(), AUD).is_ok());
    }

    #[test]
    fn each_rule_refuses() {
        let t = now().unix_timestamp();
        let cases = [
            (AssertionClaims { sub: Some("OTHER00001".into()), ..claims() }, AssertionRefusal::IssuerSubjectMismatch),
            (AssertionClaims { iss: None, sub: None, ..claims() }, AssertionRefusal::IssuerSubjectMismatch),
            (AssertionClaims { exp: None, ..claims() }, AssertionRefusal::MissingExpiry),
            (AssertionClaims { exp: Some(t), ..claims() }, AssertionRefusal::Expired),
            (AssertionClaims { exp: Some(t + 30 * 60), ..claims() }, AssertionRefusal::TooLongLived),
            (AssertionClaims { iat: Some(t + 120), ..claims() }, AssertionRefusal::IssuedInTheFuture),
            (
                AssertionClaims { aud: Some(vec!["https://elsewhere".into()]), ..claims() },
                AssertionRefusal::WrongAudience,
            ),
        ];
        for (claims, refusal) in cases {
            assert_eq!(claims.check(now(), AUD), Err(refusal));
        }
        let at_limit = AssertionClaims { exp: Some(t + 15 * 60), ..claims() };
        assert!(at_limit.check(now(), AUD).is_ok(), "exactly 15 minutes is allowed");
    }
}
