//! The shared `Store` conformance suite (`tern-store-conformance`) against
//! a fresh embedded SQLite store in a temporary directory.

use std::sync::Arc;
use tempfile::TempDir;
use tern_core::store::Store;
use tern_store_sqlite::{SqliteOptions, SqliteStore};

async fn reopen(dir: &TempDir) -> Arc<dyn Store> {
    let path = dir.path().to_owned();
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open(&path, SqliteOptions::default()))
            .await
            .unwrap()
            .expect("open the SQLite store");
    Arc::new(store)
}

async fn open() -> Option<(Arc<dyn Store>, TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let store = reopen(&dir).await;
    Some((store, dir))
}

tern_store_conformance::suite!(open: open, reopen: reopen);
tern_store_conformance::search_access_property!(open: open, cases: 64);
