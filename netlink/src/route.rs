//! IPv4 routes in the main table: add (or replace), list, delete. Routes podnet makes carry
//! its own protocol number, [`ROUTE_PROTOCOL`], so it can tell what it owns.

use crate::{Netlink, Result};
use ipnet::Ipv4Net;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::RouteMessageBuilder;
use std::net::Ipv4Addr;

/// The protocol number of the routes the CNI plugin makes (`ip route ... proto 118`): the
/// node's route to each pod and the pod's own routes. Unused by iproute2's table.
pub const ROUTE_PROTOCOL: u8 = 118;
/// The protocol number of the routes `podnet-agent` owns (remote blocks, local blackholes):
/// the agent changes and deletes only routes carrying it.
pub const AGENT_ROUTE_PROTOCOL: u8 = 119;

/// The protocol number BIRD gives the routes it installs (`proto bird`, RTPROT_BIRD): in BGP
/// mode the routes to other nodes' blocks and the node's own blackholes carry it.
pub const BIRD_ROUTE_PROTOCOL: u8 = 12;

/// Who made a route, by its protocol number, in words.
pub fn route_origin(protocol: u8) -> &'static str {
    match protocol {
        2 => "kernel",
        3 => "boot",
        4 => "static",
        BIRD_ROUTE_PROTOCOL => "bird",
        ROUTE_PROTOCOL => "cni",
        AGENT_ROUTE_PROTOCOL => "agent",
        _ => "other",
    }
}

/// The address every pod routes to (Calico's): nobody holds it, the node's end of each pod's
/// veth answers ARP for it by proxy.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// Why pods on a node without a route for [`POD_GATEWAY`] are cut off: said in the CNI
/// plugin's log and STATUS and in `podnet-agent status`.
pub const NO_POD_GATEWAY_ROUTE: &str = "this node has no route for 169.254.1.1 (no default \
    route?): proxy ARP only answers for an address the node can route, so every pod's first \
    packet dies here; give the node a default route (or a route for 169.254.1.1)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    Unicast,
    Blackhole,
}

/// A route to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteSpec {
    pub dst: Ipv4Net,
    pub kind: RouteKind,
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// `scope link` (a directly reachable destination) rather than universe.
    pub scope_link: bool,
    /// `onlink`: use the gateway even if no route says it is reachable on `oif`.
    pub onlink: bool,
    pub protocol: u8,
}

/// A route as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Net,
    pub kind: RouteKind,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub scope_link: bool,
    pub onlink: bool,
    pub protocol: u8,
    /// The source address the kernel picks (`src`), on looked-up routes.
    pub pref_source: Option<Ipv4Addr>,
}

impl Route {
    /// The route as it would be made again.
    pub fn spec(&self) -> RouteSpec {
        RouteSpec {
            dst: self.dst,
            kind: self.kind,
            gateway: self.gateway,
            oif: self.oif,
            scope_link: self.scope_link,
            onlink: self.onlink,
            protocol: self.protocol,
        }
    }
}

impl RouteSpec {
    /// `<dst> via <gateway> dev <oif>`, a static route (protocol static, as `ip route add`).
    pub fn via(dst: Ipv4Net, gateway: Ipv4Addr, oif: u32) -> RouteSpec {
        RouteSpec {
            dst,
            kind: RouteKind::Unicast,
            gateway: Some(gateway),
            oif: Some(oif),
            scope_link: false,
            onlink: false,
            protocol: 4,
        }
    }

    /// `default via <gateway> dev <oif> [onlink]`, as a node's uplink route (static protocol).
    pub fn default_via(gateway: Ipv4Addr, oif: u32, onlink: bool) -> RouteSpec {
        RouteSpec {
            onlink,
            ..RouteSpec::via(Ipv4Net::default(), gateway, oif)
        }
    }

    fn message(&self) -> RouteMessage {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(self.dst.network(), self.dst.prefix_len())
            .protocol(RouteProtocol::from(self.protocol))
            .kind(match self.kind {
                RouteKind::Unicast => RouteType::Unicast,
                RouteKind::Blackhole => RouteType::BlackHole,
            })
            .scope(if self.scope_link {
                RouteScope::Link
            } else {
                RouteScope::Universe
            });
        if let Some(gw) = self.gateway {
            b = b.gateway(gw);
        }
        if let Some(oif) = self.oif {
            b = b.output_interface(oif);
        }
        if self.onlink {
            b = b.onlink();
        }
        b.build()
    }

    fn describe(&self) -> String {
        let mut s = match self.kind {
            RouteKind::Blackhole => format!("blackhole {}", self.dst),
            RouteKind::Unicast => self.dst.to_string(),
        };
        if let Some(gw) = self.gateway {
            s.push_str(&format!(" via {gw}"));
        }
        if let Some(oif) = self.oif {
            s.push_str(&format!(" dev #{oif}"));
        }
        if self.scope_link {
            s.push_str(" scope link");
        }
        if self.onlink {
            s.push_str(" onlink");
        }
        s
    }
}

impl Netlink {
    /// Adds the route; with `replace`, replaces a route to the same destination instead of
    /// failing with EEXIST.
    pub fn add_route(&mut self, route: &RouteSpec, replace: bool) -> Result<()> {
        let flags = if replace {
            NLM_F_CREATE | NLM_F_REPLACE
        } else {
            NLM_F_CREATE | NLM_F_EXCL
        };
        self.execute(
            &format!("add route {}", route.describe()),
            RouteNetlinkMessage::NewRoute(route.message()),
            flags,
        )
    }

    /// Deletes the main-table route to `dst` made by `protocol` (any scope, type, gateway).
    pub fn delete_route(&mut self, dst: Ipv4Net, protocol: u8) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.header.protocol = RouteProtocol::from(protocol);
        msg.header.scope = RouteScope::NoWhere;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                dst.network(),
            )));
        self.execute(
            &format!("delete route {dst}"),
            RouteNetlinkMessage::DelRoute(msg),
            0,
        )
    }

    /// The kernel's own route lookup for `dst` (`ip route get`): the route a packet to it
    /// would take from this namespace, or `None` if unreachable.
    pub fn route_to(&mut self, dst: Ipv4Addr) -> Result<Option<Route>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        req.header.destination_prefix_length = 32;
        req.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        let action = format!("look up the route to {dst}");
        let reply = match self.get(&action, RouteNetlinkMessage::GetRoute(req)) {
            Err(e)
                if matches!(
                    e.errno(),
                    Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
                ) =>
            {
                return Ok(None)
            }
            other => other?,
        };
        Ok(reply.and_then(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => parse(r, false),
            _ => None,
        }))
    }

    /// Whether the kernel would answer proxy ARP for [`POD_GATEWAY`] here: it needs a unicast
    /// route for it (a default route does).
    pub fn routes_pod_gateway(&mut self) -> Result<bool> {
        Ok(self
            .route_to(POD_GATEWAY)?
            .is_some_and(|r| r.kind == RouteKind::Unicast))
    }

    /// Every IPv4 route of the main table.
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let replies = self.dump("list routes", RouteNetlinkMessage::GetRoute(req))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => parse(r, true),
                _ => None,
            })
            .collect())
    }
}

/// Reads a route message (unicast and blackhole only); with `main_only`, routes of other
/// tables are skipped.
pub(crate) fn parse(r: RouteMessage, main_only: bool) -> Option<Route> {
    let mut table = u32::from(r.header.table);
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    let mut pref_source = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => pref_source = Some(*ip),
            _ => {}
        }
    }
    let kind = match r.header.kind {
        RouteType::Unicast => RouteKind::Unicast,
        RouteType::BlackHole => RouteKind::Blackhole,
        _ => return None,
    };
    if main_only && table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    Some(Route {
        dst: Ipv4Net::new(dst, r.header.destination_prefix_length).ok()?,
        kind,
        gateway,
        oif,
        scope_link: r.header.scope == RouteScope::Link,
        onlink: r.header.flags.contains(RouteFlags::Onlink),
        protocol: u8::from(r.header.protocol),
        pref_source,
    })
}
