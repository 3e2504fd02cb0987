//! A node's uplink: how the lab, the benchmarks and the tests wire a node namespace to the
//! fabric's bridge, the way a machine is cabled to a switch.

use crate::{Error, Netlink, Netns, Result, RouteSpec, VethSpec};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The node's side of the cable.
#[derive(Debug, Clone, Copy)]
pub struct Uplink<'a> {
    /// The bridge port's name in the fabric namespace.
    pub port: &'a str,
    /// The node's address on `ens3`.
    pub addr: Ipv4Net,
    /// Its default gateway.
    pub gateway: Ipv4Addr,
    /// Whether the default route is `onlink`.
    pub onlink: bool,
}

impl Netlink {
    /// From this (fabric) namespace: veth `port` on `bridge`, up; its peer `ens3` in `node`
    /// with the uplink's address, `lo` and `ens3` up, and the default route.
    pub fn plug_node(&mut self, bridge: u32, node: &Netns, uplink: &Uplink<'_>) -> Result<()> {
        self.add_veth(&VethSpec {
            name: uplink.port,
            mac: None,
            mtu: 1500,
            alias: None,
            peer_name: "ens3",
            peer_netns: Some(node.fd()),
        })?;
        let port = existing(self, uplink.port)?;
        self.set_controller(port, bridge)?;
        self.set_up(port)?;
        let mut nl = node.run(Netlink::open)??;
        let lo = existing(&mut nl, "lo")?;
        nl.set_up(lo)?;
        let ens3 = existing(&mut nl, "ens3")?;
        nl.add_address(ens3, uplink.addr)?;
        nl.set_up(ens3)?;
        nl.add_route(
            &RouteSpec::default_via(uplink.gateway, ens3, uplink.onlink),
            false,
        )
    }
}

/// The index of a link just made (or always there); ENODEV if it is gone.
fn existing(nl: &mut Netlink, name: &str) -> Result<u32> {
    nl.link(name)?
        .map(|l| l.index)
        .ok_or_else(|| Error::Kernel {
            action: format!("find link {name}"),
            errno: libc::ENODEV,
        })
}

/// Pins every node's neighbours on one segment as permanent ARP entries on their `ens3`
/// (each node: the namespace and its address on the segment).
///
/// Why: on one machine every namespace's ARP entries live in one kernel table capped by the
/// host's `net.ipv4.neigh.default.gc_thresh3` (1024 by default), and a full BGP mesh of N nodes
/// needs N*(N-1) entries (9,900 at 100). Past the cap the kernel fails new entries (ENOBUFS),
/// sessions lose their keepalives and flap. Permanent entries are not counted against it, and
/// pinning them touches only the namespaces given, never the host's sysctls.
pub fn pin_neighbours(nodes: &[(&Netns, Ipv4Addr)]) -> Result<()> {
    let mut links = Vec::new();
    for (ns, ip) in nodes {
        let mut nl = ns.run(Netlink::open)??;
        let ens3 = nl.link("ens3")?.ok_or_else(|| Error::Kernel {
            action: "find ens3 to pin neighbours on".into(),
            errno: libc::ENODEV,
        })?;
        let mac: [u8; 6] = ens3.mac.as_slice().try_into().map_err(|_| Error::Decode {
            action: "read ens3's MAC".into(),
            detail: format!("{:?}", ens3.mac),
        })?;
        links.push((nl, ens3.index, *ip, mac));
    }
    for i in 0..links.len() {
        let index = links[i].1;
        for j in (0..links.len()).filter(|&j| j != i) {
            let n = crate::Neighbour {
                index,
                ip: links[j].2,
                mac: links[j].3,
            };
            links[i].0.set_neighbour(&n)?;
        }
    }
    Ok(())
}
