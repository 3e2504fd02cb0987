//! BGP in the lab (routing by BIRD, the seed's way): each node's sessions and where a route came
//! from, asked of the node's own `podnet-agent bgp ...` commands, which read its BIRD over the
//! control socket. The lab never talks to BIRD itself.

use crate::runtime::Binaries;
use crate::state::LabState;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::process::Command;

/// A row of `podnet-agent bgp status -o json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub address: String,
    pub peer_type: String,
    pub state: String,
    pub since: String,
    pub info: String,
    pub protocol: String,
    pub neighbor_as: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct Status {
    bird: Option<String>,
    peers: Vec<Session>,
}

/// BIRD's answer for a route (`podnet-agent bgp route`).
#[derive(Debug, Clone, Deserialize)]
pub struct BgpRoute {
    pub network: String,
    pub protocol: String,
    pub kind: String,
    pub bgp_next_hop: Option<String>,
    pub bgp_as_path: Option<String>,
}

fn agent(lab: &LabState, node: &str, args: &[&str]) -> Result<String> {
    if !lab.nodes.iter().any(|n| n.name == node) {
        bail!("no node {node} in lab {}", lab.name);
    }
    if !lab.bgp() {
        bail!(
            "lab {} routes without BGP (--routing {}): there is no BIRD to ask",
            lab.name,
            lab.routing
        );
    }
    let bins = Binaries::find()?;
    let out = Command::new(bins.path("podnet-agent"))
        .args(["--no-config", "bgp"])
        .args(args)
        .arg("--state-dir")
        .arg(lab.node_dir(node))
        .output()
        .context("run podnet-agent bgp")?;
    if !out.status.success() {
        bail!(
            "podnet-agent bgp {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `podnet-lab bgp NODE`: the node's BGP status table, as `calicoctl node status` prints it.
pub fn status(lab: &LabState, node: &str) -> Result<String> {
    agent(lab, node, &["status"])
}

/// Every session of the node up and Established (and at least one when it has peers to have).
pub fn all_established(lab: &LabState, node: &str) -> Result<usize, String> {
    let s = sessions(lab, node).map_err(|e| format!("{e:#}"))?;
    let down: Vec<String> = s
        .iter()
        .filter(|s| s.state != "up" || s.info != "Established")
        .map(|s| format!("{} {} ({})", s.address, s.state, s.info))
        .collect();
    if !down.is_empty() {
        return Err(format!("not Established: {}", down.join(", ")));
    }
    if s.is_empty() && lab.nodes.len() > 1 {
        return Err("no BGP session".into());
    }
    Ok(s.len())
}

/// The node's sessions; an error if its BIRD does not answer.
pub fn sessions(lab: &LabState, node: &str) -> Result<Vec<Session>> {
    let s: Status = serde_json::from_str(&agent(lab, node, &["status", "-o", "json"])?)?;
    if s.bird.is_none() {
        bail!("the BIRD of {node} does not answer");
    }
    Ok(s.peers)
}

/// BIRD's route on `node` for `addr`, if it has one.
pub fn route(lab: &LabState, node: &str, addr: Ipv4Addr) -> Result<Option<BgpRoute>> {
    Ok(serde_json::from_str(&agent(
        lab,
        node,
        &["route", &addr.to_string()],
    )?)?)
}

/// One sentence on where `node`'s route to `addr` came from, from BIRD's own answer:
/// "learned by BGP from sung-ubuntu05 (192.168.110.104, AS 64512), node-to-node mesh session up
/// since 20:14:20.615".
pub fn origin(lab: &LabState, node: &str, addr: Ipv4Addr) -> Result<String> {
    let Some(r) = route(lab, node, addr)? else {
        return Ok(format!("BIRD on {node} has no route for {addr}"));
    };
    if !r.kind.starts_with("BGP") {
        return Ok(format!(
            "BIRD on {node} originates {} itself ({}, protocol {})",
            r.network, r.kind, r.protocol
        ));
    }
    let session = sessions(lab, node)?
        .into_iter()
        .find(|s| s.protocol == r.protocol);
    let inv = crate::inventory::Inventory::read(lab);
    let peer = session
        .as_ref()
        .map(|s| s.address.clone())
        .unwrap_or_default();
    let name = match peer.parse() {
        Ok(ip) => inv
            .host_of(ip)
            .map(str::to_string)
            .unwrap_or_else(|| match inv.describe(ip) {
                "" => "a peer".to_string(),
                d => d.to_string(),
            }),
        Err(_) => "a peer".to_string(),
    };
    let mut out = format!("learned by BGP from {name} ({peer}");
    if let Some(asn) = session.as_ref().and_then(|s| s.neighbor_as) {
        out += &format!(", AS {asn}");
    }
    out += ")";
    if let Some(s) = &session {
        out += &format!(", {} session {} since {}", s.peer_type, s.info, s.since);
    }
    if let Some(nh) = &r.bgp_next_hop {
        out += &format!("; BGP next hop {nh}");
    }
    match r.bgp_as_path.as_deref() {
        Some("") => out += ", AS path empty (iBGP: same AS)",
        Some(p) => out += &format!(", AS path {p}"),
        None => {}
    }
    out += &format!(" (BIRD: {} from protocol {})", r.network, r.protocol);
    Ok(out)
}
