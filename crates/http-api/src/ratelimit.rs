//! Rate limits (governor, a maintained GCRA implementation): per client IP on register and
//! login, per user on writes (posts, reactions, uploads). A refusal is a 429 with
//! `Retry-After` and `X-RateLimit-*`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::HttpRequest;
use domain::{UserId, WebhookId};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::Settings;
use crate::error::ApiError;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

pub struct Limits {
    auth: Option<(Keyed<IpAddr>, u32)>,
    writes: Option<(Keyed<UserId>, u32)>,
    webhooks: Option<(Keyed<WebhookId>, u32)>,
    trusted_proxies: Vec<IpAddr>,
}

/// What a 429 tells the client.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub limit: u32,
    pub retry_after: Duration,
}

impl Limits {
    pub fn new(settings: &Settings) -> Self {
        let auth = NonZeroU32::new(settings.rate_limit_auth_per_minute)
            .map(|n| (RateLimiter::keyed(Quota::per_minute(n)).with_middleware(), n.get()));
        let writes = NonZeroU32::new(settings.rate_limit_writes_per_second).map(|n| {
            // Bursts of twice the rate are fine (a paste of several lines, a quick reaction).
            let burst = n.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            (RateLimiter::keyed(Quota::per_second(n).allow_burst(burst)).with_middleware(), n.get())
        });
        let webhooks = NonZeroU32::new(settings.rate_limit_webhook_per_minute)
            .map(|n| (RateLimiter::keyed(Quota::per_minute(n)).with_middleware(), n.get()));
        Self { auth, writes, webhooks, trusted_proxies: settings.trusted_proxies() }
    }

    /// Register and login: per client IP.
    pub fn check_auth(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some((limiter, limit)) = &self.auth else { return Ok(()) };
        check(limiter, &self.client_ip(req), *limit, "auth")
    }

    /// Posting, reacting, uploading: per user.
    pub fn check_writes(&self, user: UserId) -> Result<(), ApiError> {
        let Some((limiter, limit)) = &self.writes else { return Ok(()) };
        check(limiter, &user, *limit, "writes")
    }

    /// Posts through an incoming webhook: per webhook, whoever holds its URL.
    pub fn check_webhook(&self, webhook: WebhookId) -> Result<(), ApiError> {
        let Some((limiter, limit)) = &self.webhooks else { return Ok(()) };
        check(limiter, &webhook, *limit, "webhooks")
    }

    /// The peer address, or — only when the peer is a trusted proxy — the nearest address in
    /// `X-Forwarded-For` that is not one of our proxies.
    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        let peer = req.peer_addr().map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        req.headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|chain| {
                chain
                    .rsplit(',')
                    .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
                    .find(|ip| !self.trusted_proxies.contains(ip))
            })
            .unwrap_or(peer)
    }

    /// Forgets idle keys so the maps do not grow without bound.
    pub fn housekeeping(&self) {
        if let Some((limiter, _)) = &self.auth {
            limiter.retain_recent();
        }
        if let Some((limiter, _)) = &self.writes {
            limiter.retain_recent();
        }
    }
}

fn check<K: Clone + std::hash::Hash + Eq>(
    limiter: &Keyed<K>,
    key: &K,
    limit: u32,
    scope: &'static str,
) -> Result<(), ApiError> {
    match limiter.check_key(key) {
        Ok(_) => Ok(()),
        Err(not_until) => {
            metrics::counter!("rate_limited_total", "scope" => scope).increment(1);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(ApiError::RateLimited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64, limit })
        }
    }
}
