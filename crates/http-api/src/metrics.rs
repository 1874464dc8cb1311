//! Prometheus metrics. Handlers and the hub record through the `metrics` facade; this module
//! owns the exporter and adds the gauges that are read at scrape time (pool usage, live
//! connections).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

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
