//! Authentication: bcrypt password hashing kept off the async executor, HS256 access tokens,
//! and revocation that takes effect on every node within a second without a database query
//! per request.

pub mod api_token;
mod error;
mod password;
mod revocation;
mod token;

pub use api_token::{ApiTokenCache, ApiTokenSecret};
pub use error::AuthError;
pub use password::{AccountTurn, PasswordHasher};
pub use revocation::Revocations;
pub use token::{Claims, IssuedToken, SecretKey, TokenKeys};
