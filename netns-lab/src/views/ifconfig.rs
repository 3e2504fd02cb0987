//! `ifconfig NODE|POD`: every interface of the namespace with address, netmask, MTU, MAC and
//! flags, laid out as net-tools' `ifconfig -a` (without the packet counters).

use crate::state::LabState;
use anyhow::{bail, Result};
use podnet_netlink::{Link, Netlink, Netns};

const FLAG_NAMES: &[(u32, &str)] = &[
    (0x1, "UP"),
    (0x2, "BROADCAST"),
    (0x4, "DEBUG"),
    (0x8, "LOOPBACK"),
    (0x10, "POINTOPOINT"),
    (0x20, "NOTRAILERS"),
    (0x40, "RUNNING"),
    (0x80, "NOARP"),
    (0x100, "PROMISC"),
    (0x200, "ALLMULTI"),
    (0x400, "MASTER"),
    (0x800, "SLAVE"),
    (0x1000, "MULTICAST"),
];

pub fn ifconfig(lab: &LabState, name: &str) -> Result<String> {
    let known = lab.nodes.iter().any(|n| n.name == name) || lab.pods.iter().any(|p| p.name == name);
    if !known {
        bail!("no node or pod {name} in lab {}", lab.name);
    }
    let mut nl = Netns::open(LabState::netns_path(name))?.run(Netlink::open)??;
    let mut links = nl.links()?;
    links.sort_by(|a, b| a.name.cmp(&b.name));
    let addrs = nl.addresses()?;
    let mut out = String::new();
    for l in &links {
        out.push_str(&interface(
            l,
            addrs.iter().filter(|a| a.index == l.index).map(|a| a.net),
        ));
        out.push('\n');
    }
    Ok(out)
}

fn interface(l: &Link, addrs: impl Iterator<Item = ipnet::Ipv4Net>) -> String {
    let flags = l.flags & 0xffff;
    let names: Vec<&str> = FLAG_NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    let mut s = format!(
        "{}: flags={flags}<{}>  mtu {}\n",
        l.name,
        names.join(","),
        l.mtu
    );
    for a in addrs {
        s.push_str(&format!(
            "        inet {}  netmask {}",
            a.addr(),
            a.netmask()
        ));
        if flags & 0x2 != 0 {
            let bcast = if a.prefix_len() >= 31 {
                std::net::Ipv4Addr::UNSPECIFIED
            } else {
                a.broadcast()
            };
            s.push_str(&format!("  broadcast {bcast}"));
        }
        s.push('\n');
    }
    let kind = match l.kind.as_deref() {
        _ if flags & 0x8 != 0 => "loop  txqueuelen 1000  (Local Loopback)".to_string(),
        Some("ipip") => "tunnel   txqueuelen 1000  (IPIP Tunnel)".to_string(),
        _ => format!("ether {}  txqueuelen 0  (Ethernet)", l.mac_string()),
    };
    s.push_str(&format!("        {kind}\n"));
    s
}
