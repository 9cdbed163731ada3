//! What the control plane's store-backed test files share: one PostgreSQL server for
//! the cases running at the same time, and `both_backends!`, which runs each case
//! against SQLite (a temporary file) and against that PostgreSQL (a database of its
//! own per case).

#![allow(dead_code, unused_macros)]

use std::sync::{Arc, Mutex, Weak};

use kakanai_test_peers::Postgres;

/// The PostgreSQL server shared by the cases running now, stopped when the last of
/// them drops it (a `static` guard would never be dropped and would leave the server
/// running after the test process).
pub fn shared_postgres() -> Arc<Postgres> {
    static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pg) = shared.upgrade() {
        return pg;
    }
    let pg = Arc::new(Postgres::start().expect("PostgreSQL must start for these tests"));
    *shared = Arc::downgrade(&pg);
    pg
}

/// `both_backends!("prefix_"; case_a, case_b)` — each `async fn case(url: String)`
/// in the file runs once on SQLite and once on PostgreSQL (database `prefix_case`).
macro_rules! both_backends {
    ($prefix:literal; $($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
                    super::$case(url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let pg = tokio::task::spawn_blocking(crate::common::shared_postgres).await.unwrap();
                    let db = concat!($prefix, stringify!($case));
                    pg.create_database(db).unwrap();
                    super::$case(pg.url_for(db)).await;
                    drop(pg);
                }
            )*
        }
    };
}
