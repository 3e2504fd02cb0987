//! Helpers shared by the IPAM integration tests.
#![allow(dead_code)]

use ipnet::Ipv4Net;
use podnet_ipam::store::sqlite::{Options, SqliteStore};
use podnet_ipam::PoolSpec;
use std::collections::BTreeMap;

pub fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

pub fn store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("store.db"), Options::default()).unwrap()
}

pub fn pool(cidr: &str, block: u8) -> PoolSpec {
    PoolSpec::new(net(cidr), block, false, BTreeMap::new()).unwrap()
}

/// The seed's pool with every node's block pinned as in the seed.
pub fn seed_pool() -> PoolSpec {
    let pins = [
        ("sung-ubuntu01", "10.233.95.0/24"),
        ("sung-ubuntu02", "10.233.91.0/24"),
        ("sung-ubuntu03", "10.233.112.0/24"),
        ("sung-ubuntu04", "10.233.99.0/24"),
        ("sung-ubuntu05", "10.233.78.0/24"),
    ];
    let node_blocks: BTreeMap<String, Vec<Ipv4Net>> = pins
        .iter()
        .map(|(n, b)| (n.to_string(), vec![net(b)]))
        .collect();
    PoolSpec::new(net("10.233.64.0/18"), 24, false, node_blocks).unwrap()
}
