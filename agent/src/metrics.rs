//! The agent's Prometheus metrics (prometheus-client): owned routes, reconcile count and
//! duration, last datastore revision seen, errors.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub struct Metrics {
    registry: Mutex<Registry>,
    pub routes_owned: Gauge,
    pub reconciles: Counter,
    pub reconcile_seconds: Histogram,
    pub revision: Gauge,
    pub errors: Counter,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let routes_owned = Gauge::default();
        let reconciles = Counter::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let revision = Gauge::default();
        let errors = Counter::default();
        let mut registry = Registry::with_prefix("podnet_agent");
        registry.register(
            "routes_owned",
            "Routes the agent owns in the kernel",
            routes_owned.clone(),
        );
        registry.register("reconciles", "Reconcile passes run", reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile pass took",
            reconcile_seconds.clone(),
        );
        registry.register(
            "datastore_revision",
            "Last datastore revision reconciled",
            revision.clone(),
        );
        registry.register(
            "errors",
            "Failed reconcile passes and watch errors",
            errors.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            routes_owned,
            reconciles,
            reconcile_seconds,
            revision,
            errors,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }

    /// Ready once the first full reconcile has succeeded.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}
