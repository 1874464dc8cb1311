//! Keyset pagination: a bounded page size and opaque cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::DomainError;

/// A page size: 1–200, 50 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit(u16);

impl Limit {
    pub const DEFAULT: Self = Self(50);
    pub const MAX: u16 = 200;

    pub fn parse(raw: Option<i64>) -> Result<Self, DomainError> {
        match raw {
            None => Ok(Self::DEFAULT),
            Some(n) if (1..=i64::from(Self::MAX)).contains(&n) => Ok(Self(n as u16)),
            Some(_) => Err(DomainError::invalid("limit", "must be between 1 and 200")),
        }
    }

    pub fn get(self) -> i64 {
        i64::from(self.0)
    }
}

/// An opaque position in a listing. Clients must not build cursors, so the key is wrapped in
/// URL-safe base64; the listing that made it knows how to read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    pub fn encode(key: &str) -> Self {
        Self(URL_SAFE_NO_PAD.encode(key))
    }

    /// The key inside a cursor. Keys are text the database compares, and PostgreSQL refuses
    /// NUL in text, so a cursor holding one is refused here (it is not one we made).
    pub fn decode(raw: &str, field: &'static str) -> Result<String, DomainError> {
        URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|key| !key.contains('\0'))
            .ok_or_else(|| DomainError::invalid(field, "is not a valid cursor"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bounds() {
        assert_eq!(Limit::parse(None).unwrap().get(), 50);
        assert_eq!(Limit::parse(Some(1)).unwrap().get(), 1);
        assert_eq!(Limit::parse(Some(200)).unwrap().get(), 200);
        assert!(Limit::parse(Some(0)).is_err());
        assert!(Limit::parse(Some(201)).is_err());
        assert!(Limit::parse(Some(-5)).is_err());
        assert!(Limit::parse(Some(i64::MAX)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor::encode("alice");
        assert_eq!(Cursor::decode(cursor.as_str(), "after").unwrap(), "alice");
        assert!(Cursor::decode("!!!", "after").is_err());
        assert!(Cursor::decode(Cursor::encode("a\0b").as_str(), "after").is_err(), "no NUL reaches a query");
    }
}
