//! Links: look up, list, create veth pairs, bring up, delete.

use crate::{Netlink, Result};
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkBridge, LinkIpIp, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// What podnet needs to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub up: bool,
    /// The raw `IFF_*` flags (as `ifconfig` prints them).
    pub flags: u32,
    /// `veth`, `ipip`, `vxlan`, `bridge`...; `None` for physical devices and loopback.
    pub kind: Option<String>,
    pub alias: Option<String>,
    /// For a veth, the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
}

impl Link {
    fn from_message(m: LinkMessage) -> Link {
        let mut link = Link {
            index: m.header.index,
            name: String::new(),
            mac: Vec::new(),
            mtu: 0,
            up: m.header.flags.contains(LinkFlags::Up),
            flags: m.header.flags.bits(),
            kind: None,
            alias: None,
            peer_index: None,
        };
        for attr in m.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Address(a) => link.mac = a,
                LinkAttribute::Mtu(mtu) => link.mtu = mtu,
                LinkAttribute::IfAlias(a) => link.alias = Some(a),
                LinkAttribute::Link(i) => link.peer_index = Some(i),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            link.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    /// The MAC as `ee:ee:ee:ee:ee:ee`.
    pub fn mac_string(&self) -> String {
        self.mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// A veth pair to create: this end here, the peer in `peer_netns` (or here too).
pub struct VethSpec<'a> {
    pub name: &'a str,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub alias: Option<&'a str>,
    pub peer_name: &'a str,
    pub peer_netns: Option<BorrowedFd<'a>>,
}

/// A VXLAN device to create (Calico's `vxlan.calico`: learning off, static FDB).
pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    /// The uplink's index.
    pub dev: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// The kernel's buffer for an interface name, its NUL included.
const IFNAMSIZ: usize = 16;

impl Netlink {
    /// The link called `name`, if any. A name no interface can have (empty, or longer than
    /// the kernel's 15 bytes, which it answers with ERANGE) has none: callers look up names
    /// they were given (a prevResult's interfaces), and "no such link" is the true answer.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        if name.is_empty() || name.len() >= IFNAMSIZ {
            return Ok(None);
        }
        let msg = LinkUnspec::new_with_name(name).build();
        Ok(self
            .get(
                &format!("look up link {name}"),
                RouteNetlinkMessage::GetLink(msg),
            )?
            .and_then(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            }))
    }

    /// The link with index `index`, if any.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let msg = LinkUnspec::new_with_index(index).build();
        Ok(self
            .get(
                &format!("look up link #{index}"),
                RouteNetlinkMessage::GetLink(msg),
            )?
            .and_then(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            }))
    }

    /// Every link in the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })
            .collect())
    }

    /// Creates a veth pair, failing with EEXIST if this end's name is taken here (the peer's
    /// name taken in its namespace fails too). Both ends are created down.
    pub fn add_veth(&mut self, spec: &VethSpec<'_>) -> Result<()> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.peer_name.to_string())
            .mtu(spec.mtu);
        if let Some(fd) = spec.peer_netns {
            peer = peer.setns_by_fd(fd.as_raw_fd());
        }
        let mut builder = LinkVeth::new(spec.name, spec.peer_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .mtu(spec.mtu);
        if let Some(mac) = spec.mac {
            builder = builder.address(mac.to_vec());
        }
        self.execute(
            &format!("create veth {} (peer {})", spec.name, spec.peer_name),
            RouteNetlinkMessage::NewLink(builder.build()),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        // The kernel ignores IFLA_IFALIAS when creating a link: set it on the new link.
        if let Some(alias) = spec.alias {
            let msg = LinkUnspec::new_with_name(spec.name).alias(alias).build();
            self.execute(
                &format!("label veth {}", spec.name),
                RouteNetlinkMessage::SetLink(msg),
                0,
            )?;
        }
        Ok(())
    }

    /// Creates a bridge (down).
    pub fn add_bridge(&mut self, name: &str) -> Result<()> {
        self.execute(
            &format!("create bridge {name}"),
            RouteNetlinkMessage::NewLink(LinkBridge::new(name).build()),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Creates an IPIP tunnel device with no local or remote address (Calico's `tunl0`: it
    /// takes packets for any peer, the peer chosen per route). Fails with EOPNOTSUPP on a
    /// kernel without IPIP.
    pub fn add_ipip(&mut self, name: &str, mtu: u32) -> Result<()> {
        self.execute(
            &format!("create IPIP device {name}"),
            RouteNetlinkMessage::NewLink(LinkIpIp::new(name).mtu(mtu).build()),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Creates a VXLAN device (down).
    pub fn add_vxlan(&mut self, spec: &VxlanSpec<'_>) -> Result<()> {
        let msg = LinkVxlan::new(spec.name, spec.vni)
            .port(spec.port)
            .local(spec.local)
            .dev(spec.dev)
            .learning(false)
            .mtu(spec.mtu)
            .address(spec.mac.to_vec())
            .build();
        self.execute(
            &format!("create VXLAN device {} (VNI {})", spec.name, spec.vni),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Attaches link `index` to bridge `bridge` (`ip link set ... master`).
    pub fn set_controller(&mut self, index: u32, bridge: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).controller(bridge).build();
        self.execute(
            &format!("attach link #{index} to bridge #{bridge}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Moves link `index` into another namespace, renaming it there.
    pub fn move_to(&mut self, index: u32, netns: BorrowedFd<'_>, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(netns.as_raw_fd())
            .name(name.to_string())
            .build();
        self.execute(
            &format!("move link #{index} to another namespace as {name}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Brings link `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.execute(
            &format!("bring up link #{index}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Sets link `index`'s MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.execute(
            &format!("set the MTU of link #{index} to {mtu}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Deletes link `index` (a veth takes its peer with it).
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).build();
        self.execute(
            &format!("delete link #{index}"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        )
    }
}
