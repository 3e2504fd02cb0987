#![cfg(feature = "etcd")]
//! The etcd backend against a real etcd: the datastore contract, compaction, lost updates,
//! IPAM from many threads, and an unreachable etcd failing fast with "try again later". (The
//! allocator, model and many-process suites run on etcd too, in their own files.)

mod common;

use common::{cni, config, pool, Etcd};
use podnet_ipam::store::{update, Compare, StoreError, Txn, TxnOutcome, WatchBatch};
use podnet_ipam::{inspect, pod_handle, Ipam};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn put(k: &str, v: &str) -> Txn {
    let mut t = Txn::default();
    t.put(k, v);
    t
}

#[test]
fn etcd_store_keeps_the_datastore_contract() {
    let etcd = Etcd::start();
    let s = etcd.store("/t1");
    let base = s.revision().unwrap();
    let r1 = match s.txn(&put("/podnet/v1/x/a", "1")).unwrap() {
        TxnOutcome::Committed(r) => r,
        o => panic!("{o:?}"),
    };
    assert!(r1 > base);
    let mut t = put("/podnet/v1/x/a", "2");
    t.compares.push(Compare::Absent("/podnet/v1/x/a".into()));
    assert_eq!(
        s.txn(&t).unwrap(),
        TxnOutcome::Conflict,
        "create-if-absent on an existing key"
    );
    let mut t = put("/podnet/v1/x/a", "2");
    t.compares
        .push(Compare::ModRevision("/podnet/v1/x/a".into(), r1 - 1));
    assert_eq!(
        s.txn(&t).unwrap(),
        TxnOutcome::Conflict,
        "update-if-revision with a stale revision"
    );
    let mut t = put("/podnet/v1/x/a", "2");
    t.compares
        .push(Compare::ModRevision("/podnet/v1/x/a".into(), r1));
    assert!(matches!(s.txn(&t).unwrap(), TxnOutcome::Committed(_)));
    let a = s.get("/podnet/v1/x/a").unwrap().unwrap();
    assert_eq!((a.value.as_str(), a.create_revision), ("2", r1));
    for k in ["/podnet/v1/x/b", "/podnet/v1/y/a", "/podnet/v1/x0"] {
        s.txn(&put(k, "v")).unwrap();
    }
    let keys: Vec<String> = s
        .list("/podnet/v1/x/")
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, ["/podnet/v1/x/a", "/podnet/v1/x/b"]);

    // Watch from a revision sees later puts and deletes under the prefix only.
    let from = s.revision().unwrap();
    let mut w = s.watch("/podnet/v1/x/", from).unwrap();
    assert_eq!(
        w.next(Duration::from_millis(200)).unwrap(),
        WatchBatch::Events(vec![])
    );
    let mut t = put("/podnet/v1/x/c", "3");
    t.delete("/podnet/v1/x/a");
    s.txn(&t).unwrap();
    s.txn(&put("/podnet/v1/y/b", "ignored")).unwrap();
    let WatchBatch::Events(events) = w.next(Duration::from_secs(5)).unwrap() else {
        panic!("compacted?")
    };
    let mut seen: Vec<(String, Option<String>)> =
        events.into_iter().map(|e| (e.key, e.value)).collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("/podnet/v1/x/a".to_string(), None),
            ("/podnet/v1/x/c".to_string(), Some("3".to_string()))
        ]
    );

    // Another prefix is another cluster: it sees none of this one's keys.
    let other = etcd.store("/t2");
    assert!(other.list("/podnet/v1/").unwrap().kvs.is_empty());
}

#[test]
fn etcd_watch_from_a_compacted_revision_asks_for_a_relist() {
    let etcd = Etcd::start();
    let s = etcd.store("/podnet");
    let old = s.revision().unwrap();
    for i in 0..5 {
        s.txn(&put("/podnet/v1/k", &i.to_string())).unwrap();
    }
    let now = s.revision().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
            .await
            .unwrap();
        c.compact(now, None).await.unwrap();
    });
    let mut w = s.watch("/podnet/v1/", old).unwrap();
    assert_eq!(
        w.next(Duration::from_secs(5)).unwrap(),
        WatchBatch::Compacted
    );
}

#[test]
fn etcd_concurrent_updates_lose_nothing() {
    let etcd = Etcd::start();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = etcd.store("/podnet");
            std::thread::spawn(move || {
                for _ in 0..25 {
                    update::<StoreError, _>(&*store, |r| {
                        let n: u64 = r
                            .get("/podnet/v1/counter")?
                            .map_or(0, |kv| kv.value.parse().unwrap());
                        Ok(put("/podnet/v1/counter", &(n + 1).to_string()))
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        etcd.store("/podnet")
            .get("/podnet/v1/counter")
            .unwrap()
            .unwrap()
            .value,
        "200"
    );
}

#[test]
fn etcd_ipam_allocates_distinct_addresses_from_many_threads() {
    let etcd = Etcd::start();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = etcd.store("/podnet");
            std::thread::spawn(move || {
                let ipam = Ipam::new(&*store, pool("10.0.0.0/22", 28));
                (0..25)
                    .map(|i| {
                        ipam.allocate(
                            &format!("n{}", t % 3),
                            &pod_handle(&format!("t{t}-{i}"), "eth0"),
                        )
                        .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 200);
    let store = etcd.store("/podnet");
    assert!(inspect::verify(&*store).unwrap().is_empty());
    let ipam = Ipam::new(&*store, pool("10.0.0.0/22", 28));
    let report = ipam.gc("n0", &HashSet::new()).unwrap();
    assert!(report.errors.is_empty());
    assert!(!report.released.is_empty());
    assert!(inspect::verify(&*store).unwrap().is_empty());
}

#[test]
fn an_unreachable_etcd_is_try_again_later_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut conf: serde_json::Value =
        serde_json::from_str(&config("1.0.0", std::path::Path::new("/unused"), json!({}))).unwrap();
    conf["ipam"]["datastore"] = json!({"type": "etcd", "endpoints": [format!("http://127.0.0.1:{port}")], "timeoutMs": 1000});
    let start = Instant::now();
    let r = cni("ADD", "c1", &[], &conf.to_string());
    assert_eq!(r.error_code(), 11, "{}", r.stdout);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}
