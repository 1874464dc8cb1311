//! A transaction whose `BEGIN` shares a round trip with its first statements.
//!
//! diesel-async's `transaction` sends `BEGIN` as a statement of its own and waits for it.
//! On the message writer's path that is one of a batch's round trips, and a busy channel's
//! batches run one after another under its lock: every round trip a batch saves is time the
//! next batch no longer waits. Here the caller sends [`begin`] first among the batch's first
//! statements, pipelined (`&AsyncPgConnection`). PostgreSQL runs a connection's statements in
//! the order they arrive, pipelined or not, so everything sent after `BEGIN` is inside the
//! transaction, and a statement that reads after the lock statement still takes its snapshot
//! once the lock is granted.
//!
//! diesel-async's transaction manager does not know about this transaction. So
//! [`PipelinedTransaction`] owns the pooled connection until the transaction ended, and a
//! connection whose transaction did not end — a `ROLLBACK` that failed, or the future dropped
//! half-way — is marked broken, which makes the pool close it instead of handing it to the
//! next caller with a transaction still open.

use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl as _, TransactionManager as _};

use crate::bulk::Fixed;
use crate::db::PooledConnection;
use crate::error::StoreResult;

/// The statement that opens the transaction; poll it before the statements it travels with.
pub(crate) async fn begin(mut conn: &AsyncPgConnection) -> StoreResult<()> {
    Fixed("BEGIN").execute(&mut conn).await?;
    Ok(())
}

/// A pooled connection with a transaction that [`begin`] opens; ended by [`commit`] or
/// [`rollback`], or else the connection leaves the pool when this is dropped.
///
/// [`commit`]: PipelinedTransaction::commit
/// [`rollback`]: PipelinedTransaction::rollback
pub(crate) struct PipelinedTransaction {
    conn: PooledConnection,
    /// Until `COMMIT` or `ROLLBACK` succeeds: a `BEGIN` may have been sent.
    open: bool,
}

impl PipelinedTransaction {
    pub(crate) fn new(conn: PooledConnection) -> Self {
        Self { conn, open: true }
    }

    pub(crate) fn conn(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }

    /// A failed `COMMIT` leaves the connection broken: whatever state it is in, it is not
    /// handed out again.
    pub(crate) async fn commit(mut self) -> StoreResult<()> {
        Fixed("COMMIT").execute(&mut *self.conn).await?;
        self.open = false;
        Ok(())
    }

    /// After a statement of the transaction failed. A `ROLLBACK` without a transaction (the
    /// `BEGIN` itself failed) is only a warning, so the connection goes back to the pool
    /// unless the `ROLLBACK` could not be run.
    pub(crate) async fn rollback(mut self) {
        if Fixed("ROLLBACK").execute(&mut *self.conn).await.is_ok() {
            self.open = false;
        }
    }
}

impl Drop for PipelinedTransaction {
    fn drop(&mut self) {
        if self.open {
            // The pool's recycle check closes a connection whose transaction manager is in
            // error.
            AnsiTransactionManager::transaction_manager_status_mut(&mut *self.conn).set_in_error();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::postgres_pool;

    /// `SAVEPOINT` is refused outside a transaction block: a probe for "inside one".
    async fn in_transaction(mut conn: &AsyncPgConnection) -> bool {
        Fixed("SAVEPOINT probe").execute(&mut conn).await.is_ok()
    }

    #[tokio::test]
    async fn statements_pipelined_after_begin_run_inside_the_transaction_until_rollback() {
        let (db, _server) = postgres_pool(1).await;
        let mut transaction = PipelinedTransaction::new(db.get().await.unwrap());
        let conn = transaction.conn();
        let ((), inside) = futures_util::join!(async { begin(conn).await.unwrap() }, in_transaction(conn));
        assert!(inside, "the statement sent with BEGIN ran inside the transaction");
        transaction.rollback().await;

        let conn = db.get().await.unwrap();
        assert!(!in_transaction(&conn).await, "rolled back, and the connection is reused outside a transaction");
    }

    #[tokio::test]
    async fn a_transaction_dropped_before_it_ends_never_goes_back_to_the_pool() {
        let (db, _server) = postgres_pool(1).await;
        let mut transaction = PipelinedTransaction::new(db.get().await.unwrap());
        begin(transaction.conn()).await.unwrap();
        drop(transaction);

        let conn = db.get().await.unwrap();
        assert!(!in_transaction(&conn).await, "the next caller gets a connection without the open transaction");
    }

    async fn backend_pid(mut conn: &AsyncPgConnection) -> i32 {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("pg_backend_pid()"))
            .get_result::<i32>(&mut conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_committed_transaction_leaves_its_connection_in_the_pool() {
        let (db, _server) = postgres_pool(1).await;
        let mut transaction = PipelinedTransaction::new(db.get().await.unwrap());
        begin(transaction.conn()).await.unwrap();
        let before = backend_pid(transaction.conn()).await;
        transaction.commit().await.unwrap();

        let conn = db.get().await.unwrap();
        assert!(!in_transaction(&conn).await);
        assert_eq!(backend_pid(&conn).await, before, "the same connection, reused");
    }
}
