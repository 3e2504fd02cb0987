//! The agent's Prometheus metrics (prometheus-client): owned routes, reconcile count and
//! duration, last datastore revision seen, errors; in BGP mode also BIRD's state (answering,
//! sessions by state, routes learned, restarts, configs applied and refused). Readiness lives
//! here too: the first full pass, and in BGP mode BIRD answering with every session up.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
    pub bird_up: Gauge,
    /// BGP sessions by state (`state="Established"`, ...).
    pub bgp_sessions: Family<Vec<(String, String)>, Gauge>,
    pub bgp_routes_learned: Gauge,
    pub bird_restarts: Counter,
    pub bird_configs_applied: Counter,
    pub bird_configs_refused: Counter,
    pub egress_syncs: Counter,
    pub egress_sync_failures: Counter,
    pub egress_rules: Gauge,
    ready: AtomicBool,
    /// BGP mode: why BIRD is not ready (`None`: ready, or not in BGP mode).
    bgp_unready: Mutex<Option<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let routes_owned = Gauge::default();
        let reconciles = Counter::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let revision = Gauge::default();
        let errors = Counter::default();
        let bird_up = Gauge::default();
        let bgp_sessions = Family::<Vec<(String, String)>, Gauge>::default();
        let bgp_routes_learned = Gauge::default();
        let bird_restarts = Counter::default();
        let bird_configs_applied = Counter::default();
        let bird_configs_refused = Counter::default();
        let egress_syncs = Counter::default();
        let egress_sync_failures = Counter::default();
        let egress_rules = Gauge::default();
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
        registry.register(
            "bird_up",
            "1 while BIRD answers on its control socket (BGP mode)",
            bird_up.clone(),
        );
        registry.register(
            "bgp_sessions",
            "BGP sessions by state",
            bgp_sessions.clone(),
        );
        registry.register(
            "bgp_routes_learned",
            "Routes BIRD imported from its BGP peers",
            bgp_routes_learned.clone(),
        );
        registry.register(
            "bird_restarts",
            "Times the agent restarted BIRD",
            bird_restarts.clone(),
        );
        registry.register(
            "bird_configs_applied",
            "BIRD configs checked and loaded",
            bird_configs_applied.clone(),
        );
        registry.register(
            "bird_configs_refused",
            "BIRD configs refused (the running config stayed)",
            bird_configs_refused.clone(),
        );
        registry.register(
            "nftables_syncs",
            "Times table ip podnet was written (or deleted) to match the wanted rules",
            egress_syncs.clone(),
        );
        registry.register(
            "nftables_sync_failures",
            "Failed attempts to write table ip podnet",
            egress_sync_failures.clone(),
        );
        registry.register(
            "nftables_rules",
            "Rules in table ip podnet as wanted",
            egress_rules.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            routes_owned,
            reconciles,
            reconcile_seconds,
            revision,
            errors,
            bird_up,
            bgp_sessions,
            bgp_routes_learned,
            bird_restarts,
            bird_configs_applied,
            bird_configs_refused,
            egress_syncs,
            egress_sync_failures,
            egress_rules,
            ready: AtomicBool::new(false),
            bgp_unready: Mutex::new(None),
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

    /// Ready, or why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Err("no full reconcile yet".into());
        }
        match &*self.bgp_unready.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// Records BIRD's state (BGP mode), polled by the supervisor.
    pub fn set_bird(&self, view: &crate::bgp::BirdView) {
        self.bird_up.set(view.answering as i64);
        self.bgp_routes_learned.set(view.routes_learned as i64);
        self.bgp_sessions.clear();
        for s in &view.sessions {
            let state = s.session_state().to_string();
            self.bgp_sessions
                .get_or_create(&vec![("state".to_string(), state)])
                .inc();
        }
        *self.bgp_unready.lock().unwrap_or_else(|p| p.into_inner()) = view.ready().err();
    }
}
