//! A fresh, empty database per test on the server named by
//! `TERN_TEST_MYSQL_URL`, dropped when the test's [`Ctx`] goes.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, MySqlConnection};
use tern_core::store::Store;
use tern_store_sql::{MySqlOptions, MySqlStore};

const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// Locates a test's database; drops it when dropped.
pub struct Ctx {
    /// The server's URL (admin connection).
    admin: String,
    /// The store's URL: the same server, the test's database.
    pub url: String,
    db: String,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let db = self.db.clone();
        // The test's runtime may be gone or busy: a runtime of our own.
        let dropper = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut c = MySqlConnection::connect(&admin).await?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{db}`")))
                    .execute(&mut c)
                    .await?;
                c.close().await
            })
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.db),
            Err(_) => eprintln!("could not drop test database {}", self.db),
        }
    }
}

fn random_hex() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// `url` with its database replaced by `db` (query string kept).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    format!("{prefix}/{db}{query}")
}

/// A fresh, empty database (no schema yet); `None` (skipped) when the
/// server is not reachable, unless `CI` is set.
pub async fn new_ctx() -> Option<Ctx> {
    let admin = std::env::var("TERN_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let conn = tokio::time::timeout(Duration::from_secs(5), MySqlConnection::connect(&admin)).await;
    let mut conn = match conn {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return unreachable(&admin, &e.to_string()),
        Err(_) => return unreachable(&admin, "timed out"),
    };
    let db = format!("tern_t_{}", random_hex());
    sqlx::query(AssertSqlSafe(format!(
        "CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    )))
    .execute(&mut conn)
    .await
    .expect("create the test database");
    let _ = conn.close().await;
    Some(Ctx {
        url: with_database(&admin, &db),
        admin,
        db,
    })
}

/// A fresh database and a store on it.
pub async fn open_ctx() -> Option<(MySqlStore, Ctx)> {
    let ctx = new_ctx().await?;
    let store = MySqlStore::connect(&ctx.url, MySqlOptions::default())
        .await
        .expect("connect the MySQL store");
    Some((store, ctx))
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => match url[start..start + at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..start + colon], &url[start + at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn unreachable<T>(url: &str, why: &str) -> Option<T> {
    let url = redacted(url);
    if std::env::var_os("CI").is_some() {
        panic!("MySQL not reachable at {url} ({why}); CI must not skip these tests");
    }
    eprintln!("skipping: MySQL not reachable at {url} ({why})");
    None
}

pub async fn open() -> Option<(Arc<dyn Store>, Ctx)> {
    let (store, ctx) = open_ctx().await?;
    Some((Arc::new(store), ctx))
}

/// A new, independent pool on the same database, as another node has.
pub async fn reopen(ctx: &Ctx) -> Arc<dyn Store> {
    Arc::new(
        MySqlStore::connect(&ctx.url, MySqlOptions::default())
            .await
            .expect("reconnect the MySQL store"),
    )
}

#[test]
#[allow(dead_code)]
fn database_in_url_is_replaced() {
    assert_eq!(
        with_database("mysql://root@127.0.0.1:3306/test", "x"),
        "mysql://root@127.0.0.1:3306/x"
    );
    assert_eq!(
        with_database("mysql://u:p@h/test?ssl-mode=disabled", "x"),
        "mysql://u:p@h/x?ssl-mode=disabled"
    );
    assert_eq!(with_database("mysql://h:1", "x"), "mysql://h:1/x");
    assert_eq!(redacted("mysql://u:pw@h:1/x"), "mysql://u:***@h:1/x");
    assert_eq!(redacted("mysql://u@h/x"), "mysql://u@h/x");
}
