//! The scenario's routers (a rack's top-of-rack router, a spine): namespaces with one
//! interface per network they are on, forwarding on, and BIRD as a plain BGP router. Their
//! config is the lab's own (routers are not podnet nodes): eBGP with every node on their
//! segments and every other router on a shared network, next hops kept (so a tunnel between
//! racks ends at the far node, not at a router), everything imported, exported and installed.
//!
//! Also here: the BGP settings the lab writes before the agents start (the scenario's mesh
//! setting and route reflectors, each node's AS, each node peering with its segment's routers).

use crate::procs::{self, Placement, PodNs};
use crate::scenario::{Router, Scenario};
use crate::state::{LabState, Proc};
use anyhow::{Context, Result};
use podnet_netlink::{Netlink, Netns, VethSpec};
use std::fmt::Write;
use std::process::Command;

/// The interface name a router has on a network: `eth-<network>` (at most 15 characters).
pub fn interface(network: &str) -> String {
    format!("eth-{network}")
}

/// BIRD's config for router `r`: static routes to the other routers' networks (the lab's
/// stand-in for an IGP), eBGP carrying the pool's blocks with next hops kept.
pub fn render(s: &Scenario, r: &Router) -> String {
    let id = r.interfaces.values().next().copied().expect("validated");
    let pool = s.pool.cidr;
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# BIRD config of lab router {}, written by podnet-lab.",
        r.name
    );
    c.push_str("log stderr { info, remote, warning, error, auth, fatal, bug };\n");
    let _ = writeln!(c, "router id {id};");
    c.push_str("protocol device { scan time 2; }\nprotocol direct { ipv4; }\n");
    c.push_str("protocol kernel {\n  ipv4 { import none; export all; };\n  merge paths on;\n  scan time 2;\n}\n");
    // The networks behind other routers that share a network with this one.
    c.push_str("protocol static infrastructure {\n  ipv4;\n");
    for other in s.routers.iter().filter(|o| o.name != r.name) {
        let Some(via) = other
            .interfaces
            .iter()
            .find(|(n, _)| r.interfaces.contains_key(*n))
            .map(|(_, ip)| *ip)
        else {
            continue;
        };
        for net in other
            .interfaces
            .keys()
            .filter(|n| !r.interfaces.contains_key(*n))
        {
            if let Some(subnet) = s.subnet(net) {
                let _ = writeln!(c, "  route {} via {via};", subnet.trunc());
            }
        }
    }
    c.push_str("}\n");
    let _ = writeln!(
        c,
        "filter lab_pool_only {{\n  if ( net ~ [ {pool}+ ] ) then accept;\n  reject;\n}}"
    );
    c.push_str(
        "template bgp lab_peer {\n  multihop;\n  connect delay time 1;\n  connect retry time 2;\n  \
         error wait time 1, 10;\n  ipv4 { import all; export filter lab_pool_only; next hop keep; gateway recursive; };\n}\n",
    );
    for (net, my_ip) in &r.interfaces {
        for n in s
            .nodes
            .iter()
            .filter(|n| n.segment.as_deref() == Some(net.as_str()))
        {
            let asn = n.as_number.unwrap_or(podnet_ipam::bgp::DEFAULT_AS);
            let _ = writeln!(
                c,
                "protocol bgp {} from lab_peer {{\n  local {my_ip} as {};\n  neighbor {} as {asn};\n}}",
                proto_name(&n.name),
                r.as_number,
                n.ip
            );
        }
        for other in s.routers.iter().filter(|o| o.name != r.name) {
            if let Some(ip) = other.interfaces.get(net) {
                let _ = writeln!(
                    c,
                    "protocol bgp {} from lab_peer {{\n  local {my_ip} as {};\n  neighbor {ip} as {};\n}}",
                    proto_name(&other.name),
                    r.as_number,
                    other.as_number
                );
            }
        }
    }
    c
}

/// A BIRD protocol name for a peer: letters, digits and `_`.
fn proto_name(name: &str) -> String {
    format!(
        "peer_{}",
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
    )
}

/// Each router's namespace, its interfaces on the fabric's bridges (`bridges`: network ->
/// bridge index in the fabric namespace), forwarding on.
pub fn build(lab: &LabState, fabric: &mut Netlink, bridges: &[(String, u32)]) -> Result<()> {
    let fabric_ns = Netns::open(LabState::netns_path(&lab.fabric()))?;
    for (i, r) in lab.scenario.routers.iter().enumerate() {
        let ns = Netns::open(LabState::netns_path(&r.name))?;
        for (j, (net, ip)) in r.interfaces.iter().enumerate() {
            let bridge = bridges
                .iter()
                .find(|(n, _)| n == net)
                .map(|(_, b)| *b)
                .with_context(|| format!("no bridge for {net}"))?;
            let port = format!("r{i}p{j}");
            let name = interface(net);
            fabric.add_veth(&VethSpec {
                name: &port,
                mac: None,
                mtu: 1500,
                alias: None,
                peer_name: &name,
                peer_netns: Some(ns.fd()),
            })?;
            let p = fabric.link(&port)?.context("router port vanished")?;
            fabric.set_controller(p.index, bridge)?;
            fabric.set_up(p.index)?;
            let subnet = lab.scenario.subnet(net).expect("validated");
            let (ip, prefix) = (*ip, subnet.prefix_len());
            let name2 = name.clone();
            let upstream = (net == crate::scenario::FABRIC).then_some(lab.scenario.gateway);
            ns.run(move || -> Result<()> {
                let mut nl = Netlink::open()?;
                for l in ["lo", name2.as_str()] {
                    let link = nl.link(l)?.with_context(|| format!("{l} vanished"))?;
                    nl.set_up(link.index)?;
                }
                let link = nl.link(&name2)?.context("router interface vanished")?;
                nl.add_address(link.index, ipnet::Ipv4Net::new(ip, prefix)?)?;
                if let Some(gw) = upstream {
                    // Anything not learned by BGP goes to the upstream router (the way out).
                    nl.add_route(
                        &podnet_netlink::RouteSpec::default_via(gw, link.index, false),
                        false,
                    )?;
                }
                podnet_netlink::sysctl::write("net.ipv4.ip_forward", "1")?;
                crate::up::answer_every_probe()?;
                Ok(())
            })??;
        }
    }
    drop(fabric_ns);
    Ok(())
}

/// Starts every router's BIRD on its rendered config (under the lab's folder).
pub fn start(lab: &LabState) -> Result<Vec<Proc>> {
    let mut out = Vec::new();
    for r in &lab.scenario.routers {
        let dir = lab.dir().join("routers").join(&r.name);
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("bird.conf");
        std::fs::write(&conf, render(&lab.scenario, r))?;
        let mut cmd = Command::new("bird");
        cmd.args(["-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .env("PODNET_LAB", &lab.name);
        out.push(procs::spawn_daemon(
            cmd,
            &Placement {
                netns: &LabState::netns_path(&r.name),
                pod: PodNs::Host {
                    hostname: Some(&r.name),
                },
                detach: true,
            },
            &lab.logs().join(format!("router-{}.log", r.name)),
        )?);
    }
    Ok(out)
}

/// The BGP settings of a cluster with routers: the scenario's mesh setting, each node's AS,
/// and each node on a segment peering with that segment's routers.
pub fn write_bgp_settings(lab: &LabState) -> Result<()> {
    let s = &lab.scenario;
    if s.bgp.is_none() && s.routers.is_empty() && s.nodes.iter().all(|n| n.as_number.is_none()) {
        return Ok(());
    }
    lab.with_store(|store| {
        podnet_ipam::bgp::change(store, |b| {
            if let Some(bgp) = &s.bgp {
                b.cluster.node_to_node_mesh = bgp.node_to_node_mesh;
                for rr in &bgp.route_reflectors {
                    b.nodes
                        .entry(rr.clone())
                        .or_default()
                        .route_reflector_cluster_id = Some(crate::scenario::REFLECTOR_CLUSTER_ID);
                }
            }
            for n in &s.nodes {
                if let Some(asn) = n.as_number {
                    b.nodes.entry(n.name.clone()).or_default().as_number = Some(asn);
                }
                for (r, ip) in s.routers_of(n) {
                    b.peers.push(podnet_ipam::bgp::Peer {
                        name: format!("{}-{}", r.name, n.name),
                        peer_ip: ip,
                        as_number: r.as_number,
                        node: Some(n.name.clone()),
                    });
                }
            }
            Ok(())
        })
    })?
    .context("write the scenario's BGP settings")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_racks_routers_peer_with_their_nodes_and_each_other() {
        let s = Scenario::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/two-racks.yaml"),
        )
        .unwrap();
        let tor1 = s.routers.iter().find(|r| r.name == "tor1").unwrap();
        let c = render(&s, tor1);
        assert!(c.contains("router id 10.10.0.1;"), "{c}");
        assert!(c.contains("neighbor 10.10.1.11 as 65111;"), "{c}");
        assert!(
            c.contains("neighbor 10.10.0.2 as 65002;"),
            "the other rack's router: {c}"
        );
        assert!(
            !c.contains("10.10.2.11"),
            "nodes of the other rack are tor2's: {c}"
        );
        assert!(c.contains("next hop keep;"));
        assert!(
            c.contains("route 10.10.2.0/24 via 10.10.0.2;"),
            "rack2 is behind tor2: {c}"
        );
        let dir = tempfile::tempdir().unwrap();
        for r in &s.routers {
            let path = dir.path().join(format!("{}.conf", r.name));
            std::fs::write(&path, render(&s, r)).unwrap();
            let out = Command::new("bird")
                .arg("-p")
                .arg("-c")
                .arg(&path)
                .output()
                .expect("bird (Debian package bird2; cargo xtask test installs it)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
