//! `up`'s last step: the scenario's Services stored with their endpoints (the lab plays the
//! API server and the EndpointSlice controller), a stand-in API server on each control-plane
//! node for the `kubernetes` Service, and on every node a service proxy and the node-local
//! DNS; returns once every node's table serves every ClusterIP and every node's DNS answers.

use crate::cluster_dns::{DOMAIN, NODE_LOCAL_DNS};
use crate::procs::{self, Placement, PodNs};
use crate::runtime::Binaries;
use crate::services::{record, settle, RunningPod};
use crate::state::LabState;
use anyhow::{bail, Context, Result};
use podnet_ipam::services::ServiceRecord;
use podnet_netlink::netns::Netns;
use podnet_netlink::nft::Nftables;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The Services as they should be stored, from the scenario and the running pods.
pub fn records(lab: &LabState) -> Result<Vec<ServiceRecord>> {
    let settled = settle(&lab.scenario.services, lab.scenario.service_cidr)?;
    let manifests = lab.scenario.pods();
    let running: Vec<RunningPod> = lab
        .pods
        .iter()
        .filter_map(|p| {
            let ip: Ipv4Addr = p.ip()?.parse().ok()?;
            let m = manifests
                .iter()
                .find(|m| m.manifest.metadata.name == p.name)?;
            Some(RunningPod {
                manifest: &m.manifest,
                ip,
            })
        })
        .collect();
    let control_plane = control_plane(lab);
    Ok(settled
        .iter()
        .map(|s| record(s, &running, &control_plane))
        .collect())
}

fn control_plane(lab: &LabState) -> Vec<Ipv4Addr> {
    lab.scenario
        .nodes
        .iter()
        .filter(|n| n.roles.iter().any(|r| r == "control-plane"))
        .map(|n| n.ip)
        .collect()
}

/// Every node's service proxy and node-local DNS, also in a lab without Services: every pod's
/// resolv.conf names the DNS, and Services may be applied later.
pub fn start(lab: &mut LabState, bins: &Binaries) -> Result<()> {
    crate::apply::store_services(lab)?;
    let records = records(lab)?;
    // What to run where: (node, arguments, log file).
    let mut daemons: Vec<(String, Vec<String>, String)> = Vec::new();
    // The API server's stand-in answers HTTP on the kubernetes Service's target port.
    let api = records
        .iter()
        .find(|r| r.namespace == "default" && r.name == "kubernetes" && r.selector.is_empty());
    if let Some(port) = api.and_then(|r| r.ports.first()).map(|p| p.target_port) {
        for n in lab
            .scenario
            .nodes
            .iter()
            .filter(|n| n.roles.iter().any(|r| r == "control-plane"))
        {
            let args = vec!["serve-http".into(), "--port".into(), port.to_string()];
            daemons.push((n.name.clone(), args, format!("apiserver-{}.log", n.name)));
        }
    }
    let nodes: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    for n in &nodes {
        // The node-local DNS address, on lo: pods reach it through their node.
        Netns::open(LabState::netns_path(n))?.run(|| -> Result<()> {
            let mut nl = podnet_netlink::Netlink::open()?;
            let lo = nl.link("lo")?.context("lo vanished")?;
            // Scope host: the node never answers anything else from it (a traceroute's hop 1
            // stays the node's own address, as in the seed).
            nl.add_host_address(lo.index, NODE_LOCAL_DNS)?;
            Ok(())
        })??;
        let args = vec![
            "--lab".into(),
            lab.name.clone(),
            "dns".into(),
            "--node".into(),
            n.clone(),
        ];
        daemons.push((n.clone(), args, format!("dns-{n}.log")));
    }
    for n in &nodes {
        let args = vec![
            "--lab".into(),
            lab.name.clone(),
            "proxy".into(),
            "--node".into(),
            n.clone(),
        ];
        daemons.push((n.clone(), args, format!("proxy-{n}.log")));
    }
    for (node, args, log) in daemons {
        let mut cmd = Command::new(bins.path("podnet-lab"));
        cmd.args(args);
        let netns = LabState::netns_path(&node);
        let p = procs::spawn_daemon(
            cmd,
            &Placement {
                netns: &netns,
                pod: PodNs::Host {
                    hostname: Some(&node),
                },
                detach: true,
            },
            &lab.logs().join(log),
        )?;
        lab.service_procs.push(p);
    }
    lab.save()?;
    let ports: usize = records
        .iter()
        .filter(|r| r.cluster_ip.is_some() && !r.endpoints.is_empty())
        .map(|r| r.ports.len())
        .sum();
    wait_for_proxies(&nodes, ports)?;
    // Any answer will do (NXDOMAIN too): the server is up.
    let name = records
        .first()
        .map_or(format!("kubernetes.default.svc.{DOMAIN}"), |r| {
            format!("{}.{}.svc.{DOMAIN}", r.name, r.namespace)
        });
    wait_for_dns(&nodes, &name)
}

/// Until every node's DNS answers `name` (at most a minute).
fn wait_for_dns(nodes: &[String], name: &str) -> Result<()> {
    let start = Instant::now();
    for n in nodes {
        let ns = Netns::open(LabState::netns_path(n))?;
        while !ns.run(|| {
            crate::dns::resolve(
                (NODE_LOCAL_DNS, 53).into(),
                name,
                Duration::from_millis(200),
            )
            .is_ok()
        })? {
            if start.elapsed() > WAIT {
                bail!("node {n}'s DNS did not answer {name} within {WAIT:?} (see dns-{n}.log)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Until every node's `services` map holds `ports` elements (at most a minute: a node takes
/// milliseconds, but a VM under software emulation is slower by far).
fn wait_for_proxies(nodes: &[String], ports: usize) -> Result<()> {
    let start = Instant::now();
    for n in nodes {
        let ns = Netns::open(LabState::netns_path(n))?;
        loop {
            let have = ns.run(|| -> Result<usize> {
                let t = Nftables::open()?.read(podnet_proxy::rules::TABLE)?;
                Ok(
                    t.and_then(|t| t.map("services").map(|m| m.elements().len()))
                        .unwrap_or(usize::MAX),
                )
            })??;
            if have == ports {
                break;
            }
            if start.elapsed() > WAIT {
                bail!("node {n}'s service proxy did not program the Services within {WAIT:?} (see proxy-{n}.log)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
