//! Not shipped: in-process IPAM throughput, run by `cargo xtask bench ipam`. Each pair is one
//! allocate and one release, each its own committed datastore transaction.
//!
//! Usage: `alloc_bench PAIRS normal|full` prints `{"pairs":..,"seconds":..,"pairsPerSecond":..}`.

use podnet_ipam::store::sqlite::{Options, SqliteStore, Sync};
use podnet_ipam::{pod_handle, Ipam, PoolSpec};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let pairs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let sync = match args.next().as_deref() {
        Some("full") => Sync::Full,
        _ => Sync::Normal,
    };
    let dir = tempfile::tempdir().expect("make a temp dir");
    let store = SqliteStore::open(
        dir.path().join("store.db"),
        Options {
            sync,
            ..Options::default()
        },
    )
    .expect("open the store");
    let pool = PoolSpec::new(
        "10.200.0.0/16".parse().unwrap(),
        26,
        false,
        Default::default(),
    )
    .unwrap();
    let ipam = Ipam::new(&store, pool);
    // One pod stays, so the node's block is claimed before timing starts.
    ipam.allocate("bench", &pod_handle("resident", "eth0"))
        .expect("allocate");
    let start = Instant::now();
    for i in 0..pairs {
        let h = pod_handle(&format!("c{i}"), "eth0");
        ipam.allocate("bench", &h).expect("allocate");
        ipam.release(&h).expect("release");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"pairs": pairs, "seconds": secs, "pairsPerSecond": pairs as f64 / secs})
    );
}
