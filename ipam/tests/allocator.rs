//! IPAM behaviour: order, claiming, pinning, borrowing, release, GC. Each case runs on both
//! backends: the embedded SQLite store (serialised under its lock) and a real etcd (optimistic
//! compare-and-swap), through the `backends!` wrappers at the end.

mod common;

use common::{net, pool, seed_pool};
use podnet_ipam::store::Optimistic;
use podnet_ipam::{
    inspect, pod_handle, pod_handles, tunnel_handle, Datastore, Error, Ipam, PoolSpec,
};
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn seed_layout_tunnel_gets_dot_zero_and_the_first_pod_dot_one(s: &dyn Datastore) {
    let ipam = Ipam::new(s, seed_pool());
    for (node, tunnel) in [
        ("sung-ubuntu01", "10.233.95.0"),
        ("sung-ubuntu02", "10.233.91.0"),
        ("sung-ubuntu03", "10.233.112.0"),
        ("sung-ubuntu04", "10.233.99.0"),
        ("sung-ubuntu05", "10.233.78.0"),
    ] {
        assert_eq!(ipam.allocate_tunnel(node).unwrap(), ip(tunnel), "{node}");
    }
    assert_eq!(
        ipam.allocate("sung-ubuntu04", &pod_handle("ubuntu-test", "eth0"))
            .unwrap(),
        ip("10.233.99.1")
    );
    assert_eq!(
        ipam.allocate("sung-ubuntu04", &pod_handle("other", "eth0"))
            .unwrap(),
        ip("10.233.99.2")
    );
    // The tunnel address is stable across agent restarts.
    assert_eq!(
        ipam.allocate_tunnel("sung-ubuntu04").unwrap(),
        ip("10.233.99.0")
    );
    assert!(inspect::verify(s).unwrap().is_empty());
    let summary = inspect::summary(s).unwrap();
    assert_eq!(summary.pools[0].capacity_blocks, 64);
    assert_eq!(summary.pools[0].claimed_blocks, 5);
}

fn fills_ordinal_zero_first_and_reuses_the_lowest_hole(s: &dyn Datastore) {
    let ipam = Ipam::new(s, pool("10.0.0.0/16", 28));
    let got: Vec<_> = (0..3)
        .map(|i| ipam.allocate("n1", &format!("h{i}")).unwrap())
        .collect();
    assert_eq!(got, [ip("10.0.0.0"), ip("10.0.0.1"), ip("10.0.0.2")]);
    assert_eq!(ipam.release("h1").unwrap(), Some(ip("10.0.0.1")));
    assert_eq!(ipam.allocate("n1", "h3").unwrap(), ip("10.0.0.1"));
}

fn claims_a_new_block_when_full_and_nodes_get_their_own_blocks(s: &dyn Datastore) {
    let ipam = Ipam::new(s, pool("10.0.0.0/24", 30));
    let n1: Vec<_> = (0..5)
        .map(|i| ipam.allocate("n1", &format!("a{i}")).unwrap())
        .collect();
    assert_eq!(n1[3], ip("10.0.0.3"));
    assert_eq!(
        n1[4],
        ip("10.0.0.4"),
        "the fifth address comes from a second block"
    );
    assert_eq!(
        ipam.allocate("n2", "b0").unwrap(),
        ip("10.0.0.8"),
        "n2 claims the next free block"
    );
    let blocks = inspect::summary(s).unwrap().blocks;
    let owners: Vec<_> = blocks
        .iter()
        .map(|b| (b.cidr.to_string(), b.node.clone().unwrap()))
        .collect();
    assert_eq!(
        owners,
        [
            ("10.0.0.0/30".to_string(), "n1".to_string()),
            ("10.0.0.4/30".into(), "n1".into()),
            ("10.0.0.8/30".into(), "n2".into())
        ]
    );
}

fn pinned_blocks_come_first_and_are_never_claimed_by_others(s: &dyn Datastore) {
    let pins = BTreeMap::from([("n2".to_string(), vec![net("10.0.0.0/30")])]);
    let ipam = Ipam::new(
        s,
        PoolSpec::new(net("10.0.0.0/28"), 30, true, pins).unwrap(),
    );
    assert_eq!(
        ipam.allocate("n1", "a").unwrap(),
        ip("10.0.0.4"),
        "n1 skips n2's pinned block"
    );
    assert_eq!(
        ipam.allocate("n2", "b").unwrap(),
        ip("10.0.0.0"),
        "n2 starts in its pinned block"
    );
}

fn borrows_from_other_nodes_unless_strict(s: &dyn Datastore) {
    // One pool each way, side by side in the same store.
    for (strict, cidr, first) in [
        (false, "10.0.0.0/29", "10.0.0.0/30"),
        (true, "10.1.0.0/29", "10.1.0.0/30"),
    ] {
        let spec = PoolSpec::new(net(cidr), 30, strict, BTreeMap::new()).unwrap();
        let ipam = Ipam::new(s, spec);
        let h = |n: &str, i: u32| format!("{n}{i}-{strict}");
        ipam.allocate("n1", &h("a", 0)).unwrap();
        ipam.allocate("n2", &h("b", 0)).unwrap(); // both blocks now claimed
        for i in 1..4 {
            ipam.allocate("n2", &h("b", i)).unwrap();
        }
        // n2's block is full and no block is left to claim.
        let r = ipam.allocate("n2", &h("b", 4));
        if strict {
            match r {
                Err(Error::PoolExhausted {
                    pool,
                    node,
                    strict: true,
                }) => {
                    assert_eq!((pool, node.as_str()), (net(cidr), "n2"));
                }
                other => panic!("strict pool should be exhausted for n2: {other:?}"),
            }
            assert!(!ipam.has_room("n2").unwrap());
            assert!(ipam.has_room("n1").unwrap());
        } else {
            assert_eq!(r.unwrap(), ip("10.0.0.1"), "borrowed from n1's block");
            let held = ipam.lookup(&h("b", 4)).unwrap().unwrap();
            assert_eq!((held.node.as_str(), held.block), ("n2", net(first)));
        }
    }
}

fn exhausted_pool_names_the_pool_and_allocates_nothing(s: &dyn Datastore) {
    let ipam = Ipam::new(s, pool("10.0.0.0/30", 30));
    for i in 0..4 {
        ipam.allocate("n", &format!("h{i}")).unwrap();
    }
    let rev = s.revision().unwrap();
    let e = ipam.allocate("n", "h4").unwrap_err();
    assert!(e.to_string().contains("10.0.0.0/30"), "{e}");
    assert!(ipam.lookup("h4").unwrap().is_none());
    assert_eq!(s.revision().unwrap(), rev, "nothing was written");
}

fn a_handle_holds_one_address_and_release_is_idempotent(s: &dyn Datastore) {
    let ipam = Ipam::new(s, pool("10.0.0.0/24", 26));
    ipam.allocate("n", "h").unwrap();
    assert!(matches!(
        ipam.allocate("n", "h"),
        Err(Error::AlreadyAllocated(_))
    ));
    assert_eq!(ipam.release("h").unwrap(), Some(ip("10.0.0.0")));
    assert_eq!(ipam.release("h").unwrap(), None);
    assert_eq!(ipam.release("never-existed").unwrap(), None);
}

fn a_stale_release_cannot_free_an_address_given_out_again(s: &dyn Datastore) {
    let ipam = Ipam::new(s, pool("10.0.0.0/24", 26));
    ipam.allocate("n", "old").unwrap();
    let stale = ipam.lookup("old").unwrap().unwrap();
    ipam.release("old").unwrap();
    assert_eq!(ipam.allocate("n", "new").unwrap(), stale.address);
    // Someone replays the old handle record (a crashed, retried DEL): the new holder keeps it.
    let mut t = podnet_ipam::store::Txn::default();
    t.put(
        podnet_ipam::keys::handle("old"),
        serde_json::to_string(&stale).unwrap(),
    );
    s.txn(&t).unwrap();
    assert_eq!(
        ipam.release("old").unwrap(),
        None,
        "stale sequence number frees nothing"
    );
    assert_eq!(ipam.lookup("new").unwrap().unwrap().address, stale.address);
    assert!(inspect::verify(s).unwrap().is_empty());
}

fn gc_frees_only_this_nodes_invalid_pod_handles(s: &dyn Datastore) {
    let ipam = Ipam::new(s, pool("10.0.0.0/24", 28));
    ipam.allocate_tunnel("n1").unwrap();
    for c in ["keep", "drop1", "drop2"] {
        ipam.allocate("n1", &pod_handle(c, "eth0")).unwrap();
    }
    ipam.allocate("n2", &pod_handle("elsewhere", "eth0"))
        .unwrap();
    let valid = HashSet::from([pod_handle("keep", "eth0")]);
    let report = ipam.gc("n1", &valid).unwrap();
    let mut released: Vec<_> = report.released.iter().map(|(h, _)| h.clone()).collect();
    released.sort();
    assert_eq!(
        released,
        [pod_handle("drop1", "eth0"), pod_handle("drop2", "eth0")]
    );
    assert!(report.errors.is_empty());
    for kept in [
        tunnel_handle("n1"),
        pod_handle("keep", "eth0"),
        pod_handle("elsewhere", "eth0"),
    ] {
        assert!(ipam.lookup(&kept).unwrap().is_some(), "{kept}");
    }
    // A pool's GC leaves other pools' handles alone.
    let other = Ipam::new(s, pool("10.1.0.0/24", 28));
    other
        .allocate("n1", &pod_handle("other-pool", "eth0"))
        .unwrap();
    ipam.gc("n1", &valid).unwrap();
    assert!(other
        .lookup(&pod_handle("other-pool", "eth0"))
        .unwrap()
        .is_some());
    // What is left, every pool and node, tunnels not counted.
    assert_eq!(
        pod_handles(s).unwrap(),
        [
            pod_handle("elsewhere", "eth0"),
            pod_handle("keep", "eth0"),
            pod_handle("other-pool", "eth0")
        ]
    );
}

fn conflicting_pool_configs_are_refused(s: &dyn Datastore) {
    Ipam::new(s, pool("10.0.0.0/16", 26))
        .allocate("n", "a")
        .unwrap();
    let e = Ipam::new(s, pool("10.0.0.0/16", 24))
        .allocate("n", "b")
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::PoolMismatch {
                stored: 26,
                wanted: 24,
                ..
            }
        ),
        "{e:?}"
    );
    let e = Ipam::new(s, pool("10.0.128.0/17", 26))
        .allocate("n", "c")
        .unwrap_err();
    assert!(matches!(e, Error::PoolOverlap { .. }), "{e:?}");
    let pins = |n: &str| BTreeMap::from([(n.to_string(), vec![net("10.0.5.0/26")])]);
    Ipam::new(
        s,
        PoolSpec::new(net("10.0.0.0/16"), 26, false, pins("n1")).unwrap(),
    )
    .allocate("n1", "d")
    .unwrap();
    let e = Ipam::new(
        s,
        PoolSpec::new(net("10.0.0.0/16"), 26, false, pins("n2")).unwrap(),
    )
    .allocate("n2", "e")
    .unwrap_err();
    assert!(
        matches!(e, Error::InvalidPool(_) | Error::BadSetting { .. }),
        "a block pinned to two nodes: {e:?}"
    );
}

fn bad_node_names_are_refused(s: &dyn Datastore) {
    let ipam = Ipam::new(s, pool("10.0.0.0/16", 26));
    for bad in ["", "a/b", "a b"] {
        assert!(
            matches!(ipam.allocate(bad, "h"), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
}

/// Threads allocating at once through optimistic CAS (the etcd path) never share an address.
#[test]
fn optimistic_concurrent_allocation_hands_out_distinct_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let s = Optimistic(
                    podnet_ipam::store::sqlite::SqliteStore::open_or_create(
                        &path,
                        Default::default(),
                    )
                    .unwrap(),
                );
                let ipam = Ipam::new(&s, pool("10.0.0.0/22", 28));
                (0..25)
                    .map(|i| {
                        ipam.allocate(&format!("n{}", t % 3), &format!("t{t}-{i}"))
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<Ipv4Addr> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 200);
    let s = podnet_ipam::store::sqlite::SqliteStore::open(&path, Default::default()).unwrap();
    assert!(inspect::verify(&s).unwrap().is_empty());
}

fn ensure_block_claims_once_and_release_node_frees_its_blocks(s: &dyn Datastore) {
    let ipam = Ipam::new(s, seed_pool());
    let b = ipam.ensure_block("sung-ubuntu05").unwrap();
    assert_eq!(b, net("10.233.78.0/24"), "the pinned block");
    assert_eq!(ipam.ensure_block("sung-ubuntu05").unwrap(), b, "idempotent");
    assert!(
        ipam.lookup(&tunnel_handle("sung-ubuntu05"))
            .unwrap()
            .is_none(),
        "no address taken"
    );
    assert_eq!(
        ipam.allocate_tunnel("sung-ubuntu05").unwrap(),
        ip("10.233.78.0")
    );
    let other = Ipam::new(s, pool("10.9.0.0/29", 30));
    let first = other.ensure_block("x").unwrap();
    other.allocate("y", "pod-on-y").unwrap();
    assert_ne!(other.ensure_block("y").unwrap(), first);

    // sung-ubuntu05 leaves: its only block is empty once the tunnel address goes, so it is deleted.
    let released = ipam.release_node("sung-ubuntu05").unwrap();
    assert_eq!(released, [b]);
    assert!(ipam
        .lookup(&tunnel_handle("sung-ubuntu05"))
        .unwrap()
        .is_none());
    assert!(inspect::summary(s)
        .unwrap()
        .blocks
        .iter()
        .all(|x| x.cidr != b));
    // A node leaving with pods still in its block: the block stays, with no node.
    ipam.allocate("sung-ubuntu04", "pod").unwrap();
    ipam.release_node("sung-ubuntu04").unwrap();
    let left = inspect::summary(s).unwrap().blocks;
    let b04 = left
        .iter()
        .find(|x| x.cidr == net("10.233.99.0/24"))
        .unwrap();
    assert_eq!((b04.node.as_deref(), b04.used), (None, 1));
    assert!(inspect::verify(s).unwrap().is_empty());
}

/// Runs each case on a fresh SQLite store and on a fresh etcd.
macro_rules! backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let s = super::common::store(&dir);
                    super::$case(&s);
                }
            )*
        }
        #[cfg(feature = "etcd")]
        mod etcd {
            $(
                #[test]
                fn $case() {
                    let etcd = super::common::Etcd::start();
                    let s = etcd.store("/podnet");
                    super::$case(&*s);
                }
            )*
        }
    };
}

backends!(
    seed_layout_tunnel_gets_dot_zero_and_the_first_pod_dot_one,
    fills_ordinal_zero_first_and_reuses_the_lowest_hole,
    claims_a_new_block_when_full_and_nodes_get_their_own_blocks,
    pinned_blocks_come_first_and_are_never_claimed_by_others,
    borrows_from_other_nodes_unless_strict,
    exhausted_pool_names_the_pool_and_allocates_nothing,
    a_handle_holds_one_address_and_release_is_idempotent,
    a_stale_release_cannot_free_an_address_given_out_again,
    gc_frees_only_this_nodes_invalid_pod_handles,
    conflicting_pool_configs_are_refused,
    bad_node_names_are_refused,
    ensure_block_claims_once_and_release_node_frees_its_blocks,
);
