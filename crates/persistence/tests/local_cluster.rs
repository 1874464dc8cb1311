//! The project-local PostgreSQL: created with the installed binaries, migrated, stopped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use persistence::local_pg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cluster_is_created_migrated_and_stopped() {
    let dir = std::env::temp_dir().join(format!("chat-local-pg-{}", uuid::Uuid::new_v4().simple()));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = local_pg::start_cluster(&dir, port).await.expect("the installed PostgreSQL starts");
    assert!(dir.join("postgres/PG_VERSION").exists());
    server.ensure_database("chat").await.unwrap();
    let url = server.url_for("chat");
    persistence::run_migrations(&url).await.unwrap();
    // Idempotent: a second run applies nothing and fails nothing.
    persistence::run_migrations(&url).await.unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    diesel::sql_query("SELECT 1 FROM users LIMIT 1").execute(&mut conn).await.unwrap();
    drop(conn);
    server.stop().await;
    assert!(AsyncPgConnection::establish(&url).await.is_err(), "stopped");
    let _ = std::fs::remove_dir_all(&dir);
}
