//! PostgreSQL storage for the chat server.
//!
//! Architecture Invariant: diesel rows never leave this crate. Public functions take
//! `&mut AsyncPgConnection`, so callers can compose them inside one transaction, and return
//! domain types.

pub mod api_tokens;
pub mod audit;
pub mod blocks;
mod bulk;
pub mod channels;
pub mod db;
pub mod error;
pub mod events;
pub mod files;
pub mod history;
pub mod local_pg;
pub mod login_failures;
pub mod mentions;
pub mod messages;
mod pipelined;
mod schema;
pub mod tokens;
pub mod users;
pub mod webhooks;
pub mod writer;

pub use db::{Database, PooledConnection, run_migrations};
pub use diesel_async::AsyncPgConnection;
pub use error::{StoreError, StoreResult};
