//! Onboarding: issuers, their settings and their cardplane-side encryption keys (platform.md).

use crate::ports::{StoreExt, StoredEncryptionKey};
use crate::{AppError, Platform};
use cardplane_domain::FieldError;
use cardplane_domain::ids::IssuerId;
use cardplane_domain::issuer::{Issuer, Onboarding};
use cardplane_domain::keys::EncryptionKey;

/// An issuer as the admin surface shows it: its onboarding and the public halves of its keys.
#[derive(Debug, Clone)]
pub struct OnboardedIssuer {
    pub issuer: Issuer,
    /// Oldest first; the active key is the last one.
    pub encryption_keys: Vec<EncryptionKey>,
}

impl Platform {
    /// Onboards an issuer, or replaces the onboarding of one already there (`PUT` semantics). The
    /// first onboarding also makes the issuer's encryption key; later ones keep the keys it has.
    #[tracing::instrument(skip_all, fields(issuer = %id))]
    pub async fn onboard_issuer(&self, id: IssuerId, onboarding: Onboarding) -> Result<OnboardedIssuer, AppError> {
        for (i, key) in onboarding.assertion_keys.iter().enumerate() {
            if !self.keys.is_valid_public_key(&key.public_key) {
                return Err(FieldError::invalid(format!("assertionKeys[{i}]"), "is not a P-256 public key").into());
            }
        }
        let now = self.clock.now();
        // Made outside the transaction so the writer is not held up by key generation; thrown away
        // when the issuer already has keys.
        let fresh_key = self.keys.new_encryption_key(&id, now);
        let changed = id.clone();
        let onboarded = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let created_at = tx.issuer(&id).await?.map_or(now, |existing| existing.created_at);
                    let issuer = Issuer { id: id.clone(), onboarding, created_at, updated_at: now };
                    tx.put_issuer(&issuer).await?;
                    let mut keys = tx.encryption_keys(&id).await?;
                    if keys.is_empty() {
                        tx.add_encryption_key(&id, &fresh_key).await?;
                        keys.push(fresh_key);
                    }
                    Ok(OnboardedIssuer { issuer, encryption_keys: public_halves(keys) })
                })
            })
            .await?;
        self.issuers.forget(&changed);
        Ok(onboarded)
    }

    pub async fn issuer(&self, id: IssuerId) -> Result<OnboardedIssuer, AppError> {
        self.store
            .read(move |tx| {
                Box::pin(async move {
                    let issuer = tx.issuer(&id).await?.ok_or_else(|| AppError::IssuerNotFound(id.clone()))?;
                    let keys = tx.encryption_keys(&id).await?;
                    Ok(OnboardedIssuer { issuer, encryption_keys: public_halves(keys) })
                })
            })
            .await
    }

    /// Every issuer, by id.
    pub async fn issuers(&self) -> Result<Vec<OnboardedIssuer>, AppError> {
        self.store
            .read(move |tx| {
                Box::pin(async move {
                    let mut all = Vec::new();
                    for issuer in tx.issuers().await? {
                        let keys = tx.encryption_keys(&issuer.id).await?;
                        all.push(OnboardedIssuer { issuer, encryption_keys: public_halves(keys) });
                    }
                    Ok(all)
                })
            })
            .await
    }

    /// Checks that the master key opens what this database holds (one issuer's sealed keys and
    /// client secret), so that a server started with the wrong key refuses to start instead of
    /// failing on every card later.
    pub async fn check_master_key(&self) -> Result<(), AppError> {
        let keys = self.keys.clone();
        self.store
            .read(move |tx| {
                Box::pin(async move {
                    let wrong_key = || {
                        anyhow::anyhow!(
                            "the master key does not open this database's keys: it is not the key they were sealed with"
                        )
                    };
                    // Reading an issuer opens its sealed client secret.
                    let issuers = tx.issuers().await.map_err(|_| wrong_key())?;
                    let Some(issuer) = issuers.first() else {
                        return Ok(());
                    };
                    if let Some(stored) = tx.encryption_keys(&issuer.id).await?.first() {
                        let context = crate::ports::encryption_key_context(&issuer.id, &stored.key.kid);
                        keys.open(&context, &stored.sealed_private_key).map_err(|_| wrong_key())?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// The public halves of the issuer's encryption keys, oldest first.
    pub async fn encryption_keys(&self, id: IssuerId) -> Result<Vec<EncryptionKey>, AppError> {
        Ok(self.issuer(id).await?.encryption_keys)
    }

    /// Makes a new encryption key the issuer's active one. Older keys are retired but keep
    /// decrypting, so data an issuer encrypted a moment before the rotation is still accepted.
    #[tracing::instrument(skip_all, fields(issuer = %id))]
    pub async fn rotate_encryption_key(&self, id: IssuerId) -> Result<EncryptionKey, AppError> {
        let now = self.clock.now();
        let fresh_key = self.keys.new_encryption_key(&id, now);
        let changed = id.clone();
        let key = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    if tx.issuer(&id).await?.is_none() {
                        return Err(AppError::IssuerNotFound(id));
                    }
                    tx.retire_encryption_keys(&id, now).await?;
                    tx.add_encryption_key(&id, &fresh_key).await?;
                    Ok(fresh_key.key)
                })
            })
            .await?;
        self.issuers.forget(&changed);
        tracing::info!(kid = %key.kid, "encryption key rotated");
        Ok(key)
    }
}

fn public_halves(keys: Vec<StoredEncryptionKey>) -> Vec<EncryptionKey> {
    keys.into_iter().map(|stored| stored.key).collect()
}
