use diesel::result::{DatabaseErrorKind, Error as DieselError};
use thiserror::Error;

/// What can go wrong in storage, in the terms callers act on. Diesel's errors are mapped
/// here and only here.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint was violated; the payload names which one in API terms
    /// (`username_taken`, `email_taken`, `channel_name_taken`).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database could not be reached or the pool is exhausted.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[source] DieselError),
    /// The access rules refused the change, decided under the channel's lock.
    #[error("not allowed: {0:?}")]
    Denied(domain::Denied),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, ref info) => match info.constraint_name() {
                Some("users_username_key" | "users_username_skeleton_key") => Self::Conflict("username_taken"),
                Some("users_email_key") => Self::Conflict("email_taken"),
                Some("channels_name_key") => Self::Conflict("channel_name_taken"),
                _ => Self::Database(error),
            },
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => Self::Unavailable(error.to_string()),
            other => Self::Database(other),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for StoreError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<domain::DomainError> for StoreError {
    fn from(error: domain::DomainError) -> Self {
        Self::Corrupt(error.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
