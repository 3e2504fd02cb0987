//! Not shipped: registers a node and claims its block, for `cargo xtask bench agent` on
//! backends the bench itself does not link (etcd). Prints the claimed block and the wall-clock
//! time (ns since the epoch) just before the node record is written, which is what the
//! agents then react to.
//!
//! Usage: `register_node 'DATASTORE-JSON' POOL NAME IP`

use podnet_ipam::store::Txn;
use podnet_ipam::{DatastoreConfig, Ipam, PoolSpec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [conf, pool, name, ip] = args.as_slice() else {
        eprintln!("usage: register_node 'DATASTORE-JSON' POOL NAME IP");
        std::process::exit(2);
    };
    let conf: DatastoreConfig = serde_json::from_str(conf).expect("a datastore config");
    let store = conf.open_or_create().expect("open the datastore");
    let pool = PoolSpec::new(
        pool.parse().expect("a pool CIDR"),
        24,
        false,
        Default::default(),
    )
    .unwrap();
    let block = Ipam::new(&*store, pool)
        .ensure_block(name)
        .expect("claim a block");
    let record =
        serde_json::json!({"name": name, "ip": ip, "prefixLen": 16, "encapsulation": "none"});
    let mut txn = Txn::default();
    txn.put(format!("/podnet/v1/nodes/{name}"), record.to_string());
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    store.txn(&txn).expect("register the node");
    println!("{block} {start}");
}
