//! A corrupt or hostile value in the datastore: the input is written as a pool, a block, an
//! affinity, a handle, a node and a Service, then the IPAM, its checks and the listings run
//! over it. Errors are fine; a panic is not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use podnet_ipam::store::sqlite::{Options, SqliteStore};
use podnet_ipam::store::Txn;
use podnet_ipam::{keys, Datastore, Ipam, PoolSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    STORE.with(|store| run(store, value));
});

thread_local! {
    /// One store file for the process, emptied before each input.
    static STORE: SqliteStore = {
        let path = std::env::temp_dir().join(format!("podnet-fuzz-store-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SqliteStore::open_or_create(&path, Options::default()).expect("a store in the temp dir")
    };
}

fn run(store: &SqliteStore, value: &str) {
    let mut clear = Txn::default();
    for kv in store.list(keys::ROOT).expect("list the store").kvs {
        clear.delete(kv.key);
    }
    store.txn(&clear).expect("empty the store");
    let pool: ipnet::Ipv4Net = "10.64.0.0/24".parse().unwrap();
    let block: ipnet::Ipv4Net = "10.64.0.0/26".parse().unwrap();
    let mut t = Txn::default();
    for key in [
        keys::pool(&pool),
        keys::block(&block),
        keys::affinity("node1", &block),
        keys::handle("podnet.c1.eth0"),
        format!("{}node1", keys::NODES),
        "/podnet/v1/services/default/web".to_string(),
    ] {
        t.put(key, value);
    }
    if store.txn(&t).is_err() {
        return;
    }
    let spec = PoolSpec::new(pool, 26, false, Default::default()).expect("a valid pool");
    let ipam = Ipam::new(store, spec);
    let _ = ipam.allocate("node1", "podnet.c2.eth0");
    let _ = ipam.release("podnet.c1.eth0");
    let _ = ipam.lookup("podnet.c1.eth0");
    let _ = ipam.gc("node1", &Default::default());
    let _ = podnet_ipam::inspect::verify(store);
    let _ = podnet_ipam::inspect::summary(store);
    let _ = podnet_ipam::nodes::list(store);
    let _ = podnet_ipam::pools::list(store);
    let _ = podnet_ipam::services::list(store);
}
