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
