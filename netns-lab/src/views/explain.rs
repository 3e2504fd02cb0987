//! `explain FROM TO`: the path a packet takes, told from the kernel's own route lookups in
//! each namespace on the way (as `ip route get` would answer), the way the seed explains it.

use super::trace::resolve;
use crate::inventory::Inventory;
use crate::state::LabState;
use anyhow::{bail, Context, Result};
use podnet_netlink::{Netlink, Netns, Route, RouteKind};
use std::collections::HashMap;
use std::net::Ipv4Addr;

struct Ns {
    nl: Netlink,
    names: HashMap<u32, String>,
}

impl Ns {
    fn open(name: &str) -> Result<Ns> {
        let mut nl = Netns::open(LabState::netns_path(name))?.run(Netlink::open)??;
        let names = nl.links()?.into_iter().map(|l| (l.index, l.name)).collect();
        Ok(Ns { nl, names })
    }

    fn lookup(&mut self, dst: Ipv4Addr) -> Result<Route> {
        self.nl
            .route_to(dst)?
            .with_context(|| format!("no route to {dst}"))
    }

    fn dev(&self, r: &Route) -> String {
        r.oif
            .and_then(|i| self.names.get(&i).cloned())
            .unwrap_or_else(|| "-".into())
    }

    fn show(&self, r: &Route, dst: Ipv4Addr) -> String {
        let mut s = match r.kind {
            RouteKind::Blackhole => format!("blackhole {dst}"),
            RouteKind::Unicast => dst.to_string(),
        };
        if let Some(g) = r.gateway {
            s += &format!(" via {g}");
        }
        s += &format!(" dev {}", self.dev(r));
        if let Some(src) = r.pref_source {
            s += &format!(" src {src}");
        }
        s
    }
}

/// The masquerade step on the way out, from the node's nftables table `ip podnet` as the kernel
/// holds it: which rule matches this packet, or why none does.
fn masquerade_step(
    node: &str,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    out_src: &Option<Ipv4Addr>,
) -> Result<String> {
    use podnet_netlink::nft::{Expr, Field, Nftables};
    let table =
        Netns::open(LabState::netns_path(node))?.run(|| Nftables::open()?.read("podnet"))??;
    let Some(table) = table else {
        return Ok(format!("   {node} has no nftables table ip podnet: nothing masquerades, and {src} leaves as it is;
   the outside cannot answer a pod address.
"));
    };
    let in_set = |name: &str, ip: Ipv4Addr| table.set(name).is_some_and(|s| s.contains(ip));
    for chain in &table.chains {
        for rule in &chain.rules {
            // Only the pool rule applies to a pod's packet (the tunnel rule is for the node's own).
            let mut matches = true;
            let mut field = None;
            let mut is_pool_rule = false;
            for e in &rule.exprs {
                match e {
                    Expr::Load(f) => field = Some(*f),
                    Expr::Lookup { set, invert } => {
                        is_pool_rule |= set == "nat-pools";
                        let ip = if field == Some(Field::IpSaddr) {
                            src
                        } else {
                            dst
                        };
                        matches &= in_set(set, ip) != *invert;
                    }
                    _ => {}
                }
            }
            if is_pool_rule && matches {
                let packets = rule.exprs.iter().find_map(|e| match e {
                    Expr::Counter { packets, .. } => Some(*packets),
                    _ => None,
                });
                return Ok(format!(
                    "   Leaving {node}, nftables table ip podnet, chain {} (postrouting, srcnat) matches it with
   `{rule}`
   ({} packets so far): the source {src} becomes {}, the node's own address on the way out, with a random
   port (fully-random). That is Calico's natOutgoing: {src} is in a natOutgoing pool, {dst} is in no pool.
",
                    chain.name,
                    packets.unwrap_or(0),
                    out_src.map(|a| a.to_string()).unwrap_or_else(|| "the node's address".into())
                ));
            }
        }
    }
    Ok(format!("   No rule of {node}'s nftables table ip podnet matches {src} -> {dst} (natOutgoing is off for its pool):
   it leaves with the pod's own address, and no reply can come back.
"))
}

pub fn explain(lab: &LabState, from: &str, to: &str) -> Result<String> {
    if lab.pod(to).is_err() {
        if let Some(s) = super::explain_service::explain_service(lab, from, to)? {
            return Ok(s);
        }
    }
    let src_pod = lab.pod(from)?;
    let dst = resolve(lab, to)?;
    let inv = Inventory::read(lab);
    let mut out = format!(
        "How a packet from pod {from} ({}) reaches {dst} ({}):\n\n",
        src_pod.ip().unwrap_or_default(),
        inv.describe(dst)
    );
    let mut pod = Ns::open(from)?;
    let r = pod.lookup(dst)?;
    out += &format!(
        "1. In pod {from}, the kernel's route to {dst}: `{}`.\n   169.254.1.1 is nobody's address: the node's end of the veth answers ARP for it (proxy ARP), so every\n   packet leaves the pod for its node, {}, whatever the destination.\n\n",
        pod.show(&r, dst),
        src_pod.node
    );
    let mut node = Ns::open(&src_pod.node)?;
    let r = node.lookup(dst)?;
    let dev = node.dev(&r);
    if dev.starts_with("cali") {
        out += &format!(
            "2. On {}, `{}`: the destination lives on this same node, down veth {dev}.\n",
            src_pod.node,
            node.show(&r, dst)
        );
        return Ok(out);
    }
    let Some(gw) = r.gateway else {
        bail!("{} has no gateway towards {dst}", src_pod.node)
    };
    let node_of = |gw: Ipv4Addr| {
        inv.records
            .iter()
            .find(|n| n.ip == gw || n.tunnel_ip == Some(gw))
            .cloned()
    };
    if gw == lab.scenario.gateway && !lab.scenario.pool.cidr.contains(&dst) {
        out += &format!(
            "2. On {}, the kernel's route to {dst}: `{}`, the default route: {dst} is outside the cluster.
",
            src_pod.node,
            node.show(&r, dst)
        );
        let src: Ipv4Addr = src_pod
            .ip()
            .unwrap_or_default()
            .parse()
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        out += &masquerade_step(
            &src_pod.node,
            src,
            dst,
            &node.nl.route_to(dst)?.and_then(|r| r.pref_source),
        )?;
        if lab.scenario.outside.is_some() {
            out += &upstream_steps(lab, &inv, gw, src, dst, from, &src_pod.node)?;
        }
        return Ok(out);
    }
    // Unencapsulated traffic to another rack goes by routers first.
    let mut routers = Vec::new();
    let mut next = gw;
    while node_of(next).is_none() {
        let router = lab
            .scenario
            .routers
            .iter()
            .find(|r| r.interfaces.values().any(|ip| *ip == next))
            .with_context(|| format!("no node or router owns {next}"))?;
        if routers.len() > 8 {
            bail!("more than 8 routers on the way to {dst}: a loop?");
        }
        let mut ns = Ns::open(&router.name)?;
        let hop = ns.lookup(dst)?;
        routers.push(format!(
            "   Router {} (a rack's router, BIRD): `{}`, learned by BGP like the nodes' routes.\n",
            router.name,
            ns.show(&hop, dst)
        ));
        next = hop
            .gateway
            .with_context(|| format!("router {} has no gateway towards {dst}", router.name))?;
    }
    let far = node_of(next).expect("the loop ends at a node");
    let block = node
        .nl
        .routes()?
        .into_iter()
        .filter(|x| x.dst.contains(&dst) && x.dst.prefix_len() > 0)
        .max_by_key(|x| x.dst.prefix_len());
    out += &format!(
        "2. On {}, the kernel's route to {dst}: `{}`.\n   It is the route to {}'s block{}: knowing a pod's address tells which node it is on.\n",
        src_pod.node,
        node.show(&r, dst),
        far.name,
        block.as_ref().map(|b| format!(" {}", b.dst)).unwrap_or_default()
    );
    let made_by = match block.as_ref().map(|b| b.protocol) {
        Some(podnet_netlink::BIRD_ROUTE_PROTOCOL) => format!(
            "BIRD installed it (proto bird): {}",
            super::bgp::origin(lab, &src_pod.node, dst)?
        ),
        Some(podnet_netlink::AGENT_ROUTE_PROTOCOL) => format!(
            "podnet-agent on {} wrote it (proto 119) from the datastore, where {} registered its block",
            src_pod.node, far.name
        ),
        Some(p) => format!("made by {}", podnet_netlink::route_origin(p)),
        None => "no block route matched".into(),
    };
    out += &format!("   Where the route came from: {made_by}.\n");
    let outer = node.lookup(far.ip)?;
    let outer_src = outer
        .pref_source
        .map(|s| s.to_string())
        .unwrap_or_else(|| "?".into());
    match dev.as_str() {
        "tunl0" => out += &format!(
            "   tunl0 wraps the packet in a new IP header (IPIP, IP protocol 4): outer source {outer_src}, outer destination {}\n   (the route to it: `{}`), so the fabric only ever sees node addresses.\n\n",
            far.ip,
            node.show(&outer, far.ip)
        ),
        "vxlan.calico" => out += &format!(
            "   vxlan.calico wraps it in Ethernet + UDP port 4789 (VNI 4096): {gw} is at {}'s VXLAN MAC (a permanent\n   neighbour entry), and that MAC is behind {} (an FDB entry). Outer IP: {outer_src} -> {} (route `{}`).\n\n",
            far.name,
            far.ip,
            far.ip,
            node.show(&outer, far.ip)
        ),
        _ if routers.is_empty() => out += &format!("   No tunnel: the packet goes out {dev} as it is, to {} on the fabric.\n\n", far.ip),
        _ => {
            out += &format!("   No tunnel: the packet goes out {dev} as it is, to its router; the fabric's routers know every block:\n");
            out.extend(routers.iter().map(String::as_str));
            out += "\n";
        }
    }
    let mut far_ns = Ns::open(&far.name)?;
    let r = far_ns.lookup(dst)?;
    let last = far_ns.dev(&r);
    out += &format!(
        "3. On {}, {}the route to {dst} is `{}`: the veth {last} into the pod (its route, made by the CNI plugin).\n",
        far.name,
        if dev == "tunl0" || dev == "vxlan.calico" { format!("{dev} unwraps the packet; ") } else { String::new() },
        far_ns.show(&r, dst)
    );
    out += &format!(
        "4. In {}, {dst} is eth0's own /32: delivered.\n",
        inv.describe(dst)
    );
    out += &format!(
        "\nThe replies take the mirror path: {} routes {}'s block back {}.\n",
        far.name,
        src_pod.node,
        if dev == "tunl0" || dev == "vxlan.calico" {
            "through its tunnel"
        } else {
            "the same way"
        }
    );
    Ok(out)
}

/// Steps 3 and 4 of the way out, from the fabric's and the upstream router's route tables:
/// up to the provider, who has no route back to the pod pool.
fn upstream_steps(
    lab: &LabState,
    inv: &Inventory,
    gw: Ipv4Addr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    from: &str,
    node: &str,
) -> Result<String> {
    let mut fabric = Ns::open(&lab.fabric())?;
    let r = fabric.lookup(dst)?;
    let mut out = format!(
        "3. On the fabric's gateway ({gw}), `{}`: up to the upstream router, the provider.\n",
        fabric.show(&r, dst)
    );
    let mut upstream = Ns::open(&lab.upstream())?;
    let r = upstream.lookup(dst)?;
    out += &format!(
        "4. The upstream router, `{}`, hands it to {}. ",
        upstream.show(&r, dst),
        inv.describe(dst)
    );
    out += &match upstream.nl.route_to(src)? {
        None => format!(
            "It has no route to {src} (nor to the pod pool {}: no provider has), so the reply\n   goes to the node's address, and {node} turns it back into one for {from}.\n",
            lab.scenario.pool.cidr
        ),
        Some(r) => format!(
            "It has a route to {src} ({}): replies could reach the pod unmasqueraded.\n",
            upstream.show(&r, src)
        ),
    };
    Ok(out)
}
