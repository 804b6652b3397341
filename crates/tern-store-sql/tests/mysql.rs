//! The shared `Store` conformance suite (`tern-store-conformance`) against
//! a fresh MySQL/MariaDB database per test, plus checks of risks of this
//! backend. The server comes from `TERN_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`); each test creates its own
//! `tern_t_<hex>` database there and drops it afterwards.

mod common;

use common::{open, reopen};

tern_store_conformance::suite!(open: open, reopen: reopen);
tern_store_conformance::search_access_property!(open: open, cases: 24);
tern_store_conformance::shared_suite!(open: open, reopen: reopen);
