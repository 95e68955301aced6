//! Issuer authentication (inbound.md §1): the JWT-bearer grant and bearer tokens.

use crate::ports::{AccessToken, StoreExt};
use crate::{AppError, Platform};
use cardplane_domain::auth::AssertionRefusal;
use cardplane_domain::ids::IssuerId;

/// Longest `jti` remembered [ours]; longer ones are refused rather than stored.
const MAX_JTI_LEN: usize = 256;

impl Platform {
    /// Grants an access token for a JWT-bearer assertion: the issuer named by `iss` signed it (ES256)
    /// with the onboarded key named by `kid`, its claims meet the rules, and its `jti`, if any, was
    /// not used before.
    pub async fn grant_access_token(&self, assertion: &str) -> Result<AccessToken, AppError> {
        let refused = AppError::AssertionRefused;
        let (kid, claims) = self.tokens.read_assertion(assertion).map_err(refused)?;
        let issuer_id = claims
            .claimed_issuer()
            .and_then(|iss| IssuerId::parse(iss).ok())
            .ok_or(refused(AssertionRefusal::UnknownIssuer))?;
        let kid = kid.ok_or(refused(AssertionRefusal::Malformed("the assertion header needs a kid")))?;
        let lookup = issuer_id.clone();
        let issuer = self.store.read(move |tx| Box::pin(async move { Ok(tx.issuer(&lookup).await?) })).await?;
        let issuer = issuer.ok_or(refused(AssertionRefusal::UnknownIssuer))?;
        let key = issuer
            .onboarding
            .assertion_keys
            .iter()
            .find(|key| key.kid.as_str() == kid)
            .ok_or(refused(AssertionRefusal::UnknownKey))?;
        self.tokens.verify_assertion(assertion, &key.public_key).map_err(refused)?;
        let now = self.clock.now();
        let valid_until = claims.check(now, &self.settings.token_audience).map_err(refused)?;
        if let Some(jti) = claims.jti {
            if jti.is_empty() || jti.len() > MAX_JTI_LEN {
                return Err(refused(AssertionRefusal::Malformed("jti must be 1 to 256 characters")));
            }
            let issuer = issuer_id.clone();
            let fresh = self
                .store
                .write(move |tx| {
                    Box::pin(async move { Ok(tx.remember_assertion_jti(&issuer, &jti, valid_until, now).await?) })
                })
                .await?;
            if !fresh {
                return Err(refused(AssertionRefusal::Replayed));
            }
        }
        let token = self.tokens.issue_access_token(&issuer_id, now);
        tracing::info!(issuer = %issuer_id, "access token granted");
        Ok(token)
    }

    /// The issuer a bearer token belongs to, if it is genuine and unexpired.
    pub fn authenticate(&self, token: &str) -> Option<IssuerId> {
        self.tokens.authenticate(token, self.clock.now())
    }
}
