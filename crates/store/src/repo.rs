//! The repository: every query of cardplane, written once for both backends.
//!
//! The SQL is the common subset of SQLite and PostgreSQL (`$n` parameters, `ON CONFLICT`, integer
//! timestamps), so [`impl_tx!`] stamps the same [`Tx`] implementation onto a SQLite and a
//! PostgreSQL connection, given the module whose `query`/`query_as` run on it (`native` for SQLite's
//! rusqlite connections, `sqlx` for PostgreSQL's). Rows are mapped to domain types here and nowhere else.

use cardplane_app::ports::{KeyVault, StoreError, StoredEncryptionKey, Vaults, client_secret_context};
use cardplane_domain::ids::{CardProductId, IssuerId, KeyId};
use cardplane_domain::issuer::{
    CallbackSettings, HttpUrl, Issuer, IssuerName, OAuthClient, Onboarding, Secret, WalletServerSettings,
};
use cardplane_domain::keys::{AssertionKey, EncryptionKey, P256PublicKey};
use cardplane_domain::product::{BinRange, CardProduct, ValidityYears};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// A [`Tx`](cardplane_app::ports::Tx) over one open database transaction on connection `C`.
pub(crate) struct SqlTx<'c, C> {
    pub(crate) conn: &'c mut C,
    pub(crate) vault: &'c dyn Vaults,
}

/// A connection the repository runs on, and the rows it yields (for helpers that map rows).
pub(crate) trait Connection {
    type Row;

    /// What this connection remembers of which issuers have callback settings, if it keeps that:
    /// only SQLite's writer does (see [`KnownCallbacks`]).
    fn known_callbacks(&mut self) -> Option<&mut KnownCallbacks>;

    /// The key SQLite gave the row the last `INSERT` on this connection wrote, if the backend
    /// tells it: there, an `INSERT` reads it back instead of asking for it with `RETURNING`, which
    /// SQLite answers through a temporary table (opened, filled, read and dropped per statement).
    fn last_insert_rowid(&self) -> Option<i64>;
}

impl Connection for sqlx::PgConnection {
    type Row = sqlx::postgres::PgRow;

    fn known_callbacks(&mut self) -> Option<&mut KnownCallbacks> {
        None
    }

    fn last_insert_rowid(&self) -> Option<i64> {
        None
    }
}

impl Connection for crate::native::NativeConn {
    type Row = crate::native::NativeRow;

    fn known_callbacks(&mut self) -> Option<&mut KnownCallbacks> {
        self.known_callbacks.as_mut()
    }

    fn last_insert_rowid(&self) -> Option<i64> {
        Some(self.connection().last_insert_rowid())
    }
}

/// Whether each issuer seen has callback settings, as SQLite's writer last read it.
///
/// Every notification asks (`Tx::has_callback`: queued if so, dead-lettered at once if not), and
/// reading the issuer's row for it was about 2% of a life-cycle operation's instructions on the one
/// serial stage. The writer is the only connection in this process that changes issuers, so it
/// can remember the answer as long as it forgets it whenever an issuer may have changed: when it
/// writes one (`put_issuer`), when a unit of work fails (it may have written one and been rolled
/// back), when a batch fails, and when another process has committed to the database since the
/// last batch (`cardplane issuer add` on the same file; SQLite's `data_version` tells).
#[derive(Default)]
pub(crate) struct KnownCallbacks(std::collections::HashMap<String, bool>);

impl KnownCallbacks {
    pub(crate) fn get(&self, issuer: &str) -> Option<bool> {
        self.0.get(issuer).copied()
    }

    pub(crate) fn remember(&mut self, issuer: &str, has_callback: bool) {
        self.0.insert(issuer.to_owned(), has_callback);
    }

    pub(crate) fn forget(&mut self) {
        self.0.clear();
    }
}

pub(crate) fn backend(error: sqlx::Error) -> StoreError {
    StoreError::Backend(Box::new(error))
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).expect("timestamps fit 64-bit microseconds")
}

pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).map_err(corrupt)
}

/// The parts of an `issuers` row, read by name so the mapping does not depend on column order.
pub(crate) struct IssuerRow {
    pub issuer_id: String,
    pub name: String,
    pub callback_base_url: Option<String>,
    pub callback_token_url: Option<String>,
    pub callback_client_id: Option<String>,
    pub callback_client_secret_sealed: Option<Vec<u8>>,
    pub callback_scope: Option<String>,
    pub callback_max_batch_size: Option<i64>,
    pub callback_stores_consumer_data: Option<bool>,
    pub wallet_server_base_url: Option<String>,
    pub wallet_server_pods: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) struct ProductRow {
    pub card_product_id: String,
    pub scheme: String,
    pub authorisation_mode: String,
    pub bin_from: Option<String>,
    pub bin_to: Option<String>,
    pub physical: bool,
    pub validity_years: i64,
    pub used_for_transactions: bool,
}

pub(crate) fn product_from_row(row: ProductRow) -> Result<CardProduct, StoreError> {
    let scheme = row.scheme.parse().map_err(|()| corrupt("card product scheme"))?;
    let bin_range = match (row.bin_from, row.bin_to) {
        (Some(from), Some(to)) => Some(BinRange::parse(&from, &to, scheme).map_err(corrupt)?),
        _ => None,
    };
    Ok(CardProduct {
        id: CardProductId::parse(row.card_product_id).map_err(corrupt)?,
        scheme,
        authorisation_mode: row.authorisation_mode.parse().map_err(|()| corrupt("authorisation mode"))?,
        bin_range,
        physical: row.physical,
        validity: ValidityYears::parse(row.validity_years).map_err(corrupt)?,
        used_for_transactions: row.used_for_transactions,
    })
}

pub(crate) fn issuer_from_rows(
    row: IssuerRow,
    keys: Vec<(String, Vec<u8>)>,
    products: Vec<ProductRow>,
    vault: &dyn KeyVault,
) -> Result<Issuer, StoreError> {
    let id = IssuerId::parse(row.issuer_id).map_err(corrupt)?;
    let url = |field: &str, value: &str| HttpUrl::parse(field, value).map_err(corrupt);
    let callback = match (row.callback_base_url, row.callback_token_url) {
        (Some(base), Some(token)) => {
            let client = match (row.callback_client_id, row.callback_client_secret_sealed) {
                (Some(client_id), Some(sealed)) => {
                    let secret = vault.open(&client_secret_context(&id), &sealed).map_err(corrupt)?;
                    let secret = String::from_utf8(secret).map_err(corrupt)?;
                    Some(OAuthClient { client_id, client_secret: Secret::new(secret) })
                }
                _ => None,
            };
            Some(CallbackSettings {
                base_url: url("callback.baseUrl", &base)?,
                token_url: url("callback.tokenUrl", &token)?,
                client,
                scope: row.callback_scope,
                max_batch_size: CallbackSettings::max_batch_size(row.callback_max_batch_size.unwrap_or(1))
                    .map_err(corrupt)?,
                stores_consumer_data: row.callback_stores_consumer_data.unwrap_or(true),
            })
        }
        _ => None,
    };
    let wallet_server = match row.wallet_server_base_url {
        Some(base) => {
            let pods: BTreeMap<String, String> =
                serde_json::from_str(row.wallet_server_pods.as_deref().unwrap_or("{}")).map_err(corrupt)?;
            let pods = pods
                .into_iter()
                .map(|(pod, base)| Ok((pod, url("walletServer.pods", &base)?)))
                .collect::<Result<_, StoreError>>()?;
            Some(WalletServerSettings { base_url: url("walletServer.baseUrl", &base)?, pods })
        }
        None => None,
    };
    let assertion_keys = keys
        .into_iter()
        .map(|(kid, public_key)| {
            Ok(AssertionKey {
                kid: KeyId::parse(kid).map_err(corrupt)?,
                public_key: P256PublicKey::from_sec1(&public_key).ok_or_else(|| corrupt("assertion key"))?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let card_products = products.into_iter().map(product_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Issuer {
        id,
        onboarding: Onboarding {
            name: IssuerName::parse(&row.name).map_err(corrupt)?,
            assertion_keys,
            card_products,
            callback,
            wallet_server,
        },
        created_at: from_micros(row.created_at)?,
        updated_at: from_micros(row.updated_at)?,
    })
}

pub(crate) fn encryption_key_from_row(
    kid: String,
    public_key: Vec<u8>,
    sealed_private_key: Vec<u8>,
    created_at: i64,
    retired_at: Option<i64>,
) -> Result<StoredEncryptionKey, StoreError> {
    Ok(StoredEncryptionKey {
        key: EncryptionKey {
            kid: KeyId::parse(kid).map_err(corrupt)?,
            public_key: P256PublicKey::from_sec1(&public_key).ok_or_else(|| corrupt("encryption key"))?,
            created_at: from_micros(created_at)?,
            retired_at: retired_at.map(from_micros).transpose()?,
        },
        sealed_private_key,
    })
}

/// Implements [`Tx`](cardplane_app::ports::Tx) for `SqlTx<'_, $conn>`. The body is identical for
/// both backends; only the connection type differs, and `overrides` adds a backend's own versions
/// of the trait's provided methods (PostgreSQL's, that do in one statement what they do in several).
macro_rules! impl_tx {
    ($conn:ty, $sql:ident $(, overrides: { $($overrides:tt)* })?) => {
        #[async_trait::async_trait]
        impl cardplane_app::ports::Tx for $crate::repo::SqlTx<'_, $conn> {
            async fn issuer(
                &mut self,
                id: &cardplane_domain::ids::IssuerId,
            ) -> Result<Option<cardplane_domain::issuer::Issuer>, cardplane_app::ports::StoreError> {
                use $sql::Row;
                use $crate::repo::{backend, IssuerRow, ProductRow};
                let Some(row) = $sql::query("SELECT * FROM issuers WHERE issuer_id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.conn)
                    .await
                    .map_err(backend)?
                else {
                    return Ok(None);
                };
                let get = |e| backend(e);
                let row = IssuerRow {
                    issuer_id: row.try_get("issuer_id").map_err(get)?,
                    name: row.try_get("name").map_err(get)?,
                    callback_base_url: row.try_get("callback_base_url").map_err(get)?,
                    callback_token_url: row.try_get("callback_token_url").map_err(get)?,
                    callback_client_id: row.try_get("callback_client_id").map_err(get)?,
                    callback_client_secret_sealed: row.try_get("callback_client_secret_sealed").map_err(get)?,
                    callback_scope: row.try_get("callback_scope").map_err(get)?,
                    callback_max_batch_size: row.try_get("callback_max_batch_size").map_err(get)?,
                    callback_stores_consumer_data: row.try_get("callback_stores_consumer_data").map_err(get)?,
                    wallet_server_base_url: row.try_get("wallet_server_base_url").map_err(get)?,
                    wallet_server_pods: row.try_get("wallet_server_pods").map_err(get)?,
                    created_at: row.try_get("created_at").map_err(get)?,
                    updated_at: row.try_get("updated_at").map_err(get)?,
                };
                let keys: Vec<(String, Vec<u8>)> =
                    $sql::query_as("SELECT kid, public_key FROM assertion_keys WHERE issuer_id = $1 ORDER BY kid")
                        .bind(id.as_str())
                        .fetch_all(&mut *self.conn)
                        .await
                        .map_err(backend)?;
                let products = $sql::query(
                    "SELECT card_product_id, scheme, authorisation_mode, bin_from, bin_to, physical, validity_years, \
                     used_for_transactions FROM card_products WHERE issuer_id = $1 ORDER BY card_product_id",
                )
                .bind(id.as_str())
                .fetch_all(&mut *self.conn)
                .await
                .map_err(backend)?
                .into_iter()
                .map(|row| {
                    Ok(ProductRow {
                        card_product_id: row.try_get("card_product_id")?,
                        scheme: row.try_get("scheme")?,
                        authorisation_mode: row.try_get("authorisation_mode")?,
                        bin_from: row.try_get("bin_from")?,
                        bin_to: row.try_get("bin_to")?,
                        physical: row.try_get("physical")?,
                        validity_years: row.try_get("validity_years")?,
                        used_for_transactions: row.try_get("used_for_transactions")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(backend)?;
                $crate::repo::issuer_from_rows(row, keys, products, self.vault).map(Some)
            }

            async fn has_callback(
                &mut self,
                id: &cardplane_domain::ids::IssuerId,
            ) -> Result<bool, cardplane_app::ports::StoreError> {
                use $crate::repo::Connection;
                if let Some(known) = self.conn.known_callbacks().and_then(|known| known.get(id.as_str())) {
                    return Ok(known);
                }
                // What `IssuerRow` needs to read callback settings back (`issuer`).
                let found: Option<(bool,)> = $sql::query_as(
                    "SELECT callback_base_url IS NOT NULL AND callback_token_url IS NOT NULL \
                     FROM issuers WHERE issuer_id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                let has_callback = found.is_some_and(|(has,)| has);
                if let Some(known) = self.conn.known_callbacks() {
                    known.remember(id.as_str(), has_callback);
                }
                Ok(has_callback)
            }

            async fn issuers(
                &mut self,
            ) -> Result<Vec<cardplane_domain::issuer::Issuer>, cardplane_app::ports::StoreError> {
                let ids: Vec<(String,)> = $sql::query_as("SELECT issuer_id FROM issuers ORDER BY issuer_id")
                    .fetch_all(&mut *self.conn)
                    .await
                    .map_err($crate::repo::backend)?;
                let mut issuers = Vec::with_capacity(ids.len());
                for (id,) in ids {
                    let id = cardplane_domain::ids::IssuerId::parse(id).map_err($crate::repo::corrupt)?;
                    if let Some(issuer) = self.issuer(&id).await? {
                        issuers.push(issuer);
                    }
                }
                Ok(issuers)
            }

            async fn put_issuer(
                &mut self,
                issuer: &cardplane_domain::issuer::Issuer,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                use $crate::repo::{Connection, backend, micros};
                if let Some(known) = self.conn.known_callbacks() {
                    known.forget();
                }
                let id = issuer.id.as_str();
                let onboarding = &issuer.onboarding;
                let callback = onboarding.callback.as_ref();
                let client = callback.and_then(|c| c.client.as_ref());
                let sealed_secret = client.map(|c| {
                    self.vault.seal(
                        &cardplane_app::ports::client_secret_context(&issuer.id),
                        c.client_secret.expose().as_bytes(),
                    )
                });
                let wallet = onboarding.wallet_server.as_ref();
                let pods = wallet.map(|w| {
                    let pods: std::collections::BTreeMap<&str, &str> =
                        w.pods.iter().map(|(pod, url)| (pod.as_str(), url.as_str())).collect();
                    serde_json::to_string(&pods).expect("a map of strings serialises")
                });
                $sql::query(
                    "INSERT INTO issuers (issuer_id, name, callback_base_url, callback_token_url, callback_client_id, \
                     callback_client_secret_sealed, callback_scope, callback_max_batch_size, \
                     callback_stores_consumer_data, wallet_server_base_url, wallet_server_pods, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (issuer_id) DO UPDATE SET name = excluded.name, \
                     callback_base_url = excluded.callback_base_url, callback_token_url = excluded.callback_token_url, \
                     callback_client_id = excluded.callback_client_id, \
                     callback_client_secret_sealed = excluded.callback_client_secret_sealed, \
                     callback_scope = excluded.callback_scope, \
                     callback_max_batch_size = excluded.callback_max_batch_size, \
                     callback_stores_consumer_data = excluded.callback_stores_consumer_data, \
                     wallet_server_base_url = excluded.wallet_server_base_url, \
                     wallet_server_pods = excluded.wallet_server_pods, updated_at = excluded.updated_at",
                )
                .bind(id)
                .bind(onboarding.name.as_str())
                .bind(callback.map(|c| c.base_url.as_str()))
                .bind(callback.map(|c| c.token_url.as_str()))
                .bind(client.map(|c| c.client_id.as_str()))
                .bind(sealed_secret)
                .bind(callback.and_then(|c| c.scope.as_deref()))
                .bind(callback.map(|c| i64::from(c.max_batch_size)))
                .bind(callback.map(|c| c.stores_consumer_data))
                .bind(wallet.map(|w| w.base_url.as_str()))
                .bind(pods)
                .bind(micros(issuer.created_at))
                .bind(micros(issuer.updated_at))
                .execute(&mut *self.conn)
                .await
                .map_err(backend)?;

                $sql::query("DELETE FROM assertion_keys WHERE issuer_id = $1")
                    .bind(id)
                    .execute(&mut *self.conn)
                    .await
                    .map_err(backend)?;
                for key in &onboarding.assertion_keys {
                    $sql::query("INSERT INTO assertion_keys (issuer_id, kid, public_key) VALUES ($1, $2, $3)")
                        .bind(id)
                        .bind(key.kid.as_str())
                        .bind(key.public_key.sec1().as_slice())
                        .execute(&mut *self.conn)
                        .await
                        .map_err(backend)?;
                }

                $sql::query("DELETE FROM card_products WHERE issuer_id = $1")
                    .bind(id)
                    .execute(&mut *self.conn)
                    .await
                    .map_err(backend)?;
                for product in &onboarding.card_products {
                    $sql::query(
                        "INSERT INTO card_products (issuer_id, card_product_id, scheme, authorisation_mode, bin_from, \
                         bin_to, physical, validity_years, used_for_transactions) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(id)
                    .bind(product.id.as_str())
                    .bind(product.scheme.as_str())
                    .bind(product.authorisation_mode.as_str())
                    .bind(product.bin_range.as_ref().map(|r| r.from()))
                    .bind(product.bin_range.as_ref().map(|r| r.to()))
                    .bind(product.physical)
                    .bind(i64::from(product.validity.get()))
                    .bind(product.used_for_transactions)
                    .execute(&mut *self.conn)
                    .await
                    .map_err(backend)?;
                }
                Ok(())
            }

            async fn encryption_keys(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
            ) -> Result<Vec<cardplane_app::ports::StoredEncryptionKey>, cardplane_app::ports::StoreError> {
                let rows: Vec<(String, Vec<u8>, Vec<u8>, i64, Option<i64>)> = $sql::query_as(
                    "SELECT kid, public_key, sealed_private_key, created_at, retired_at FROM encryption_keys \
                     WHERE issuer_id = $1 ORDER BY created_at, kid",
                )
                .bind(issuer.as_str())
                .fetch_all(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                rows.into_iter()
                    .map(|(kid, public, sealed, created, retired)| {
                        $crate::repo::encryption_key_from_row(kid, public, sealed, created, retired)
                    })
                    .collect()
            }

            async fn add_encryption_key(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                key: &cardplane_app::ports::StoredEncryptionKey,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                $sql::query(
                    "INSERT INTO encryption_keys (issuer_id, kid, public_key, sealed_private_key, created_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(issuer.as_str())
                .bind(key.key.kid.as_str())
                .bind(key.key.public_key.sec1().as_slice())
                .bind(key.sealed_private_key.as_slice())
                .bind($crate::repo::micros(key.key.created_at))
                .bind(key.key.retired_at.map($crate::repo::micros))
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(())
            }

            async fn retire_encryption_keys(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                at: time::OffsetDateTime,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                $sql::query("UPDATE encryption_keys SET retired_at = $1 WHERE issuer_id = $2 AND retired_at IS NULL")
                    .bind($crate::repo::micros(at))
                    .bind(issuer.as_str())
                    .execute(&mut *self.conn)
                    .await
                    .map_err($crate::repo::backend)?;
                Ok(())
            }

            async fn remember_assertion_jti(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                jti: &str,
                until: time::OffsetDateTime,
                now: time::OffsetDateTime,
            ) -> Result<bool, cardplane_app::ports::StoreError> {
                use $crate::repo::{backend, micros};
                $sql::query("DELETE FROM assertion_jtis WHERE issuer_id = $1 AND expires_at <= $2")
                    .bind(issuer.as_str())
                    .bind(micros(now))
                    .execute(&mut *self.conn)
                    .await
                    .map_err(backend)?;
                let inserted = $sql::query(
                    "INSERT INTO assertion_jtis (issuer_id, jti, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (issuer_id, jti) DO NOTHING",
                )
                .bind(issuer.as_str())
                .bind(jti)
                .bind(micros(until))
                .execute(&mut *self.conn)
                .await
                .map_err(backend)?;
                Ok(inserted.rows_affected() == 1)
            }
            $($($overrides)*)?
        }
    };
}

pub(crate) use impl_tx;
