//! Prometheus metrics. Handlers and the hub record through the `metrics` facade; this module
//! owns the exporter and adds the gauges that are read at scrape time (pool usage, live
//! connections).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::state::AppState;

/// The `metrics` facade has one recorder per process by design; several servers in one
/// process (the black-box tests) share it.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

#[derive(Clone)]
pub struct Metrics {
    handle: Option<PrometheusHandle>,
}

impl Metrics {
    pub fn install() -> Self {
        let handle = HANDLE
            .get_or_init(|| {
                PrometheusBuilder::new()
                    .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
                    .ok()
                    .and_then(|builder| builder.install_recorder().ok())
            })
            .clone();
        Self { handle }
    }

    pub fn render(&self, state: &AppState) -> String {
        let pool = state.db.pool_usage();
        metrics::gauge!("db_pool_max_connections").set(pool.max_size as f64);
        metrics::gauge!("db_pool_connections").set(pool.size as f64);
        metrics::gauge!("db_pool_in_use").set(pool.size.saturating_sub(pool.available) as f64);
        metrics::gauge!("db_pool_waiting").set(pool.waiting as f64);
        metrics::gauge!("websocket_connections").set(state.hub.connection_count() as f64);
        self.handle.as_ref().map(PrometheusHandle::render).unwrap_or_default()
    }
}

/// Whether `presented` is the metrics token, in time that does not depend on where the two
/// differ or on how long either is: both are hashed to 32 bytes first, and the digests are
/// compared in constant time.
pub fn token_matches(presented: Option<&str>, expected: &str) -> bool {
    let Some(presented) = presented else { return false };
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    presented.as_slice().ct_eq(expected.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn only_the_exact_token_matches() {
        for (presented, ok) in [
            (Some("s3cret-token"), true),
            (Some("s3cret-toke"), false),
            (Some("s3cret-tokenx"), false),
            (Some(""), false),
            (None, false),
        ] {
            assert_eq!(token_matches(presented, "s3cret-token"), ok, "{presented:?}");
        }
    }
}
