use std::fmt;

use domain::{User, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::error::AuthError;

/// The JWT signing key. It never prints.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    pub const MIN_LEN: usize = 32;

    /// Refuses keys shorter than 32 bytes: HS256 with a short key can be brute-forced.
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < Self::MIN_LEN {
            return Err(format!("must be at least {} bytes long (got {})", Self::MIN_LEN, bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// A random key for this process only.
    pub fn random() -> Self {
        let mut bytes = Vec::with_capacity(64);
        for _ in 0..4 {
            bytes.extend_from_slice(Uuid::new_v4().as_bytes());
        }
        Self(bytes)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: Uuid,
    pub username: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

impl Claims {
    pub fn user_id(&self) -> UserId {
        UserId::from_uuid(self.sub)
    }

    pub fn expires_at(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.exp).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// When the token was issued, in Unix milliseconds: the time in its UUID v7 id, which
    /// is finer than `iat`'s seconds (a token issued just after a password change in the
    /// same second must survive it, one issued just before must not).
    pub fn issued_at_ms(&self) -> i64 {
        self.jti.get_timestamp().map_or(self.iat.saturating_mul(1000), |ts| {
            let (seconds, nanos) = ts.to_unix();
            (seconds as i64).saturating_mul(1000) + i64::from(nanos / 1_000_000)
        })
    }
}

pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
    pub claims: Claims,
}

/// Signs and checks HS256 access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
}

impl TokenKeys {
    pub fn new(secret: &SecretKey, lifetime: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(&secret.0),
            decoding: DecodingKey::from_secret(&secret.0),
            validation,
            lifetime,
        }
    }

    pub fn issue(&self, user: &User) -> Result<IssuedToken, AuthError> {
        self.issue_at(user, OffsetDateTime::now_utc())
    }

    /// Issues a token as if it were `now`; tests use it to make expired tokens.
    pub fn issue_at(&self, user: &User, now: OffsetDateTime) -> Result<IssuedToken, AuthError> {
        let claims = Claims {
            sub: user.id.as_uuid(),
            username: user.username.as_str().to_owned(),
            iat: now.unix_timestamp(),
            exp: (now + self.lifetime).unix_timestamp(),
            jti: Uuid::now_v7(),
        };
        let access_token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| AuthError::InvalidToken)?;
        Ok(IssuedToken { access_token, expires_in: self.lifetime.whole_seconds(), claims })
    }

    /// Checks signature, algorithm and expiry. Revocation is [`crate::Revocations`]' job.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::InvalidToken,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{DisplayName, Email, Username};

    fn user() -> User {
        User {
            id: UserId::new(),
            username: Username::parse("johndoe").unwrap(),
            email: Email::parse("john@example.com").unwrap(),
            display_name: DisplayName::parse("John Doe").unwrap(),
            created_at: OffsetDateTime::now_utc(),
            is_bot: false,
        }
    }

    fn keys(secret: &[u8]) -> TokenKeys {
        TokenKeys::new(&SecretKey::new(secret.to_vec()).unwrap(), Duration::minutes(30))
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(SecretKey::new(vec![b'k'; 31]).is_err());
        assert!(SecretKey::new(vec![b'k'; 32]).is_ok());
        assert_eq!(format!("{:?}", SecretKey::random()), "SecretKey([redacted])");
    }

    #[test]
    fn round_trip_carries_the_claims() {
        let keys = keys(&[7; 32]);
        let user = user();
        let issued = keys.issue(&user).unwrap();
        let claims = keys.verify(&issued.access_token).unwrap();
        assert_eq!(claims.sub, user.id.as_uuid());
        assert_eq!(claims.username, "johndoe");
        assert_eq!(claims.exp - claims.iat, 1800);
        assert_eq!(issued.expires_in, 1800);
    }

    #[test]
    fn expired_and_foreign_tokens_fail() {
        let keys_a = keys(&[7; 32]);
        let keys_b = keys(&[8; 32]);
        let user = user();
        let old = keys_a.issue_at(&user, OffsetDateTime::now_utc() - Duration::hours(1)).unwrap();
        assert!(matches!(keys_a.verify(&old.access_token), Err(AuthError::Expired)));
        let foreign = keys_b.issue(&user).unwrap();
        assert!(matches!(keys_a.verify(&foreign.access_token), Err(AuthError::InvalidToken)));
        assert!(matches!(keys_a.verify("not.a.token"), Err(AuthError::InvalidToken)));
    }

    #[test]
    fn alg_none_is_refused() {
        use base64_like::encode;
        let keys = keys(&[7; 32]);
        let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let payload = encode(
            format!(
                r#"{{"sub":"{}","username":"x","iat":{now},"exp":{},"jti":"{}"}}"#,
                Uuid::nil(),
                now + 600,
                Uuid::nil()
            )
            .as_bytes(),
        );
        assert!(keys.verify(&format!("{header}.{payload}.")).is_err());
    }

    /// Just enough base64url to forge a token in a test without another dependency.
    mod base64_like {
        pub fn encode(bytes: &[u8]) -> String {
            const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
