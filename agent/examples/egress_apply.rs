//! Not shipped: times the agent's egress sync (read table `ip podnet` back, compare, replace
//! it in one batch) for a changed rule set, in the network namespace it runs in, for
//! `cargo xtask bench egress`. Each trial flips the last pool's natOutgoing, so every sync
//! has a real change to write. Prints one JSON line: pools, trials, median and p99 in µs.
//!
//! Usage: `egress_apply POOLS TRIALS` (run it in a namespace of its own: it owns the table).

use ipnet::Ipv4Net;
use podnet_agent::egress::{self, Egress, Inputs, Synced};
use podnet_ipam::pools::NatExclusions;
use podnet_ipam::PoolSpec;
use std::time::{Duration, Instant};

/// `n` pools apart from each other (an interval set merges neighbours): 10.128.0.0/10, the
/// cluster pool, then 10.1.0.0/24, 10.2.0.0/24, ...
fn pools(n: usize) -> Vec<PoolSpec> {
    let cidr = |i: usize| -> Ipv4Net {
        if i == 0 {
            "10.128.0.0/10".parse().unwrap()
        } else {
            format!("10.{i}.0.0/24").parse().unwrap()
        }
    };
    (0..n)
        .map(|i| PoolSpec::new(cidr(i), 26, false, Default::default()).unwrap())
        .collect()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let [n, trials] = args.as_slice() else {
        eprintln!("usage: egress_apply POOLS TRIALS");
        std::process::exit(2);
    };
    let mut pools = pools(*n);
    let mut eg = Egress::open().expect("open nftables");
    let tunnel = Some(("vxlan.calico", "10.128.0.1".parse().unwrap()));
    let want = |pools: &[PoolSpec]| {
        egress::desired(&Inputs {
            pools,
            exclusions: NatExclusions::IPPoolsOnly,
            nodes: &[],
            tunnel,
        })
    };
    assert_eq!(eg.sync(&want(&pools)).unwrap(), Synced::Replaced);
    let mut took = Vec::new();
    for _ in 0..*trials {
        let last = pools.len() - 1;
        let on = !pools[last].nat_outgoing();
        pools[last] = pools[last].clone().with_nat_outgoing(on);
        let start = Instant::now();
        let table = want(&pools);
        let synced = eg.sync(&table).expect("sync table ip podnet");
        took.push(start.elapsed());
        assert_eq!(synced, Synced::Replaced, "every trial changes the table");
    }
    assert_eq!(eg.sync(&want(&pools)).unwrap(), Synced::Unchanged);
    eg.sync(&None).expect("remove the table");
    took.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |p: f64| took[((p * took.len() as f64).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "{}",
        serde_json::json!({"pools": n, "trials": trials, "median_us": us(at(0.5)), "p99_us": us(at(0.99))})
    );
}
