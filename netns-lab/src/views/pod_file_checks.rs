//! `test`'s checks of the files kubelet writes into pods: every container sees its pod's own
//! `/etc/resolv.conf` and `/etc/hosts` (never the host's), and names looked up inside a pod
//! go through them.

use super::checks::{run_in_container, run_program_in_container, Checks};
use crate::state::{LabState, PodState};
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

pub fn run(t: &mut Checks, lab: &LabState) -> Result<()> {
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let specs = lab.scenario.pods();
    for pod in &lab.pods {
        let Some(spec) = specs.iter().find(|p| p.manifest.metadata.name == pod.name) else {
            continue;
        };
        let (resolv, _) = crate::runtime::pod_files(lab, pod, &spec.manifest.spec);
        for c in &pod.containers {
            let Some(p) = &c.process else { continue };
            // The file as the container's mount namespace shows it.
            let seen = |f: &str| std::fs::read_to_string(format!("/proc/{}/root/etc/{f}", p.pid));
            t.check(
                &format!("{}/{}: /etc/resolv.conf is the pod's own", pod.name, c.name),
                match seen("resolv.conf") {
                    Ok(s) if s == resolv && s != host_resolv => Ok(()),
                    Ok(s) => Err(format!("it reads {s:?}")),
                    Err(e) => Err(e.to_string()),
                },
            );
            let line = pod.ip().map(|ip| format!("\n{ip}\t{}\n", pod.name));
            t.check(
                &format!("{}/{}: /etc/hosts names the pod", pod.name, c.name),
                match (seen("hosts"), line) {
                    (Ok(s), Some(l)) if s.contains(&l) => Ok(()),
                    (Ok(s), _) => Err(format!("it reads {s:?}")),
                    (Err(e), _) => Err(e.to_string()),
                },
            );
        }
    }
    if let Some(pod) = lab.pods.first() {
        look_ups(t, lab, pod)?;
    }
    Ok(())
}

/// Inside `pod`: its own name through /etc/hosts (getent, glibc's own look-up), and a
/// Service's short name through the search list of its resolv.conf.
fn look_ups(t: &mut Checks, lab: &LabState, pod: &PodState) -> Result<()> {
    let Some(c) = pod.containers.first() else {
        return Ok(());
    };
    let ip = pod.ip().unwrap_or_default();
    let got = run_program_in_container(
        pod,
        &c.name,
        Path::new("getent"),
        &["hosts", &pod.name],
        Duration::from_secs(5),
    );
    t.check(
        &format!(
            "{}: getent hosts {} reads the pod's /etc/hosts ({ip})",
            pod.name, pod.name
        ),
        match got {
            Ok((Some(0), out)) if out.split_whitespace().next() == Some(ip.as_str()) => Ok(()),
            Ok((code, out)) => Err(format!("exit {code:?}: {}", out.trim())),
            Err(e) => Err(e.to_string()),
        },
    );
    let Some(s) = lab
        .scenario
        .services
        .iter()
        .find(|s| s.metadata.namespace == pod.namespace)
    else {
        return Ok(());
    };
    let Some(ip) = s.spec.cluster_ip.as_ref().filter(|ip| *ip != "None") else {
        return Ok(());
    };
    let name = &s.metadata.name;
    let got = run_in_container(pod, &c.name, &["resolve", name], Duration::from_secs(10));
    t.check(
        &format!(
            "{}: the short name {name} resolves through the pod's search list to {ip}",
            pod.name
        ),
        match got {
            Ok((Some(0), out)) if out.lines().any(|l| l == format!("Address: {ip}")) => Ok(()),
            Ok((code, out)) => Err(format!("exit {code:?}: {}", out.trim())),
            Err(e) => Err(e.to_string()),
        },
    );
    Ok(())
}
