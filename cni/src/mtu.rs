//! The pod MTU: configured, published by the agent, or the uplink's minus the tunnel overhead.

use crate::config::NetConf;
use podnet_netlink::Netlink;

/// Used when nothing else tells: Ethernet's MTU.
const FALLBACK_UPLINK_MTU: u32 = 1500;

/// Where the agent publishes the node's pod MTU.
pub fn published_path(conf: &NetConf) -> std::path::PathBuf {
    conf.state_dir.join("mtu")
}

/// `mtu` from the config if set; else the MTU the agent published for this node; else the MTU
/// of the device holding the node's default route, minus the encapsulation's overhead.
pub fn resolve(conf: &NetConf, nl: &mut Netlink) -> u32 {
    if conf.mtu > 0 {
        return conf.mtu;
    }
    let published = std::fs::read_to_string(published_path(conf))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|m| *m >= 576);
    if let Some(mtu) = published {
        return mtu;
    }
    uplink_mtu(nl).unwrap_or(FALLBACK_UPLINK_MTU) - conf.encapsulation.overhead()
}

fn uplink_mtu(nl: &mut Netlink) -> Option<u32> {
    let routes = nl.routes().ok()?;
    let oif = routes
        .iter()
        .find(|r| r.dst.prefix_len() == 0)
        .and_then(|r| r.oif)?;
    nl.link_by_index(oif).ok().flatten().map(|l| l.mtu)
}
