//! The node-local DNS (kubespray's nodelocaldns at 169.254.25.10), one per node
//! (`podnet-lab dns --node NAME`): the cluster's names by the Kubernetes DNS specification,
//! from the Services in the datastore and the lab's pods, the rest forwarded to the outside
//! world's resolver.
//!
//! ```text
//! <svc>.<ns>.svc.cluster.local            the ClusterIP (a headless Service: its endpoints)
//! <a-b-c-d>.<ns>.pod.cluster.local        a.b.c.d, when a pod of <ns> has it
//! any other name in cluster.local          NXDOMAIN
//! anything else                            the outside resolver (SERVFAIL without one)
//! ```
//! The address lives on the node's `lo`: pods reach it through their default route (the node),
//! so no dummy device is needed (this host has none).

use crate::dns::{self, Authority, Lookup};
use crate::state::LabState;
use anyhow::{Context, Result};
use podnet_ipam::services::{self, ServiceRecord};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// kubespray's node-local DNS address.
pub const NODE_LOCAL_DNS: Ipv4Addr = Ipv4Addr::new(169, 254, 25, 10);
pub const DOMAIN: &str = "cluster.local";

/// The cluster's names at one moment.
#[derive(Debug, Clone, Default)]
pub struct ClusterZone {
    pub services: Vec<ServiceRecord>,
    /// Each pod's namespace and address.
    pub pods: Vec<(String, Ipv4Addr)>,
}

impl Authority for ClusterZone {
    fn lookup(&self, name: &str) -> Lookup {
        let name = dns::normal(name);
        let Some(local) = name.strip_suffix(DOMAIN).map(|n| n.trim_end_matches('.')) else {
            return Lookup::Elsewhere;
        };
        let labels: Vec<&str> = local.split('.').collect();
        match labels.as_slice() {
            [svc, ns, "svc"] => match self
                .services
                .iter()
                .find(|s| s.name == *svc && s.namespace == *ns)
            {
                Some(s) => Lookup::Addresses(match s.cluster_ip {
                    Some(ip) => vec![ip],
                    None => s.endpoints.clone(),
                }),
                None => Lookup::NxDomain,
            },
            [dashed, ns, "pod"] => {
                let ip: Option<Ipv4Addr> = dashed.replace('-', ".").parse().ok();
                match ip.filter(|ip| self.pods.iter().any(|(n, p)| n == ns && p == ip)) {
                    Some(ip) => Lookup::Addresses(vec![ip]),
                    None => Lookup::NxDomain,
                }
            }
            _ => Lookup::NxDomain,
        }
    }
}

/// The zone from the datastore and the lab's state.
fn current(lab_name: &str, store: &dyn podnet_ipam::Datastore) -> Result<ClusterZone> {
    let lab = LabState::load(lab_name)?;
    Ok(ClusterZone {
        services: services::list(store)?,
        pods: lab
            .pods
            .iter()
            .filter_map(|p| Some((p.namespace.clone(), p.ip()?.parse().ok()?)))
            .collect(),
    })
}

/// A zone kept fresh (every half second) behind a lock.
struct Live(Arc<RwLock<ClusterZone>>);

impl Authority for Live {
    fn lookup(&self, name: &str) -> Lookup {
        self.0.read().expect("zone lock").lookup(name)
    }
}

/// Runs until killed.
pub fn run(lab: &LabState, node: &str) -> Result<()> {
    let store = lab
        .datastore_config()
        .open()
        .context("open the lab's datastore")?;
    let zone = Arc::new(RwLock::new(current(&lab.name, &*store)?));
    let (fresh, name, node) = (zone.clone(), lab.name.clone(), node.to_string());
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        match current(&name, &*store) {
            Ok(z) => *fresh.write().expect("zone lock") = z,
            Err(e) => eprintln!("dns {node}: refresh the cluster's names: {e:#}"),
        }
    });
    let upstream = lab
        .scenario
        .outside
        .as_ref()
        .and_then(|o| o.resolver)
        .map(|ip| SocketAddr::from((ip, 53)));
    dns::serve((NODE_LOCAL_DNS, 53).into(), &Live(zone), upstream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ClusterZone {
        let svc = |name: &str, ip: Option<&str>, eps: &[&str]| ServiceRecord {
            namespace: "default".into(),
            name: name.into(),
            cluster_ip: ip.map(|i| i.parse().unwrap()),
            ports: vec![],
            endpoints: eps.iter().map(|e| e.parse().unwrap()).collect(),
            selector: Default::default(),
            created: 0,
        };
        ClusterZone {
            services: vec![
                svc("web", Some("10.233.0.10"), &["10.233.99.2"]),
                svc("db", None, &["10.233.78.1", "10.233.78.2"]),
            ],
            pods: vec![("default".into(), "10.233.99.1".parse().unwrap())],
        }
    }

    fn ips(v: &[&str]) -> Lookup {
        Lookup::Addresses(v.iter().map(|i| i.parse().unwrap()).collect())
    }

    #[test]
    fn cluster_names_follow_the_kubernetes_dns_spec() {
        let z = zone();
        assert_eq!(
            z.lookup("web.default.svc.cluster.local."),
            ips(&["10.233.0.10"])
        );
        assert_eq!(
            z.lookup("WEB.default.svc.cluster.local"),
            ips(&["10.233.0.10"])
        );
        assert_eq!(
            z.lookup("db.default.svc.cluster.local"),
            ips(&["10.233.78.1", "10.233.78.2"]),
            "headless: the endpoints"
        );
        assert_eq!(
            z.lookup("10-233-99-1.default.pod.cluster.local"),
            ips(&["10.233.99.1"])
        );
        assert_eq!(
            z.lookup("10-233-99-9.default.pod.cluster.local"),
            Lookup::NxDomain
        );
        assert_eq!(z.lookup("web.other.svc.cluster.local"), Lookup::NxDomain);
        assert_eq!(
            z.lookup("nosuch.default.svc.cluster.local"),
            Lookup::NxDomain
        );
        assert_eq!(z.lookup("cluster.local"), Lookup::NxDomain);
        assert_eq!(z.lookup("www.example.com"), Lookup::Elsewhere);
    }
}
