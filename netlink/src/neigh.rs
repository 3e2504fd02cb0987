//! Permanent neighbour (ARP) and bridge FDB entries, as a VXLAN overlay needs them: "remote
//! tunnel IP is at remote MAC" and "remote MAC is behind remote node IP".

use crate::{Netlink, Result};
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteType;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::Ipv4Addr;

/// A permanent entry on one link: an ARP entry (`ip` -> `mac`) or an FDB entry (`mac` ->
/// `ip`, the VTEP to send to).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Neighbour {
    pub index: u32,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

fn message(family: AddressFamily, n: &Neighbour) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family;
    m.header.ifindex = n.index;
    m.header.state = NeighbourState::Permanent;
    m.header.kind = RouteType::Unspec;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            n.ip,
        )));
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(n.mac.to_vec()));
    if family == AddressFamily::Bridge {
        m.header.flags = NeighbourFlags::Own;
    }
    m
}

fn mac_of(attrs: &[NeighbourAttribute]) -> Option<[u8; 6]> {
    attrs.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => l.as_slice().try_into().ok(),
        _ => None,
    })
}

fn ip_of(attrs: &[NeighbourAttribute]) -> Option<Ipv4Addr> {
    attrs.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        // In AF_BRIDGE (FDB) messages the VTEP address arrives undecoded.
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

impl Netlink {
    /// Adds or replaces a permanent ARP entry.
    pub fn set_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        self.execute(
            &format!("set neighbour {} on link #{}", n.ip, n.index),
            RouteNetlinkMessage::NewNeighbour(message(AddressFamily::Inet, n)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Adds or replaces a permanent FDB entry (`bridge fdb replace MAC dev X dst IP self`).
    pub fn set_fdb(&mut self, n: &Neighbour) -> Result<()> {
        self.execute(
            &format!("set fdb entry to {} on link #{}", n.ip, n.index),
            RouteNetlinkMessage::NewNeighbour(message(AddressFamily::Bridge, n)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    pub fn delete_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        self.execute(
            &format!("delete neighbour {} on link #{}", n.ip, n.index),
            RouteNetlinkMessage::DelNeighbour(message(AddressFamily::Inet, n)),
            0,
        )
    }

    pub fn delete_fdb(&mut self, n: &Neighbour) -> Result<()> {
        self.execute(
            &format!("delete fdb entry to {} on link #{}", n.ip, n.index),
            RouteNetlinkMessage::DelNeighbour(message(AddressFamily::Bridge, n)),
            0,
        )
    }

    /// Permanent ARP entries on link `index`.
    pub fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>> {
        self.permanent(AddressFamily::Inet, index)
    }

    /// Permanent FDB entries with a destination IP on link `index`.
    pub fn fdb(&mut self, index: u32) -> Result<Vec<Neighbour>> {
        self.permanent(AddressFamily::Bridge, index)
    }

    fn permanent(&mut self, family: AddressFamily, index: u32) -> Result<Vec<Neighbour>> {
        let mut req = NeighbourMessage::default();
        req.header.family = family;
        let replies = self.dump("list neighbours", RouteNetlinkMessage::GetNeighbour(req))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => Some(n),
                _ => None,
            })
            .filter(|n| n.header.ifindex == index && n.header.state == NeighbourState::Permanent)
            .filter_map(|n| {
                Some(Neighbour {
                    index,
                    ip: ip_of(&n.attributes)?,
                    mac: mac_of(&n.attributes)?,
                })
            })
            .collect())
    }
}
