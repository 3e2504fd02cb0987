//! What every address in a lab is: node uplinks, tunnel devices, pods. Read from the lab state
//! and the datastore, so views can say "sung-ubuntu05 (tunl0)" instead of a bare address.

use crate::state::LabState;
use podnet_ipam::nodes::NodeRecord;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub struct Inventory {
    /// Address -> what it is.
    pub names: BTreeMap<Ipv4Addr, String>,
    /// Node name -> its uplink address (the lab's /etc/hosts).
    pub hosts: BTreeMap<String, Ipv4Addr>,
    pub records: Vec<NodeRecord>,
}

impl Inventory {
    pub fn read(lab: &LabState) -> Inventory {
        let records = lab
            .with_store(|s| podnet_ipam::nodes::list(s).ok())
            .ok()
            .flatten()
            .map(|(r, _)| r)
            .unwrap_or_default();
        let tunnel = match lab.encapsulation.as_str() {
            "ipip" => "tunl0",
            "vxlan" => "vxlan.calico",
            _ => "tunnel",
        };
        let mut names = BTreeMap::new();
        let mut hosts = BTreeMap::new();
        for n in &lab.scenario.nodes {
            names.insert(n.ip, format!("{} (ens3)", n.name));
            hosts.insert(n.name.clone(), n.ip);
        }
        for r in &records {
            if let Some(t) = r.tunnel_ip {
                names.insert(t, format!("{} ({tunnel})", r.name));
            }
        }
        for p in &lab.pods {
            if let Some(ip) = p.ip().and_then(|i| i.parse().ok()) {
                names.insert(ip, format!("pod {}", p.name));
            }
        }
        names.insert(lab.scenario.gateway, "fabric gateway".into());
        if let Some(o) = &lab.scenario.outside {
            let (near, far) = o.transit_ends();
            names.insert(near, "fabric gateway (wan0)".into());
            names.insert(far, "upstream router (provider, eth0)".into());
            names.insert(o.router.addr(), "upstream router (provider, eth1)".into());
            for h in &o.hosts {
                names.insert(h.ip, format!("{} (outside, RFC 5737 stand-in)", h.name));
            }
            if let Some(r) = o.resolver {
                names.insert(r, "resolver (outside DNS, RFC 5737 stand-in)".into());
            }
        }
        for r in &lab.scenario.routers {
            for (net, ip) in &r.interfaces {
                names.insert(
                    *ip,
                    format!("router {} ({})", r.name, crate::routers::interface(net)),
                );
            }
        }
        Inventory {
            names,
            hosts,
            records,
        }
    }

    pub fn describe(&self, ip: Ipv4Addr) -> &str {
        self.names.get(&ip).map_or("", |s| s.as_str())
    }

    /// The node name for an uplink address (`route` shows names, as with /etc/hosts).
    pub fn host_of(&self, ip: Ipv4Addr) -> Option<&str> {
        self.hosts
            .iter()
            .find(|(_, a)| **a == ip)
            .map(|(n, _)| n.as_str())
    }
}
