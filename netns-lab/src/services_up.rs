//! `up`'s last step: the scenario's Services stored with their endpoints (the lab plays the
//! API server and the EndpointSlice controller), a stand-in API server on each control-plane
//! node for the `kubernetes` Service, and a service proxy on every node; returns once every
//! node's table serves every ClusterIP.

use crate::procs::{self, Placement};
use crate::runtime::Binaries;
use crate::services::{record, settle, RunningPod};
use crate::state::LabState;
use anyhow::{bail, Result};
use podnet_ipam::services::{self, ServiceRecord};
use podnet_netlink::netns::Netns;
use podnet_netlink::nft::Nftables;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

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

pub fn start(lab: &mut LabState, bins: &Binaries) -> Result<()> {
    if lab.scenario.services.is_empty() {
        return Ok(());
    }
    let records = records(lab)?;
    let stored = records.clone();
    lab.with_store(move |s| -> Result<()> {
        for r in &stored {
            services::put(s, r)?;
        }
        Ok(())
    })??;
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
                uts_of: None,
                hostname: Some(&node),
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
    wait_for_proxies(&nodes, ports)
}

/// Until every node's `services` map holds `ports` elements (at most 10 s).
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
            if start.elapsed() > Duration::from_secs(10) {
                bail!("node {n}'s service proxy did not program the Services within 10 s (see proxy-{n}.log)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
