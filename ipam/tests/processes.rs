//! Many `podnet-ipam` processes against one store at once, and processes killed with SIGKILL
//! mid-allocation: no address is ever handed out twice, and nothing is lost or left broken.

mod common;

use common::{cni, command, config, pod_handles};
use podnet_ipam::store::sqlite::{Options, SqliteStore};
use podnet_ipam::{inspect, Ipam, PoolSpec};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

const WORKERS: usize = 64;
const PER_WORKER: usize = 20;

/// 64 workers each exec ADD 20 times, all at once, against one store: 1,280 distinct
/// addresses. Then all DEL at once: no pod handle is left. On both backends.
#[test]
fn sixty_four_processes_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let datastore = json!({"type": "sqlite", "path": db});
    many_processes(datastore, || {
        Box::new(SqliteStore::open(&db, Options::default()).unwrap())
    });
}

#[cfg(feature = "etcd")]
#[test]
fn sixty_four_processes_on_etcd_never_share_an_address() {
    let etcd = common::Etcd::start();
    let datastore = serde_json::to_value(etcd.config("/podnet")).unwrap();
    many_processes(datastore, || etcd.store("/podnet"));
}

fn many_processes(
    datastore: serde_json::Value,
    open: impl Fn() -> Box<dyn podnet_ipam::Datastore>,
) {
    // The store is there before the first call, as a node's agent makes it.
    let store = open();
    let conf = config(
        "1.0.0",
        std::path::Path::new("/unused"),
        json!({"pool": "10.100.0.0/16", "blockSize": 26, "datastore": datastore, "nodename": ""}),
    );
    let run_all = |verb: &'static str| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let conf = conf.clone();
                std::thread::spawn(move || {
                    let node = if w % 2 == 0 { "node-a" } else { "node-b" };
                    (0..PER_WORKER)
                        .map(|i| {
                            let id = format!("w{w}-{i}");
                            let r = cni(verb, &id, &[("NODENAME", node)], &conf);
                            assert_eq!(r.code, 0, "{verb} {id}: {} {}", r.stdout, r.stderr);
                            (id, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    };
    let added = run_all("ADD");
    let addresses: HashSet<String> = added.iter().map(|(_, r)| r.address()).collect();
    assert_eq!(
        addresses.len(),
        WORKERS * PER_WORKER,
        "an address was handed out twice"
    );
    assert!(inspect::verify(&*store).unwrap().is_empty());
    // Both nodes allocated from their own blocks (nodename came from NODENAME).
    let nodes: HashSet<_> = inspect::summary(&*store)
        .unwrap()
        .blocks
        .into_iter()
        .filter_map(|b| b.node)
        .collect();
    assert_eq!(
        nodes,
        HashSet::from(["node-a".to_string(), "node-b".to_string()])
    );
    run_all("DEL");
    let handles = store.list(podnet_ipam::keys::HANDLES).unwrap().kvs;
    assert!(handles.is_empty(), "{} handles left", handles.len());
    assert!(inspect::verify(&*store).unwrap().is_empty());
}

/// A tiny deterministic generator, seeded from the clock and printed, for kill timings.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Processes are killed with SIGKILL at random moments while allocating. Afterwards the store
/// opens and is intact, every ADD that answered holds exactly its address, and GC (given the
/// answered ones as the valid attachments) returns the rest.
#[test]
fn processes_killed_mid_allocation_leave_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let conf = config(
        "1.1.0",
        &db,
        json!({"pool": "10.100.0.0/16", "blockSize": 28}),
    );
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill timing seed {seed}");
    let mut rng = Rng(seed);
    let mut answered: HashMap<String, String> = HashMap::new();
    let mut killed = 0;
    for wave in 0..25 {
        let mut children = Vec::new();
        for i in 0..16 {
            let id = format!("k{wave}-{i}");
            let mut child = command("ADD", &id, &[]).spawn().unwrap();
            let _ = child.stdin.take().unwrap().write_all(conf.as_bytes());
            let kill_at = Instant::now() + Duration::from_micros(rng.next() % 6_000);
            children.push((id, child, kill_at));
        }
        for (id, mut child, kill_at) in children {
            std::thread::sleep(kill_at.saturating_duration_since(Instant::now()));
            let _ = child.kill(); // SIGKILL; fails only if it already exited
            let out = child.wait_with_output().unwrap();
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                answered.insert(id, v["ips"][0]["address"].as_str().unwrap().to_string());
            } else {
                killed += 1;
            }
        }
    }
    eprintln!("{} answered, {killed} killed", answered.len());
    assert!(
        killed > 0,
        "no process was killed mid-way; the test proved nothing"
    );

    let store = SqliteStore::open(&db, Options::default()).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert!(inspect::verify(&store).unwrap().is_empty());
    let pool = PoolSpec::new(
        "10.100.0.0/16".parse().unwrap(),
        28,
        false,
        Default::default(),
    )
    .unwrap();
    let ipam = Ipam::new(&store, pool);
    for (id, addr) in &answered {
        let held = ipam
            .lookup(&format!("podnet.{id}.eth0"))
            .unwrap()
            .expect("an answered ADD is kept");
        assert_eq!(format!("{}/32", held.address), *addr, "{id}");
    }
    // GC through the plugin, with the answered attachments as the valid ones.
    let valid: Vec<_> = answered
        .keys()
        .map(|id| json!({"containerID": id, "ifname": "eth0"}))
        .collect();
    let mut gc: serde_json::Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = json!(valid);
    let r = cni(
        "GC",
        "",
        &[("CNI_CONTAINERID", ""), ("CNI_IFNAME", "")],
        &gc.to_string(),
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    let mut left = pod_handles(&db);
    left.sort();
    let mut want: Vec<_> = answered
        .keys()
        .map(|id| format!("podnet.{id}.eth0"))
        .collect();
    want.sort();
    assert_eq!(left, want);
    assert!(inspect::verify(&store).unwrap().is_empty());
}
