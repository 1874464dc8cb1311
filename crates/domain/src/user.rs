//! Accounts: the validated values a user is made of (docs/api.md section 2).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::DomainError;
use crate::ids::UserId;

/// 3–32 characters of `[A-Za-z0-9_.-]`. Uniqueness is case-insensitive, so [`Username::key`]
/// gives the lowercase form the store compares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let len = raw.chars().count();
        if !(3..=32).contains(&len) {
            return Err(DomainError::invalid("username", "must be 3 to 32 characters long"));
        }
        if !raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(DomainError::invalid("username", "may contain only letters, digits, '_', '.' and '-'"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form that uniqueness is checked on.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The form that lookalike names share, which is unique too: `aIice` (capital i),
    /// `a1ice` and `alice` are one key, as are `b0b` and `bob`, and `rn` stands for `m`.
    ///
    /// Unicode's confusable skeleton (UTS #39) maps each character to the one it is mistaken
    /// for (`I`, `1` → `l`, `0` → `O`, `m` → `rn`). The skeleton keeps case, and a name that
    /// looks like `Alice` is as misleading beside `alice` as one that looks like `alice`, so
    /// the skeleton is lowercased; lowercasing can make a letter with a prototype of its own
    /// (`M` → `m` → `rn`), so both steps repeat until nothing changes (two rounds for ASCII).
    ///
    /// ```
    /// use domain::Username;
    /// let key = |raw| Username::parse(raw).unwrap().confusable_key();
    /// assert_eq!(key("aIice"), key("alice"));
    /// assert_ne!(key("alice"), key("alina"));
    /// ```
    pub fn confusable_key(&self) -> String {
        let mut key = self.0.clone();
        // Each round only replaces characters by their prototypes, which are fixed points of
        // the skeleton; four rounds is a bound, not an expectation.
        for _ in 0..4 {
            let next: String = unicode_security::skeleton(&key).collect::<String>().to_lowercase();
            if next == key {
                break;
            }
            key = next;
        }
        key
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address: one `@`, a non-empty local part, a dotted domain, no spaces, at most
/// 254 characters. Deliverability is not the server's business; shape is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let raw = raw.trim();
        let invalid = || DomainError::invalid("email", "must be a valid email address");
        if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A plain-text password on its way to being hashed: 8–128 characters and at most 72 bytes
/// (bcrypt ignores everything after the 72nd byte, so a longer one would be silently
/// truncated). It never prints.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// bcrypt's input limit.
    pub const MAX_BYTES: usize = 72;

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let len = raw.chars().count();
        if !(8..=128).contains(&len) {
            return Err(DomainError::invalid("password", "must be 8 to 128 characters long"));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(DomainError::invalid(
                "password",
                format!("must be at most {} bytes (bcrypt ignores the rest)", Self::MAX_BYTES),
            ));
        }
        if raw.contains('\0') {
            return Err(DomainError::invalid("password", "must not contain NUL characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// 1–64 characters after trimming, no control characters. Invisible characters (bidi
/// overrides, zero-width spaces and the other default-ignorable code points, outside emoji)
/// are dropped first, so a display name shows what it is; see [`crate::text::strip_invisible`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let visible = crate::text::strip_invisible(raw);
        let trimmed = visible.trim();
        let len = trimmed.chars().count();
        if !(1..=64).contains(&len) {
            return Err(DomainError::invalid("display_name", "must be 1 to 64 characters long after trimming"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(DomainError::invalid("display_name", "must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The default display name: the username itself, which is always a valid one.
    pub fn from_username(username: &Username) -> Self {
        Self(username.as_str().to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An account as the rest of the system sees it. The password hash stays in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub email: Email,
    pub display_name: DisplayName,
    pub created_at: OffsetDateTime,
    /// A bot account (docs/api.md section 12): owned by a person, signs in only with API
    /// tokens, never with a password.
    pub is_bot: bool,
}

impl User {
    pub fn summary(&self) -> UserSummary {
        UserSummary { id: self.id, username: self.username.clone(), display_name: self.display_name.clone() }
    }
}

/// The author block embedded in messages and events: `{id, username, display_name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: UserId,
    pub username: Username,
    pub display_name: DisplayName,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T>(parse: fn(&str) -> Result<T, DomainError>, cases: &[(&str, bool)]) {
        for (input, ok) in cases {
            assert_eq!(parse(input).is_ok(), *ok, "input {input:?}");
        }
    }

    #[test]
    fn username_rules() {
        check(
            Username::parse,
            &[
                ("johndoe", true),
                ("a.b-c_d", true),
                ("abc", true),
                ("ab", false),
                (&"x".repeat(32), true),
                (&"x".repeat(33), false),
                ("john doe", false),
                ("jöhn", false),
                ("john/../x", false),
                ("", false),
            ],
        );
    }

    #[test]
    fn username_key_folds_case() {
        assert_eq!(Username::parse("JohnDoe").unwrap().key(), "johndoe");
    }

    #[test]
    fn lookalike_usernames_share_a_confusable_key() {
        let key = |raw: &str| Username::parse(raw).unwrap().confusable_key();
        for (a, b, alike) in [
            ("alice", "aIice", true),
            ("alice", "a1ice", true),
            ("alice", "ALICE", false),
            ("alice", "AIice", true),
            ("alice", "Alice", true),
            ("bob", "b0b", true),
            ("BOB", "b0b", true),
            ("mary", "rnary", true),
            ("Mary", "rnary", true),
            ("alice", "alina", false),
            ("alice", "aiice", false),
            ("john.doe", "john_doe", false),
            ("john-doe", "johndoe", false),
            ("user1", "userl", true),
            ("user1", "user2", false),
        ] {
            assert_eq!(key(a) == key(b), alike, "{a} vs {b}: {} / {}", key(a), key(b));
        }
        assert_eq!(key("aIice"), "alice");
        assert_eq!(key("b0b"), "bob");
    }

    #[test]
    fn email_rules() {
        check(
            Email::parse,
            &[
                ("john@example.com", true),
                ("j.o+tag@sub.example.org", true),
                ("john@localhost", false),
                ("john@@example.com", false),
                ("@example.com", false),
                ("john@", false),
                ("jo hn@example.com", false),
                ("john@-example.com", false),
                ("john@example..com", false),
            ],
        );
    }

    #[test]
    fn password_rules() {
        check(
            Password::parse,
            &[
                ("secretpass", true),
                ("short", false),
                (&"p".repeat(72), true),
                (&"p".repeat(73), false),
                // Characters count for the length, bytes for bcrypt's limit.
                (&"é".repeat(36), true),
                (&"é".repeat(37), false),
                (&"p".repeat(129), false),
                ("has\0nul!", false),
            ],
        );
    }

    #[test]
    fn password_never_prints() {
        let password = Password::parse("secretpass").unwrap();
        assert_eq!(format!("{password:?}"), "Password([redacted])");
    }

    #[test]
    fn display_name_rules() {
        check(
            DisplayName::parse,
            &[
                ("John Doe", true),
                ("  padded  ", true),
                ("   ", false),
                ("", false),
                (&"d".repeat(64), true),
                (&"d".repeat(65), false),
                ("bell\u{7}", false),
                ("nul\u{0}", false),
                ("\u{200B}", false),
                ("\u{202E}\u{200B} ", false),
                ("John \u{1F44D}", true),
            ],
        );
        for (raw, shown) in [
            ("  John  ", "John"),
            ("\u{202E}John", "John"),
            ("Jo\u{200B}hn", "John"),
            ("\u{200F}Jo\u{2066}hn\u{2069}\u{FEFF}", "John"),
            (" \u{200B} John", "John"),
            (
                "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} family",
                "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} family",
            ),
        ] {
            assert_eq!(DisplayName::parse(raw).unwrap().as_str(), shown, "raw {raw:?}");
        }
    }
}
