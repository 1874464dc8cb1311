//! The per-request token check must stay cheap (under 5 µs): it runs on every REST request
//! and WebSocket handshake. Both kinds are measured as the server runs them: an access token
//! (signature, expiry, revocation set) and an API token (digest, cache, revocation set).
//!
//! `cargo bench -p auth` (not part of `cargo test`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use auth::api_token::Cached;
use auth::{ApiTokenCache, ApiTokenSecret, Revocations, SecretKey, TokenKeys};
use criterion::{Criterion, criterion_group, criterion_main};
use domain::{ApiToken, ApiTokenId, DisplayName, Email, TokenName, User, UserId, Username};
use time::OffsetDateTime;

fn access_token(c: &mut Criterion) {
    let keys = TokenKeys::new(&SecretKey::new(vec![7; 32]).unwrap(), time::Duration::minutes(30));
    let user = User {
        id: UserId::new(),
        username: Username::parse("johndoe").unwrap(),
        email: Email::parse("john@example.com").unwrap(),
        display_name: DisplayName::parse("John Doe").unwrap(),
        created_at: OffsetDateTime::now_utc(),
        is_bot: false,
    };
    let revocations = Revocations::default();
    let token = keys.issue(&user).unwrap().access_token;
    c.bench_function("access_token_check", |b| {
        b.iter(|| {
            let claims = keys.verify(black_box(&token)).unwrap();
            assert!(!revocations.rejects_claims(&claims));
        });
    });
}

fn api_token(c: &mut Criterion) {
    let cache = ApiTokenCache::default();
    let revocations = Revocations::default();
    let username = Username::parse("johndoe").unwrap();
    let stored = |user_id| ApiToken {
        id: ApiTokenId::new(),
        user_id,
        name: TokenName::parse("ci").unwrap(),
        created_at: OffsetDateTime::now_utc(),
        expires_at: Some(OffsetDateTime::now_utc() + time::Duration::days(30)),
        last_used_at: None,
    };
    // Other tokens in the cache, so the lookup is not into a map of one.
    for _ in 0..10_000 {
        cache.admit(ApiTokenSecret::generate().expose(), &stored(UserId::new()), &username, &revocations).unwrap();
    }
    let secret = ApiTokenSecret::generate();
    cache.admit(secret.expose(), &stored(UserId::new()), &username, &revocations).unwrap();
    c.bench_function("api_token_check", |b| {
        b.iter(|| match cache.check(black_box(secret.expose()), &revocations).unwrap() {
            Cached::Valid(verified) => black_box(verified),
            Cached::Unknown => panic!("the token is cached"),
        });
    });
}

criterion_group!(benches, access_token, api_token);
criterion_main!(benches);
