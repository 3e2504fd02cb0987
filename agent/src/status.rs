//! `podnet-agent status`: the node as the datastore knows it, its tunnel device as the kernel
//! has it, and each route the node should have with whether the kernel has it and who made
//! it (`agent`: proto 119, datastore routing; `bird`: BGP routing).

use crate::desired::{desired, Me, Mode, Want};
use crate::kernel::{matches, route_spec, Devices};
use crate::run::block_views;
use crate::{tunnel, Error};
use ipnet::Ipv4Net;
use podnet_ipam::nodes::{self as node, NodeRecord};
use podnet_ipam::Datastore;
use podnet_netlink::{Netlink, AGENT_ROUTE_PROTOCOL, BIRD_ROUTE_PROTOCOL};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct RouteStatus {
    pub route: String,
    pub in_kernel: bool,
    /// `agent` or `bird`, when the kernel has it.
    pub origin: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub node: NodeRecord,
    pub blocks: Vec<Ipv4Net>,
    pub tunnel: Option<String>,
    pub routes: Vec<RouteStatus>,
    /// Owned routes in the kernel that the datastore no longer asks for.
    pub stale: Vec<String>,
    /// Whether the node has a route for 169.254.1.1, without which proxy ARP answers no pod.
    pub pod_gateway_routed: bool,
    /// Table `ip podnet` as the kernel has it, rule by rule in words.
    pub egress_rules: Vec<String>,
    /// Whether the kernel's table is the one the datastore asks for (`None`: neither has one).
    pub egress_in_sync: Option<bool>,
}

/// Reads the store and this namespace's kernel state for `node_name`.
pub fn status(store: &dyn Datastore, node_name: &str, cross_subnet: bool) -> Result<Status, Error> {
    let (nodes, _) = node::list(store)?;
    let me_record = nodes
        .iter()
        .find(|n| n.name == node_name)
        .cloned()
        .ok_or_else(|| {
            Error::Settings(format!(
                "node {node_name} is not registered in the datastore"
            ))
        })?;
    let mode = match me_record.encapsulation.as_str() {
        "ipip" => Mode::Ipip,
        "vxlan" => Mode::Vxlan,
        _ => Mode::None,
    };
    let me = Me {
        name: node_name.to_string(),
        ip: Ipv4Net::new(me_record.ip, me_record.prefix_len)
            .map_err(|e| Error::Settings(e.to_string()))?,
        mode,
        cross_subnet,
    };
    let blocks = block_views(store)?;
    let want = desired(&me, &nodes, &blocks);
    let mut nl = Netlink::open().map_err(Error::netlink("open a netlink socket"))?;
    let tunnel_link = match tunnel::device(mode) {
        Some((name, _)) => nl
            .link(name)
            .map_err(Error::netlink(format!("look up {name}")))?,
        None => None,
    };
    let addresses = nl.addresses().map_err(Error::netlink("list addresses"))?;
    let uplink = addresses
        .iter()
        .find(|a| a.net.addr() == me_record.ip)
        .map(|a| a.index)
        .unwrap_or(0);
    let devices = Devices {
        tunnel: tunnel_link.as_ref().map(|l| l.index),
        uplink,
    };
    let bgp = me_record.routing == "bgp";
    let kernel: Vec<_> = nl
        .routes()
        .map_err(Error::netlink("list routes"))?
        .into_iter()
        .filter(|r| r.protocol == AGENT_ROUTE_PROTOCOL || r.protocol == BIRD_ROUTE_PROTOCOL)
        .collect();
    let maker = if bgp {
        BIRD_ROUTE_PROTOCOL
    } else {
        AGENT_ROUTE_PROTOCOL
    };
    let tunnel_name = tunnel_link
        .as_ref()
        .map(|l| l.name.clone())
        .unwrap_or_default();
    let routes = want
        .routes
        .iter()
        .map(|(dst, w)| {
            let origin = route_spec(*dst, w, &devices).and_then(|spec| {
                let spec = podnet_netlink::RouteSpec {
                    protocol: maker,
                    ..spec
                };
                kernel.iter().any(|r| matches(r, &spec)).then_some(if bgp {
                    "bird"
                } else {
                    "agent"
                })
            });
            let route = match w {
                Want::Blackhole => format!("blackhole {dst}"),
                Want::Via {
                    gateway,
                    dev,
                    onlink,
                } => {
                    let dev = match dev {
                        crate::desired::Dev::Tunnel => tunnel_name.clone(),
                        crate::desired::Dev::Uplink => "uplink".into(),
                    };
                    format!(
                        "{dst} via {gateway} dev {dev}{}",
                        if *onlink { " onlink" } else { "" }
                    )
                }
            };
            RouteStatus {
                route,
                in_kernel: origin.is_some(),
                origin,
            }
        })
        .collect();
    let stale = kernel
        .iter()
        .filter(|r| {
            r.protocol == AGENT_ROUTE_PROTOCOL && (bgp || !want.routes.contains_key(&r.dst))
        })
        .map(|r| r.dst.to_string())
        .collect();
    let tunnel = tunnel_link.map(|l| {
        let addr: Vec<String> = addresses
            .iter()
            .filter(|a| a.index == l.index)
            .map(|a| a.net.to_string())
            .collect();
        format!(
            "{} {} mtu {} {}",
            l.name,
            addr.join(","),
            l.mtu,
            if l.up { "up" } else { "down" }
        )
    });
    let pod_gateway_routed = nl
        .routes_pod_gateway()
        .map_err(Error::netlink("look up the route for 169.254.1.1"))?;
    let my_blocks = blocks
        .iter()
        .filter(|b| b.node.as_deref() == Some(node_name))
        .map(|b| b.cidr)
        .collect();
    let pools = podnet_ipam::pools::list(store)?;
    let want_egress = crate::egress::desired(&crate::egress::Inputs {
        pools: &pools,
        exclusions: podnet_ipam::pools::egress(store)?.nat_outgoing_exclusions,
        nodes: &nodes,
        tunnel: tunnel::device(mode)
            .zip(me_record.tunnel_ip)
            .map(|((dev, _), ip)| (dev, ip)),
    });
    let have_egress = crate::egress::Egress::open()?.read()?;
    let egress_in_sync = match (&want_egress, &have_egress) {
        (None, None) => None,
        (Some(w), Some(h)) => Some(w.clone().sorted() == h.clone().sorted()),
        _ => Some(false),
    };
    let egress_rules = have_egress
        .as_ref()
        .map(crate::egress::explain)
        .unwrap_or_default();
    Ok(Status {
        egress_rules,
        egress_in_sync,
        node: me_record,
        blocks: my_blocks,
        tunnel,
        routes,
        stale,
        pod_gateway_routed,
    })
}

impl Status {
    pub fn render(&self) -> String {
        let n = &self.node;
        let mut out = format!(
            "node:          {}\naddress:       {}/{}\nencapsulation: {}\nrouting:       {}\nblocks:        {}\ntunnel:        {}\n\n",
            n.name,
            n.ip,
            n.prefix_len,
            n.encapsulation,
            n.routing,
            self.blocks.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", "),
            self.tunnel.as_deref().unwrap_or("-"),
        );
        let mut rows = vec![[
            "ROUTE".to_string(),
            "IN KERNEL".to_string(),
            "ORIGIN".to_string(),
        ]];
        rows.extend(self.routes.iter().map(|r| {
            [
                r.route.clone(),
                if r.in_kernel { "yes" } else { "NO" }.to_string(),
                r.origin.unwrap_or("-").to_string(),
            ]
        }));
        podnet_ipam::inspect::table(&mut out, &rows);
        if !self.pod_gateway_routed {
            out.push_str(&format!(
                "\nWARNING: {}\n",
                podnet_netlink::NO_POD_GATEWAY_ROUTE
            ));
        }
        match self.egress_in_sync {
            None => out.push_str("\negress: no nftables table (no natOutgoing pool, no tunnel)\n"),
            Some(sync) => {
                out.push_str(&format!(
                    "\negress: nftables table ip podnet{}\n",
                    if sync {
                        ""
                    } else {
                        " DIFFERS from what the datastore asks for (the agent rewrites it within a second while it runs)"
                    }
                ));
                for r in &self.egress_rules {
                    out.push_str(&format!("  {r}\n"));
                }
            }
        }
        for s in &self.stale {
            out.push_str(&format!(
                "stale owned route {s} (removed at the next pass)\n"
            ));
        }
        out
    }
}
