//! `test`'s checks of Services: every pod reaches every ClusterIP; a Service's requests spread
//! over all its endpoints; a pod reaching itself through its Service (hairpin) gets answers.

use super::checks::Checks;
use crate::state::LabState;
use anyhow::Result;
use podnet_ipam::services::{self, ServiceRecord};
use podnet_netlink::netns::Netns;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

pub fn run(t: &mut Checks, lab: &LabState) -> Result<()> {
    if lab.scenario.services.is_empty() {
        return Ok(());
    }
    let stored: Vec<ServiceRecord> = lab.with_store(|s| services::list(s))??;
    let served: Vec<&ServiceRecord> = stored
        .iter()
        .filter(|s| s.cluster_ip.is_some() && !s.endpoints.is_empty())
        .collect();
    every_pod_reaches_every_service(t, lab, &served)?;
    if let (Some(s), Some(pod)) = (
        served.iter().max_by_key(|s| s.endpoints.len()),
        lab.pods.first(),
    ) {
        spread(t, &pod.name, s)?;
    }
    for s in &served {
        let Some(pod) = lab.pods.iter().find(|p| {
            p.ip()
                .and_then(|ip| ip.parse().ok())
                .is_some_and(|ip: Ipv4Addr| s.endpoints.contains(&ip))
        }) else {
            continue;
        };
        hairpin(t, &pod.name, s)?;
    }
    Ok(())
}

fn url(s: &ServiceRecord) -> Option<String> {
    Some(format!(
        "http://{}:{}/",
        s.cluster_ip?,
        s.ports.first()?.port
    ))
}

fn every_pod_reaches_every_service(
    t: &mut Checks,
    lab: &LabState,
    served: &[&ServiceRecord],
) -> Result<()> {
    let mut failed = Vec::new();
    for p in &lab.pods {
        let ns = Netns::open(LabState::netns_path(&p.name))?;
        for s in served {
            for port in &s.ports {
                let addr = (s.cluster_ip.expect("served"), port.port).into();
                let ok =
                    ns.run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())?;
                if !ok {
                    failed.push(format!("{} -> {}:{}", p.name, addr.ip(), port.port));
                }
            }
        }
    }
    let n = lab.pods.len() * served.iter().map(|s| s.ports.len()).sum::<usize>();
    t.check(
        &format!("every pod reaches every Service by its ClusterIP ({n} connections)"),
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join(", "))
        },
    );
    Ok(())
}

/// Which endpoint answered: the stand-ins say their pod (or node) name.
fn who(page: &str) -> Option<String> {
    let rest = page.split("stand-in in pod ").nth(1)?;
    Some(rest.split('<').next()?.trim().to_string())
}

/// `n` HTTP requests from `pod` to `url`: who answered each (`None`: nobody).
fn ask(pod: &str, url: &str, n: usize) -> Result<Vec<Option<String>>> {
    let ns = Netns::open(LabState::netns_path(pod))?;
    Ok(ns.run(|| {
        (0..n)
            .map(|_| crate::serve::http_get(url).ok().and_then(|p| who(&p)))
            .collect()
    })?)
}

fn spread(t: &mut Checks, pod: &str, s: &ServiceRecord) -> Result<()> {
    let Some(url) = url(s) else { return Ok(()) };
    let answered = ask(pod, &url, 100)?;
    let seen: BTreeSet<String> = answered.iter().flatten().cloned().collect();
    let lost = answered.iter().filter(|a| a.is_none()).count();
    t.check(
        &format!(
            "100 requests from {pod} to {} ({url}) reach all {} endpoints",
            s.name,
            s.endpoints.len()
        ),
        if lost == 0 && seen.len() == s.endpoints.len() {
            Ok(())
        } else {
            Err(format!("answered by {seen:?}, {lost} without an answer"))
        },
    );
    Ok(())
}

fn hairpin(t: &mut Checks, pod: &str, s: &ServiceRecord) -> Result<()> {
    let Some(url) = url(s) else { return Ok(()) };
    let answered = ask(pod, &url, 30)?;
    let own = answered.iter().flatten().filter(|w| *w == pod).count();
    let lost = answered.iter().filter(|a| a.is_none()).count();
    t.check(
        &format!(
            "{pod} reaches itself through Service {} (hairpin, masqueraded by its node)",
            s.name
        ),
        match (lost, own) {
            (0, 1..) => Ok(()),
            (0, 0) => Err(format!("30 requests, none landed on {pod} itself")),
            (n, _) => Err(format!("{n} of 30 requests got no answer")),
        },
    );
    Ok(())
}
