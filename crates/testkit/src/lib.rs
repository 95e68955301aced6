//! Test support shared by the crates' test suites.
//!
//! # Layout
//! - [`TestDatabase`]: a database of its own for one test, SQLite in a temporary directory or a
//!   fresh PostgreSQL database (dropped when the test ends).
//! - [`backend_tests!`]: writes each test once and runs it on both backends.
//! - [`test_vault`]: a key vault under a fixed test master key.
//! - [`INTEROP_FIXTURE`]: what independent JOSE libraries produce, for interoperability tests.
//!
//! PostgreSQL is reached at `CARDPLANE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); the tests fail, rather than skip, when it is down,
//! because a suite that silently skips a backend proves nothing about it.

use cardplane_jose::{MasterKey, Vault};
use sqlx::Connection;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server PostgreSQL tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("CARDPLANE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database for one test.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("cardplane.db").display());
                Self { backend, url, dir: Some(dir), pg_name: None }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("cardplane_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL is needed for the tests at {admin} (set CARDPLANE_TEST_POSTGRES_URL): {e}")
                });
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("CREATE DATABASE");
                conn.close().await.ok();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                Self { backend, url: format!("{base}/{name}"), dir: None, pg_name: Some(name) }
            }
        }
    }

    /// The directory a SQLite database lives in.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop cannot await; a short-lived runtime on its own thread does the clean-up.
            let admin = postgres_admin_url();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                runtime.block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.ok()
                })
            })
            .join();
        }
    }
}

/// Token assertions and card data made by independent JOSE implementations (pyjwt, jwcrypto), at
/// a fixed time; see `scripts/make-interop-fixtures.py`.
pub const INTEROP_FIXTURE: &str = include_str!("../fixtures/interop.json");

/// A vault under a fixed master key, for tests.
pub fn test_vault() -> Arc<Vault> {
    Arc::new(Vault::new(&test_master_key()))
}

pub fn test_master_key() -> MasterKey {
    MasterKey::parse(&"5a".repeat(32)).expect("a valid test key")
}

/// Runs each test on SQLite and on PostgreSQL, each time with a fresh database:
///
/// ```ignore
/// backend_tests! {
///     async fn round_trip(db: TestDatabase) { ... }
/// }
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($(async fn $name:ident($db:ident: TestDatabase) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $db = $crate::TestDatabase::new($crate::Backend::Sqlite).await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $db = $crate::TestDatabase::new($crate::Backend::Postgres).await;
                    $body
                }
            )*
        }
    };
}
