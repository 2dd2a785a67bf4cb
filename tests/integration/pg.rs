//! Throw-away PostgreSQL databases for tests: one per test, made from the server
//! `HUBAUTH_TEST_POSTGRES_URL` names (`scripts/postgres.sh start` runs one) and dropped after.
//!
//! Without that variable, PostgreSQL tests skip and say why. `scripts/test` sets
//! `HUBAUTH_TEST_REQUIRE_POSTGRES=1` once its server is up: then a missing server fails instead.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions};

pub struct TestDatabase {
    pub url: String,
    admin: PgConnectOptions,
    name: String,
}

fn server() -> Option<String> {
    match std::env::var("HUBAUTH_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("HUBAUTH_TEST_REQUIRE_POSTGRES").is_err(),
                "HUBAUTH_TEST_REQUIRE_POSTGRES is set but HUBAUTH_TEST_POSTGRES_URL is not"
            );
            eprintln!(
                "skipping the PostgreSQL part of this test: HUBAUTH_TEST_POSTGRES_URL is not set \
                 (`eval \"$(bash scripts/postgres.sh start)\"` starts a server)"
            );
            None
        }
    }
}

/// The server's CA, for tests of verified TLS.
pub fn server_ca() -> Option<String> {
    std::env::var("HUBAUTH_TEST_POSTGRES_CA").ok().filter(|p| !p.is_empty())
}

/// A new, empty database, or `None` (with the reason printed) when no server is configured.
pub async fn database() -> Option<TestDatabase> {
    let url = server()?;
    let admin = PgConnectOptions::from_str(&url).expect("HUBAUTH_TEST_POSTGRES_URL is a PostgreSQL URL");
    let name = format!("hubauth_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn: PgConnection =
        admin.connect().await.unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL: {e}"));
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    let mut parsed = url::Url::parse(&url).unwrap();
    parsed.set_path(&format!("/{name}"));
    Some(TestDatabase { url: parsed.to_string(), admin, name })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // The test's runtime may be gone or busy: drop on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut conn: PgConnection = admin.connect().await?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}
