//! The pod's wiring, Calico style: a veth pair whose pod end holds the /32 and routes
//! everything to 169.254.1.1, an address nobody has, which the host end answers by proxy
//! ARP; the node routes the /32 back down the host end.
//!
//! [`PodPlan`] is decided before anything is touched; [`setup`] and [`teardown`] apply it.

use crate::error::{nl, Error};
use crate::naming::{GATEWAY, HOST_MAC};
use ipnet::Ipv4Net;
use podnet_netlink::{
    sysctl, Link, Netlink, Netns, RouteKind, RouteSpec, VethSpec, ROUTE_PROTOCOL,
};

/// Everything ADD makes for one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    pub host_name: String,
    pub ifname: String,
    pub alias: String,
    pub mtu: u32,
    /// The pod's address, always a /32.
    pub address: Ipv4Net,
}

impl PodPlan {
    /// `169.254.1.1 dev eth0 scope link` and `default via 169.254.1.1 dev eth0`.
    pub fn pod_routes(&self, pod_index: u32) -> [RouteSpec; 2] {
        let gateway = RouteSpec {
            dst: Ipv4Net::from(GATEWAY),
            kind: RouteKind::Unicast,
            gateway: None,
            oif: Some(pod_index),
            scope_link: true,
            onlink: false,
            protocol: ROUTE_PROTOCOL,
        };
        let default = RouteSpec {
            dst: Ipv4Net::default(),
            gateway: Some(GATEWAY),
            scope_link: false,
            ..gateway.clone()
        };
        [gateway, default]
    }

    /// `<podIP>/32 dev caliX scope link` on the node.
    pub fn host_route(&self, host_index: u32) -> RouteSpec {
        RouteSpec {
            dst: self.address,
            kind: RouteKind::Unicast,
            gateway: None,
            oif: Some(host_index),
            scope_link: true,
            onlink: false,
            protocol: ROUTE_PROTOCOL,
        }
    }
}

/// Builds the plan: veth pair (peer straight into the pod), host end configured and up, pod
/// end addressed and routed, node route to the pod. Returns the host and pod links. On error
/// the caller runs [`teardown`].
pub fn setup(
    plan: &PodPlan,
    host: &mut Netlink,
    netns: &Netns,
    pod: &mut Netlink,
) -> Result<(Link, Link), Error> {
    host.add_veth(&VethSpec {
        name: &plan.host_name,
        mac: Some(HOST_MAC),
        mtu: plan.mtu,
        alias: Some(&plan.alias),
        peer_name: &plan.ifname,
        peer_netns: Some(netns.fd()),
    })
    .map_err(nl(format!(
        "create veth {} / {} (mtu {})",
        plan.host_name, plan.ifname, plan.mtu
    )))?;
    let host_link = host
        .link(&plan.host_name)
        .map_err(nl(format!("look up {}", plan.host_name)))?
        .ok_or_else(|| missing(&plan.host_name))?;
    let h = &plan.host_name;
    for (setting, value) in [
        ("proxy_arp", "1"),
        ("forwarding", "1"),
        ("route_localnet", "1"),
    ] {
        sysctl::write_conf("ipv4", h, setting, value).map_err(nl(format!("configure {h}")))?;
    }
    sysctl::write(&format!("net.ipv4.neigh.{h}.proxy_delay"), "0")
        .map_err(nl(format!("configure {h}")))?;
    host.set_up(host_link.index)
        .map_err(nl(format!("bring up {h}")))?;

    let pod_link = pod
        .link(&plan.ifname)
        .map_err(nl(format!("look up {} in the pod", plan.ifname)))?
        .ok_or_else(|| missing(&plan.ifname))?;
    if let Some(lo) = pod.link("lo").map_err(nl("look up lo in the pod"))? {
        pod.set_up(lo.index).map_err(nl("bring up lo in the pod"))?;
    }
    pod.add_address(pod_link.index, plan.address)
        .map_err(nl(format!(
            "add {} to {} in the pod",
            plan.address, plan.ifname
        )))?;
    pod.set_up(pod_link.index)
        .map_err(nl(format!("bring up {} in the pod", plan.ifname)))?;
    for r in plan.pod_routes(pod_link.index) {
        pod.add_route(&r, false)
            .map_err(nl(format!("add the pod route to {}", r.dst)))?;
    }
    netns
        .run(|| sysctl::write("net.ipv4.ip_forward", "0"))
        .and_then(|r| r)
        .map_err(nl("turn off forwarding in the pod"))?;
    host.add_route(&plan.host_route(host_link.index), false)
        .map_err(nl(format!("add the node route {} dev {h}", plan.address)))?;
    Ok((host_link, pod_link))
}

/// Removes the pair (the pod end and the node route go with it). A pair already gone is fine.
pub fn teardown(plan: &PodPlan, host: &mut Netlink) -> Result<(), Error> {
    match host
        .link(&plan.host_name)
        .map_err(nl(format!("look up {}", plan.host_name)))?
    {
        Some(l) if l.alias.as_deref() == Some(plan.alias.as_str()) => {
            match host.delete_link(l.index) {
                Err(e) if !e.is_not_found() => Err(nl(format!("delete {}", plan.host_name))(e)),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

fn missing(name: &str) -> Error {
    Error::Vanished(name.to_string())
}
