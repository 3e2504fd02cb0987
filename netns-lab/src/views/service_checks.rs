//! `test`'s checks of Services: every pod reaches every ClusterIP; a Service's requests spread
//! over all its endpoints; a pod reaching itself through its Service (hairpin) gets answers.

use super::checks::Checks;
use crate::cluster_dns::{DOMAIN, NODE_LOCAL_DNS};
use crate::dns::{resolve, Found};
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
    if let Some(pod) = lab.pods.first() {
        dns_checks(t, lab, &pod.name, &stored)?;
    }
    if let (Some(s), Some(pod)) = (
        served.iter().max_by_key(|s| s.endpoints.len()),
        lab.pods.first(),
    ) {
        spread(t, &pod.name, s)?;
    }
    if let (Some(s), Some(pod)) = (
        served
            .iter()
            .find(|s| s.endpoints.iter().all(|ip| pod_at(lab, *ip).is_some())),
        lab.pods.first(),
    ) {
        trace_checks(t, lab, &pod.name, s)?;
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
    let pod_backed = served.iter().find(|s| {
        s.endpoints.len() >= 2 && s.endpoints.iter().all(|ip| pod_at(lab, *ip).is_some())
    });
    if let (Some(s), Some(client)) = (pod_backed, lab.pods.first()) {
        endpoint_goes_away(t, lab, &client.name, s)?;
    }
    Ok(())
}

/// The pod whose address `ip` is.
fn pod_at(lab: &LabState, ip: Ipv4Addr) -> Option<String> {
    lab.pods
        .iter()
        .find(|p| p.ip().is_some_and(|a| a == ip.to_string()))
        .map(|p| p.name.clone())
}

/// An endpoint leaves the Service (as when its pod stops being ready): after 1 s no new
/// connection reaches it; put back, it serves again.
fn endpoint_goes_away(
    t: &mut Checks,
    lab: &LabState,
    client: &str,
    s: &ServiceRecord,
) -> Result<()> {
    let Some(url) = url(s) else { return Ok(()) };
    let gone = *s.endpoints.last().expect("two or more");
    let gone_pod = pod_at(lab, gone).expect("a pod's address");
    let mut fewer = s.clone();
    fewer.endpoints.retain(|ip| *ip != gone);
    lab.with_store(|st| services::put(st, &fewer))??;
    std::thread::sleep(Duration::from_secs(1));
    let answered = ask(client, &url, 40);
    let restored = lab.with_store(|st| services::put(st, s))?;
    let answered = answered?;
    restored?;
    let reached_gone = answered
        .iter()
        .flatten()
        .filter(|w| **w == gone_pod)
        .count();
    let lost = answered.iter().filter(|a| a.is_none()).count();
    t.check(
        &format!("1 s after endpoint {gone} ({gone_pod}) leaves Service {}, no new connection reaches it", s.name),
        match (reached_gone, lost) {
            (0, 0) => Ok(()),
            (n, 0) => Err(format!("{n} of 40 requests still reached {gone_pod}")),
            (_, n) => Err(format!("{n} of 40 requests got no answer")),
        },
    );
    // Back: it serves again within a few seconds.
    let start = std::time::Instant::now();
    let mut back = false;
    while !back && start.elapsed() < Duration::from_secs(5) {
        back = ask(client, &url, 10)?
            .iter()
            .flatten()
            .any(|w| *w == gone_pod);
    }
    t.check(
        &format!(
            "endpoint {gone} ({gone_pod}) back in Service {}: it serves again",
            s.name
        ),
        if back {
            Ok(())
        } else {
            Err("never reached".into())
        },
    );
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
    let (mut by_ip, mut by_name) = (Vec::new(), Vec::new());
    for p in &lab.pods {
        let ns = Netns::open(LabState::netns_path(&p.name))?;
        for s in served {
            let name = format!("{}.{}.svc.{DOMAIN}", s.name, s.namespace);
            let named = match ns.run(|| lookup(&name))? {
                Ok(Found::Addresses(ips)) => ips.first().copied(),
                _ => None,
            };
            let ip = s.cluster_ip.expect("served");
            for port in &s.ports {
                let reached = ns.run(|| {
                    TcpStream::connect_timeout(&(ip, port.port).into(), Duration::from_secs(2))
                        .is_ok()
                })?;
                if !reached {
                    by_ip.push(format!("{} -> {ip}:{}", p.name, port.port));
                }
                if named != Some(ip) || !reached {
                    by_name.push(format!("{} -> {name}:{} ({named:?})", p.name, port.port));
                }
            }
        }
    }
    let n = lab.pods.len() * served.iter().map(|s| s.ports.len()).sum::<usize>();
    let outcome = |failed: Vec<String>| {
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join(", "))
        }
    };
    t.check(
        &format!("every pod reaches every Service by its ClusterIP ({n} connections)"),
        outcome(by_ip),
    );
    t.check(
        &format!(
            "every pod reaches every Service by name through {NODE_LOCAL_DNS} ({n} connections)"
        ),
        outcome(by_name),
    );
    Ok(())
}

/// A look-up at the node-local DNS, from the calling thread's namespace.
fn lookup(name: &str) -> Result<Found> {
    resolve((NODE_LOCAL_DNS, 53).into(), name, Duration::from_secs(1))
}

/// The node-local DNS, asked from a pod: cluster names answered, unknown ones NXDOMAIN,
/// outside names forwarded.
fn dns_checks(t: &mut Checks, lab: &LabState, pod: &str, stored: &[ServiceRecord]) -> Result<()> {
    let ns = Netns::open(LabState::netns_path(pod))?;
    let mut expect = |name: String, want: Found| -> Result<()> {
        let got = ns.run(|| lookup(&name).map_err(|e| e.to_string()))?;
        t.check(
            &format!("{pod} asks {NODE_LOCAL_DNS} for {name}: {want:?}"),
            match got {
                Ok(g) if g == want => Ok(()),
                other => Err(format!("got {other:?}")),
            },
        );
        Ok(())
    };
    if let Some(s) = stored.iter().find(|s| s.cluster_ip.is_some()) {
        let ip = s.cluster_ip.expect("found");
        expect(
            format!("{}.{}.svc.{DOMAIN}", s.name, s.namespace),
            Found::Addresses(vec![ip]),
        )?;
    }
    if let Some((p, ip)) = lab.pods.first().and_then(|p| Some((p, p.ip()?))) {
        let name = format!("{}.{}.pod.{DOMAIN}", ip.replace('.', "-"), p.namespace);
        expect(name, Found::Addresses(vec![ip.parse()?]))?;
    }
    expect(
        format!("no-such-service.default.svc.{DOMAIN}"),
        Found::NxDomain,
    )?;
    if let Some(o) = lab
        .scenario
        .outside
        .as_ref()
        .filter(|o| o.resolver.is_some())
    {
        let h = &o.hosts[0];
        expect(h.name.clone(), Found::Addresses(vec![h.ip]))?;
    }
    Ok(())
}

/// `trace POD SERVICE`: the TCP probes reach one of the Service's endpoints, every hop on the
/// way seems to answer from the ClusterIP (conntrack undoes the DNAT on the ICMP errors too),
/// and a trace straight to that endpoint has as many hops.
fn trace_checks(t: &mut Checks, lab: &LabState, pod: &str, s: &ServiceRecord) -> Result<()> {
    let Some(port) = s.ports.first().map(|p| p.port) else {
        return Ok(());
    };
    let got = super::trace_service::trace_service(lab, pod, s.clone(), port);
    let outcome = got.map_err(|e| e.to_string()).and_then(|tr| {
        let vip = tr.target.ip();
        let who = match &tr.end {
            super::trace_service::End::Connected {
                answered_by: Some(w),
            } => w.clone(),
            other => return Err(format!("the probes ended {other:?}")),
        };
        let ip = lab.pod(&who).ok().and_then(|p| p.ip()).unwrap_or_default();
        if !s.endpoints.iter().any(|e| e.to_string() == ip) {
            return Err(format!(
                "{who} ({ip}) answered, not an endpoint of {}",
                s.name
            ));
        }
        let seen: Vec<_> = tr.hops.iter().map(|h| h.addr).collect();
        let direct: Vec<_> = tr.direct.iter().map(|h| h.addr).collect();
        if seen.len() != direct.len()
            || seen.iter().any(|a| a.as_ref() != Some(vip))
            || direct.iter().any(Option::is_none)
        {
            return Err(format!("hops seen {seen:?}, straight to {who} {direct:?}"));
        }
        Ok(())
    });
    t.check(
        &format!("trace {pod} {}: TCP probes reach an endpoint, each hop answering from the ClusterIP, as many hops as straight to it", s.name),
        outcome,
    );
    Ok(())
}

/// Which endpoint answered: the stand-ins say their pod (or node) name.
pub(super) fn who(page: &str) -> Option<String> {
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
