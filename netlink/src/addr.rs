//! IPv4 addresses on links.

use crate::{Netlink, Result};
use ipnet::Ipv4Net;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::AddressMessageBuilder;
use std::net::{IpAddr, Ipv4Addr};

/// An IPv4 address on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub net: Ipv4Net,
}

impl Netlink {
    /// Adds `net` (address and prefix length) to link `index`.
    pub fn add_address(&mut self, index: u32, net: Ipv4Net) -> Result<()> {
        self.add_address_scoped(index, net, AddressScope::Universe)
    }

    /// Adds `ip/32` with scope host to link `index`: the namespace answers on it, but never
    /// picks it as the source of what it sends elsewhere (an ICMP error, a forwarded reply).
    pub fn add_host_address(&mut self, index: u32, ip: Ipv4Addr) -> Result<()> {
        let net = Ipv4Net::new(ip, 32).expect("/32 is a valid prefix");
        self.add_address_scoped(index, net, AddressScope::Host)
    }

    fn add_address_scoped(&mut self, index: u32, net: Ipv4Net, scope: AddressScope) -> Result<()> {
        let mut msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(net.addr(), net.prefix_len())
            .build();
        msg.header.scope = scope;
        self.execute(
            &format!("add address {net} to link #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Every IPv4 address in the namespace.
    pub fn addresses(&mut self) -> Result<Vec<Address>> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let replies = self.dump("list addresses", RouteNetlinkMessage::GetAddress(req))?;
        let mut out = Vec::new();
        for m in replies {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            let local = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let addr = local.or_else(|| {
                a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = addr {
                if let Ok(net) = Ipv4Net::new(ip, a.header.prefix_len) {
                    out.push(Address {
                        index: a.header.index,
                        net,
                    });
                }
            }
        }
        Ok(out)
    }
}
