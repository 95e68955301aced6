//! What the store's test binaries share: a database brought to an older migration, for the tests of
//! an upgrade from there.

use cardplane_testkit::{Backend, TestDatabase};

/// The store's migrations up to `version`, for a test of an upgrade from there.
#[derive(Debug)]
struct MigrationsUpTo {
    dir: std::path::PathBuf,
    version: i64,
}

impl<'s> sqlx::migrate::MigrationSource<'s> for MigrationsUpTo {
    fn resolve(
        self,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>> + Send + 's>,
    > {
        Box::pin(async move {
            let all = self.dir.resolve().await?;
            Ok(all.into_iter().filter(|m| m.version <= self.version).collect())
        })
    }
}

/// Brings `db` to migration `version` as an older cardplane would have, then runs `then` on it.
pub async fn migrate_up_to(db: &TestDatabase, version: i64, then: &str) {
    use sqlx::Connection;
    let backend = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    let migrator = sqlx::migrate::Migrator::new(MigrationsUpTo { dir, version }).await.unwrap();
    match db.backend {
        Backend::Sqlite => {
            let options: sqlx::sqlite::SqliteConnectOptions = db.url.parse().unwrap();
            let mut conn = sqlx::SqliteConnection::connect_with(&options.create_if_missing(true)).await.unwrap();
            migrator.run(&mut conn).await.unwrap();
            sqlx::raw_sql(then).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            migrator.run(&mut conn).await.unwrap();
            sqlx::raw_sql(then).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
}
