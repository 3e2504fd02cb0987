//! The lab's per-node service proxy (`podnet-lab proxy --node NAME`, started by `up` in each
//! node's namespace): reads the Services from the lab's datastore, as kube-proxy reads them
//! from the API server, and keeps the node's table `ip podnet-proxy` in line
//! (`podnet_proxy`), on every change and once a second (which also undoes edits by hand).

use crate::state::LabState;
use anyhow::{Context, Result};
use podnet_ipam::services::{self, ServiceRecord, SERVICES};
use podnet_netlink::nft::Synced;
use podnet_proxy::sync::Proxy;
use podnet_proxy::{Endpoint, Protocol, Service, ServicePort};
use std::time::Duration;

/// The proxy's view of a stored Service; `None` for a headless one (nothing to program).
pub fn to_proxy(r: &ServiceRecord) -> Option<Service> {
    let cluster_ip = r.cluster_ip?;
    Some(Service {
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        cluster_ip,
        ports: r
            .ports
            .iter()
            .map(|p| ServicePort {
                name: p.name.clone(),
                protocol: if p.protocol == "UDP" {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                port: p.port,
                target_port: p.target_port,
            })
            .collect(),
        endpoints: r.endpoints.iter().map(|&ip| Endpoint { ip }).collect(),
    })
}

/// Runs until killed.
pub fn run(lab: &LabState, node: &str) -> Result<()> {
    let store = lab
        .datastore_config()
        .open()
        .context("open the lab's datastore")?;
    let mut proxy = Proxy::open()?;
    let mut watch = store.watch(SERVICES, store.revision()?)?;
    loop {
        let records = services::list(&*store)?;
        let wanted: Vec<Service> = records.iter().filter_map(to_proxy).collect();
        match proxy.sync(&wanted) {
            Ok(Synced::Replaced) => eprintln!(
                "proxy {node}: table ip podnet-proxy written ({} Services)",
                wanted.len()
            ),
            Ok(_) => {}
            Err(e) => eprintln!("proxy {node}: {e}"),
        }
        // A change wakes the loop at once; a quiet second resyncs anyway.
        if let Err(e) = watch.next(Duration::from_secs(1)) {
            eprintln!("proxy {node}: watch the Services: {e}");
            std::thread::sleep(Duration::from_secs(1));
            watch = store.watch(SERVICES, store.revision()?)?;
        }
    }
}
