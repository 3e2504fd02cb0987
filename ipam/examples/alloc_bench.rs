//! Not shipped: in-process IPAM throughput, run by `cargo xtask bench ipam`. Each pair is one
//! allocate and one release, each its own committed datastore transaction; `CLIENTS` threads
//! (each with its own store connection) run at once.
//!
//! Usage: `alloc_bench PAIRS CLIENTS STORE` where STORE is `sqlite:normal`, `sqlite:full` or
//! `etcd:http://127.0.0.1:2379`; prints `{"pairs":..,"seconds":..,"pairsPerSecond":..}`.

use podnet_ipam::store::sqlite::{Options, SqliteStore, Sync};
use podnet_ipam::{pod_handle, Datastore, DatastoreConfig, Ipam, PoolSpec};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let pairs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let store = args.next().unwrap_or_else(|| "sqlite:normal".into());
    let dir = tempfile::tempdir().expect("make a temp dir");
    let open = || -> Box<dyn Datastore> {
        match store.split_once(':') {
            Some(("etcd", url)) => DatastoreConfig::Etcd {
                endpoints: vec![url.to_string()],
                prefix: None,
                tls: None,
                timeout_ms: None,
            }
            .open()
            .expect("connect to etcd"),
            Some(("sqlite", sync)) => {
                let sync = if sync == "full" {
                    Sync::Full
                } else {
                    Sync::Normal
                };
                Box::new(
                    SqliteStore::open_or_create(
                        dir.path().join("store.db"),
                        Options {
                            sync,
                            ..Options::default()
                        },
                    )
                    .expect("open the store"),
                )
            }
            _ => panic!("unknown store {store}"),
        }
    };
    let pool = PoolSpec::new(
        "10.200.0.0/16".parse().unwrap(),
        26,
        false,
        Default::default(),
    )
    .unwrap();
    // One pod stays per client's node, so the blocks are claimed before timing starts.
    let stores: Vec<Box<dyn Datastore>> = (0..clients).map(|_| open()).collect();
    for (c, s) in stores.iter().enumerate() {
        Ipam::new(&**s, pool.clone())
            .allocate(
                &format!("bench{c}"),
                &pod_handle(&format!("resident{c}-{}", std::process::id()), "eth0"),
            )
            .expect("allocate");
    }
    let per = pairs / clients;
    let run = std::process::id();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for (c, s) in stores.iter().enumerate() {
            let pool = pool.clone();
            scope.spawn(move || {
                let ipam = Ipam::new(&**s, pool);
                for i in 0..per {
                    let h = pod_handle(&format!("c{c}-{i}-{run}"), "eth0");
                    ipam.allocate(&format!("bench{c}"), &h).expect("allocate");
                    ipam.release(&h).expect("release");
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let done = per * clients;
    println!(
        "{}",
        serde_json::json!({"pairs": done, "seconds": secs, "pairsPerSecond": done as f64 / secs})
    );
}
