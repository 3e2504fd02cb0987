//! Not shipped: times the proxy's sync of table `ip podnet-proxy` for N Services of 3
//! endpoints each when one Service changes (its endpoints move), in the network namespace it
//! runs in, for `cargo xtask bench services`. Prints one JSON line: services, trials, the first
//! write, and median and p99 of an update, in ms.
//!
//! Usage: `proxy_update SERVICES TRIALS` (run it in a namespace of its own: it owns the table).

use podnet_netlink::nft::Synced;
use podnet_proxy::sync::Proxy;
use podnet_proxy::Service;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Service `i` at 10.96.x.y with endpoints 10.200.x.y+{0,1,2} (`shift` moves them).
fn service(i: u32, shift: u32) -> Service {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + i);
    let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i * 4 + shift;
    let eps: Vec<Ipv4Addr> = (0..3).map(|k| Ipv4Addr::from(base + k)).collect();
    Service::tcp(("bench", &format!("svc-{i}")), ip, ("http", 80, 8080), &eps)
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let [n, trials] = args.as_slice() else {
        eprintln!("usage: proxy_update SERVICES TRIALS");
        std::process::exit(2);
    };
    let mut services: Vec<Service> = (0..*n).map(|i| service(i, 0)).collect();
    let mut proxy = Proxy::open().expect("open nftables");
    let start = Instant::now();
    assert_eq!(proxy.sync(&services).unwrap(), Synced::Replaced);
    let first = start.elapsed();
    let mut took = Vec::new();
    for t in 0..*trials {
        let changed = (t * 7919) % n;
        services[changed as usize] = service(changed, 1 + t % 2);
        let start = Instant::now();
        assert_eq!(proxy.sync(&services).unwrap(), Synced::Replaced);
        took.push(start.elapsed());
    }
    proxy.remove().expect("remove the table");
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |p: f64| took[((p * took.len() as f64).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "{}",
        serde_json::json!({"services": n, "trials": trials, "first_ms": ms(first), "median_ms": ms(at(0.5)), "p99_ms": ms(at(0.99))})
    );
}
