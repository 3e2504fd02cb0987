//! The node's tunnel device: `tunl0` (IPIP, no local or remote: one device for every peer,
//! the peer chosen per route, as Calico does) or `vxlan.calico` (VNI 4096, port 4789, MAC
//! derived from the node name, learning off: the agent writes the FDB). It holds the tunnel
//! address as a /32 and the uplink MTU minus the overhead.

use crate::desired::Mode;
use crate::Error;
use ipnet::Ipv4Net;
use podnet_netlink::{Link, Netlink, VxlanSpec};
use sha1::{Digest, Sha1};
use std::net::Ipv4Addr;

pub const IPIP_DEVICE: &str = "tunl0";
pub const VXLAN_DEVICE: &str = "vxlan.calico";
pub const VXLAN_VNI: u32 = 4096;
pub const VXLAN_PORT: u16 = 4789;

/// The device name and kind for a mode (`None` for no tunnel).
pub fn device(mode: Mode) -> Option<(&'static str, &'static str)> {
    match mode {
        Mode::Ipip => Some((IPIP_DEVICE, "ipip")),
        Mode::Vxlan => Some((VXLAN_DEVICE, "vxlan")),
        Mode::None => None,
    }
}

/// A locally administered unicast MAC from the node name: stable across restarts, distinct
/// per node.
pub fn vxlan_mac(node: &str) -> [u8; 6] {
    let d = Sha1::digest(node.as_bytes());
    [0x66, d[0], d[1], d[2], d[3], d[4]]
}

/// Fails if the tunnel's name is held by a device of another kind. Changes nothing.
pub fn check_name(nl: &mut Netlink, mode: Mode) -> Result<(), Error> {
    let Some((name, kind)) = device(mode) else {
        return Ok(());
    };
    match nl
        .link(name)
        .map_err(Error::netlink(format!("look up {name}")))?
    {
        Some(l) if l.kind.as_deref() != Some(kind) => Err(Error::TunnelNameTaken {
            name: name.to_string(),
            kind: l.kind.unwrap_or_else(|| "a device with no kind".into()),
            wanted: kind,
        }),
        _ => Ok(()),
    }
}

/// Whether this kernel can make IPIP devices: `tunl0` exists (the ipip module makes it in
/// every namespace) or can be created. Creates `tunl0` if it can.
pub fn ipip_available(nl: &mut Netlink, mtu: u32) -> bool {
    if matches!(nl.link(IPIP_DEVICE), Ok(Some(l)) if l.kind.as_deref() == Some("ipip")) {
        return true;
    }
    nl.add_ipip(IPIP_DEVICE, mtu).is_ok()
}

/// Creates (if missing) and configures the tunnel device; returns it.
pub fn ensure(
    nl: &mut Netlink,
    mode: Mode,
    node: &str,
    node_ip: Ipv4Addr,
    uplink: &Link,
    tunnel_ip: Ipv4Addr,
    mtu: u32,
) -> Result<Option<Link>, Error> {
    let Some((name, _)) = device(mode) else {
        return Ok(None);
    };
    check_name(nl, mode)?;
    let ctx = |what: &str| Error::netlink(format!("{what} {name}"));
    if nl.link(name).map_err(ctx("look up"))?.is_none() {
        match mode {
            Mode::Ipip => nl.add_ipip(name, mtu).map_err(ctx("create"))?,
            Mode::Vxlan => nl
                .add_vxlan(&VxlanSpec {
                    name,
                    vni: VXLAN_VNI,
                    port: VXLAN_PORT,
                    local: node_ip,
                    dev: uplink.index,
                    mac: vxlan_mac(node),
                    mtu,
                })
                .map_err(ctx("create"))?,
            Mode::None => unreachable!("no device for none"),
        }
    }
    let link = nl
        .link(name)
        .map_err(ctx("look up"))?
        .ok_or_else(|| Error::Vanished(name.to_string()))?;
    if link.mtu != mtu {
        nl.set_mtu(link.index, mtu).map_err(ctx("set the MTU of"))?;
    }
    let addr = Ipv4Net::from(tunnel_ip);
    let has = nl
        .addresses()
        .map_err(ctx("list addresses for"))?
        .iter()
        .any(|a| a.index == link.index && a.net == addr);
    if !has {
        nl.add_address(link.index, addr)
            .map_err(ctx(&format!("add {addr} to")))?;
    }
    if !link.up {
        nl.set_up(link.index).map_err(ctx("bring up"))?;
    }
    nl.link(name).map_err(ctx("look up"))
}

/// Writes the pod MTU where the CNI plugin reads it (`<state_dir>/mtu`), atomically.
pub fn publish_mtu(state_dir: &std::path::Path, mtu: u32) -> Result<(), Error> {
    let io = |action: &'static str| {
        let path = state_dir.display().to_string();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(state_dir).map_err(io("create the state folder"))?;
    let tmp = state_dir.join(".mtu.tmp");
    std::fs::write(&tmp, format!("{mtu}\n")).map_err(io("write the MTU into"))?;
    std::fs::rename(&tmp, state_dir.join("mtu")).map_err(io("publish the MTU in"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_macs_are_stable_local_unicast_and_distinct() {
        let a = vxlan_mac("sung-ubuntu04");
        assert_eq!(a, vxlan_mac("sung-ubuntu04"));
        assert_ne!(a, vxlan_mac("sung-ubuntu05"));
        assert_eq!(a[0] & 0b11, 0b10, "locally administered, unicast");
    }
}
