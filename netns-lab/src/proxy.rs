//! The lab's per-node service proxy (`podnet-lab proxy --node NAME`, started by `up` in each
//! node's namespace): reads the Services from the lab's datastore, as kube-proxy reads them
//! from the API server, and keeps the node's table `ip podnet-proxy` in line
//! (`podnet_proxy`): a change as the differences at once, and a full check once a quiet
//! second (which also undoes edits by hand).

use crate::state::LabState;
use anyhow::{Context, Result};
use podnet_ipam::services::{self, ServiceRecord, SERVICES};
use podnet_ipam::store::WatchBatch;
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
                endpoint_ports: p.endpoint_ports.clone(),
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
    // The first pass reads the kernel's table back; a change is then written as the
    // differences; a quiet second reads back again (and undoes edits by hand).
    let mut changed = false;
    loop {
        let records = services::list(&*store)?;
        let wanted: Vec<Service> = records.iter().filter_map(to_proxy).collect();
        let synced = if changed {
            proxy.sync(&wanted)
        } else {
            proxy.verify(&wanted)
        };
        match synced {
            Ok(Synced::Replaced) => eprintln!(
                "proxy {node}: table ip podnet-proxy written ({} Services)",
                wanted.len()
            ),
            Ok(_) => {}
            Err(e) => eprintln!("proxy {node}: {e}"),
        }
        changed = match watch.next(Duration::from_secs(1)) {
            Ok(WatchBatch::Events(events)) => !events.is_empty(),
            Ok(WatchBatch::Compacted) => true,
            Err(e) => {
                eprintln!("proxy {node}: watch the Services: {e}");
                std::thread::sleep(Duration::from_secs(1));
                watch = store.watch(SERVICES, store.revision()?)?;
                false
            }
        };
    }
}
