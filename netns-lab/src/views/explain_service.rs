//! `explain POD SERVICE[:PORT]` (a Service by name, `ns/name`, or its ClusterIP): the DNAT
//! step read from the pod's node's table `ip podnet-proxy` (the services map, the Service's
//! random pick, the endpoint's DNAT), then the path to the endpoint as `explain` shows it.

use crate::state::LabState;
use anyhow::{bail, Context, Result};
use podnet_ipam::services::{self, ServiceRecord};
use podnet_netlink::netns::Netns;
use podnet_netlink::nft::{Expr, Map, Nftables, Rule, Table, Verdict};
use std::net::Ipv4Addr;

/// The Service `to` names, and the port asked for (its first port unless given).
pub(super) fn service_of(stored: &[ServiceRecord], to: &str) -> Option<(ServiceRecord, u16)> {
    let (what, port) = match to.rsplit_once(':') {
        Some((w, p)) => (w, p.parse().ok()?),
        None => (to, 0),
    };
    let s = stored.iter().find(|s| {
        s.name == what
            || format!("{}/{}", s.namespace, s.name) == what
            || s.cluster_ip.is_some_and(|ip| ip.to_string() == what)
    })?;
    let port = if port == 0 {
        s.ports.first()?.port
    } else {
        port
    };
    Some((s.clone(), port))
}

/// `None` when `to` is no Service (the caller explains a pod or an address instead).
pub fn explain_service(lab: &LabState, from: &str, to: &str) -> Result<Option<String>> {
    if lab.scenario.services.is_empty() {
        return Ok(None);
    }
    let stored = lab.with_store(|s| services::list(s))??;
    let Some((svc, port)) = service_of(&stored, to) else {
        return Ok(None);
    };
    let Some(cluster_ip) = svc.cluster_ip else {
        bail!("Service {}/{} is headless: it has no ClusterIP to explain (its name resolves to its pods)", svc.namespace, svc.name);
    };
    let Some(p) = svc.ports.iter().find(|p| p.port == port) else {
        bail!("Service {}/{} has no port {port}", svc.namespace, svc.name);
    };
    let proto = if p.protocol == "UDP" { 17 } else { 6 };
    let pod = lab.pod(from)?;
    let node = pod.node.clone();
    let table = Netns::open(LabState::netns_path(&node))?
        .run(|| Nftables::open()?.read(podnet_proxy::rules::TABLE))??
        .with_context(|| {
            format!("{node} has no table ip podnet-proxy: is its service proxy running?")
        })?;
    let mut out = format!(
        "How a packet from pod {from} ({}) reaches Service {}/{} ({cluster_ip}:{port}):\n\n",
        pod.ip().unwrap_or_default(),
        svc.namespace,
        svc.name
    );
    let key = Map::service_key(cluster_ip, proto, port);
    let services = table
        .map("services")
        .context("table ip podnet-proxy has no services map")?;
    let Some((_, Verdict::Goto(chain))) = services.elements().iter().find(|(k, _)| *k == key)
    else {
        let refused = table
            .map("no-endpoint-services")
            .is_some_and(|m| m.elements().iter().any(|(k, _)| *k == key));
        out += &format!(
            "0. On {node}, table ip podnet-proxy has no endpoint for {}: {}\n",
            services.show_key(&key),
            if refused {
                "the Service has no endpoints, and chain reject-chain refuses the connection (ICMP port unreachable)."
            } else {
                "the proxy has not programmed this Service (yet)."
            }
        );
        return Ok(Some(out));
    };
    let pick = rule_of(&table, chain)?;
    let endpoints = endpoints(&table, &pick)?;
    out += &format!(
        "0. On {node}, before routing (nat prerouting, dstnat), table ip podnet-proxy, kube-proxy's nftables mode:\n   \
         chain services `{}` finds `{} : goto {chain}`;\n   \
         that chain `{pick}` picks one of {} endpoints at random: {};\n   \
         the endpoint's chain DNATs (`{}`), and conntrack keeps the choice for the connection (replies are\n   \
         translated back). The seed's kube-ipvs0 does the same with IPVS: the ClusterIP on a dummy device, IPVS\n   \
         choosing the real server. This host has neither, so the lab uses the nftables mode.\n\n",
        rule_of(&table, "services")?,
        services.show_key(&key),
        endpoints.len(),
        endpoints.iter().map(|(ip, port, _)| format!("{ip}:{port}")).collect::<Vec<_>>().join(", "),
        endpoints.first().map(|(_, _, r)| r.to_string()).unwrap_or_default(),
    );
    let Some((first, _, _)) = endpoints.first() else {
        return Ok(Some(out));
    };
    let is_pod = lab
        .pods
        .iter()
        .any(|p| p.ip().is_some_and(|ip| ip == first.to_string()));
    if !is_pod {
        let inv = crate::inventory::Inventory::read(lab);
        out += &format!(
            "Then to the endpoint {first} ({}): an address of the node network, which the packet reaches from\n\
             {node} like any node-to-node traffic (over ens3, no tunnel).\n",
            inv.describe(*first)
        );
        return Ok(Some(out));
    }
    out += &format!("Then, to the endpoint {first} (the first of them):\n\n");
    out += &super::explain::explain(lab, from, &first.to_string())?;
    Ok(Some(out))
}

/// The first rule of `chain`.
fn rule_of(t: &Table, chain: &str) -> Result<Rule> {
    t.chain(chain)
        .and_then(|c| c.rules.first().cloned())
        .with_context(|| format!("table ip podnet-proxy has no rule in chain {chain}"))
}

/// Each endpoint a service chain's pick can go to: address, port, and its DNAT rule.
fn endpoints(t: &Table, pick: &Rule) -> Result<Vec<(Ipv4Addr, u16, Rule)>> {
    let map = pick
        .exprs
        .iter()
        .find_map(|e| match e {
            Expr::Vmap { map } => Some(map.clone()),
            _ => None,
        })
        .context("the service chain picks no endpoint")?;
    let map = t.map(&map).with_context(|| format!("no map {map}"))?;
    let mut out = Vec::new();
    for (_, v) in map.elements() {
        let Verdict::Goto(chain) = v else { continue };
        let Some(dnat) = t
            .chain(chain)
            .and_then(|c| c.rules.iter().find(|r| r.exprs.contains(&Expr::Dnat)))
        else {
            continue;
        };
        let imm = |reg: u32| {
            dnat.exprs.iter().find_map(|e| match e {
                Expr::Immediate { reg: r, data } if *r == reg => Some(data.clone()),
                _ => None,
            })
        };
        if let (Some(ip), Some(port)) = (imm(1), imm(2)) {
            let ip = <[u8; 4]>::try_from(ip.as_slice()).map(Ipv4Addr::from);
            let port = <[u8; 2]>::try_from(port.as_slice()).map(u16::from_be_bytes);
            if let (Ok(ip), Ok(port)) = (ip, port) {
                out.push((ip, port, dnat.clone()));
            }
        }
    }
    Ok(out)
}
