//! Property test: random allocate/release/GC sequences against a simple model (a map of handle
//! to node and address). No address is ever held twice, nothing is lost, and the store stays
//! consistent, on the locked path and on the optimistic CAS path alike.

mod common;

use common::pool;
use podnet_ipam::store::sqlite::SqliteStore;
use podnet_ipam::store::Optimistic;
use podnet_ipam::{inspect, keys, pod_handle, Datastore, Error, Ipam};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

/// 16 addresses in four /30 blocks, shared by three nodes.
const POOL: &str = "10.9.0.0/28";
const SIZE: usize = 16;

#[derive(Debug, Clone)]
enum Step {
    Allocate { node: u8, handle: u8 },
    Release { handle: u8 },
    Gc { node: u8, keep: u16 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3, 0u8..20).prop_map(|(node, handle)| Step::Allocate { node, handle }),
        2 => (0u8..20).prop_map(|handle| Step::Release { handle }),
        1 => (0u8..3, any::<u16>()).prop_map(|(node, keep)| Step::Gc { node, keep }),
    ]
}

fn handle(h: u8) -> String {
    pod_handle(&format!("c{h}"), "eth0")
}

fn node(n: u8) -> String {
    format!("node{n}")
}

/// A fresh SQLite store, used under its lock or (`optimistic`) through compare-and-swap.
fn sqlite(optimistic: bool) -> (tempfile::TempDir, Box<dyn Datastore>) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        SqliteStore::open_or_create(dir.path().join("store.db"), Default::default()).unwrap();
    let store: Box<dyn Datastore> = if optimistic {
        Box::new(Optimistic(sqlite))
    } else {
        Box::new(sqlite)
    };
    (dir, store)
}

/// A fresh etcd keyspace: one etcd for the whole property run, a new prefix per case.
#[cfg(feature = "etcd")]
fn etcd() -> Box<dyn Datastore> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static ETCD: std::sync::OnceLock<common::Etcd> = std::sync::OnceLock::new();
    static CASE: AtomicUsize = AtomicUsize::new(0);
    let etcd = ETCD.get_or_init(common::Etcd::start);
    etcd.store(&format!("/model{}", CASE.fetch_add(1, Ordering::Relaxed)))
}

fn check(steps: &[Step], store: &dyn Datastore) -> Result<(), TestCaseError> {
    let ipam = Ipam::new(store, pool(POOL, 30));
    let mut model: BTreeMap<String, (String, Ipv4Addr)> = BTreeMap::new();
    for s in steps {
        match *s {
            Step::Allocate { node: n, handle: h } => {
                let (n, h) = (node(n), handle(h));
                match ipam.allocate(&n, &h) {
                    Ok(ip) => {
                        prop_assert!(!model.contains_key(&h), "second address for {}", h);
                        prop_assert!(model.values().all(|(_, a)| *a != ip), "{} given twice", ip);
                        model.insert(h, (n, ip));
                    }
                    Err(Error::AlreadyAllocated(_)) => prop_assert!(model.contains_key(&h)),
                    Err(Error::PoolExhausted { .. }) => prop_assert_eq!(model.len(), SIZE),
                    Err(e) => return Err(TestCaseError::fail(format!("allocate: {e}"))),
                }
            }
            Step::Release { handle: h } => {
                let h = handle(h);
                let freed = ipam.release(&h).unwrap();
                prop_assert_eq!(freed, model.remove(&h).map(|(_, ip)| ip));
            }
            Step::Gc { node: n, keep } => {
                let n = node(n);
                let valid: HashSet<String> = (0..16u8)
                    .filter(|i| keep & (1 << i) != 0)
                    .map(handle)
                    .collect();
                let report = ipam.gc(&n, &valid).unwrap();
                prop_assert!(report.errors.is_empty());
                let expect: HashSet<String> = model
                    .iter()
                    .filter(|(h, (owner, _))| *owner == n && !valid.contains(*h))
                    .map(|(h, _)| h.clone())
                    .collect();
                let got: HashSet<String> = report.released.iter().map(|(h, _)| h.clone()).collect();
                prop_assert_eq!(&got, &expect);
                model.retain(|h, _| !expect.contains(h));
            }
        }
        let problems = inspect::verify(store).unwrap();
        prop_assert!(problems.is_empty(), "{:?}", problems);
        let stored: BTreeMap<String, Ipv4Addr> = store
            .list(keys::HANDLES)
            .unwrap()
            .kvs
            .iter()
            .map(|kv| {
                let h: podnet_ipam::model::HandleRecord = serde_json::from_str(&kv.value).unwrap();
                (h.id, h.address)
            })
            .collect();
        let modelled: BTreeMap<String, Ipv4Addr> =
            model.iter().map(|(h, (_, ip))| (h.clone(), *ip)).collect();
        prop_assert_eq!(stored, modelled);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn allocator_matches_the_model(steps in prop::collection::vec(step(), 1..80)) {
        let (_dir, store) = sqlite(false);
        check(&steps, &*store)?;
    }

    #[test]
    fn optimistic_allocator_matches_the_model(steps in prop::collection::vec(step(), 1..80)) {
        let (_dir, store) = sqlite(true);
        check(&steps, &*store)?;
    }
}

#[cfg(feature = "etcd")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn etcd_allocator_matches_the_model(steps in prop::collection::vec(step(), 1..60)) {
        let store = etcd();
        check(&steps, &*store)?;
    }
}
