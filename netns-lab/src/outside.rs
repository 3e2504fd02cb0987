//! The lab's outside world: the provider's `upstream` router behind the fabric's gateway, and
//! the `internet` behind it, whose hosts answer ping and HTTP and whose resolver answers
//! their names. Documentation addresses only (RFC 5737); the upstream router has no route to
//! the pod pool, like a real provider, so replies to pods come back only if nodes masquerade.

use crate::procs::{self, Placement, PodNs};
use crate::runtime::Binaries;
use crate::state::LabState;
use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use podnet_netlink::netns::{self, Netns};
use podnet_netlink::{Netlink, RouteSpec, VethSpec};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

/// Fabric `wan0` <-> upstream `eth0` (the transit link), upstream `eth1` <-> internet `eth0`
/// (the outside link, holding the hosts and the resolver). The fabric's default route goes
/// upstream; the upstream router routes back to the fabric and its segments only; the
/// internet's default route is the upstream router.
pub fn build(lab: &LabState, fabric: &mut Netlink) -> Result<()> {
    let Some(outside) = lab.scenario.outside.clone() else {
        return Ok(());
    };
    let upstream = netns::create(LabState::netns_path(&lab.upstream()))?;
    let internet = netns::create(LabState::netns_path(&lab.internet()))?;
    let (near, far) = outside.transit_ends();
    let transit = outside.transit.prefix_len();

    fabric.add_veth(&veth("wan0", "eth0", &upstream))?;
    let wan = fabric.link("wan0")?.context("wan0 vanished")?;
    fabric.add_address(wan.index, Ipv4Net::new(near, transit)?)?;
    fabric.set_up(wan.index)?;
    fabric.add_route(&RouteSpec::default_via(far, wan.index, false), false)?;
    let fabric_ns = Netns::open(LabState::netns_path(&lab.fabric()))?;
    fabric_ns.run(|| podnet_netlink::sysctl::write("net.ipv4.ip_forward", "1"))??;

    let mut back = vec![lab.scenario.fabric.trunc()];
    back.extend(lab.scenario.segments.iter().map(|s| s.subnet.trunc()));
    let router = outside.router;
    upstream.run(|| -> Result<()> {
        let mut nl = Netlink::open()?;
        nl.add_veth(&veth("eth1", "eth0", &internet))?;
        let eth0 = up(&mut nl, "eth0")?;
        let eth1 = up(&mut nl, "eth1")?;
        up(&mut nl, "lo")?;
        nl.add_address(eth0, Ipv4Net::new(far, transit)?)?;
        nl.add_address(eth1, router)?;
        for dst in back {
            nl.add_route(&RouteSpec::via(dst, near, eth0), false)?;
        }
        podnet_netlink::sysctl::write("net.ipv4.ip_forward", "1")?;
        crate::up::answer_every_probe()?;
        Ok(())
    })??;

    internet.run(move || -> Result<()> {
        let mut nl = Netlink::open()?;
        up(&mut nl, "lo")?;
        let eth0 = up(&mut nl, "eth0")?;
        let ips = outside.hosts.iter().map(|h| h.ip).chain(outside.resolver);
        for (i, ip) in ips.enumerate() {
            let prefix = if i == 0 { router.prefix_len() } else { 32 };
            nl.add_address(eth0, Ipv4Net::new(ip, prefix)?)?;
        }
        nl.add_route(&RouteSpec::default_via(router.addr(), eth0, false), false)?;
        Ok(())
    })??;
    Ok(())
}

fn veth<'a>(name: &'a str, peer_name: &'a str, peer: &'a Netns) -> VethSpec<'a> {
    VethSpec {
        name,
        mac: None,
        mtu: 1500,
        alias: None,
        peer_name,
        peer_netns: Some(peer.fd()),
    }
}

/// Sets `name` up; its index.
fn up(nl: &mut Netlink, name: &str) -> Result<u32> {
    let link = nl.link(name)?.with_context(|| format!("{name} vanished"))?;
    nl.set_up(link.index)?;
    Ok(link.index)
}

/// The outside hosts' HTTP server (one process serving every host address on port 80) and,
/// if the scenario names one, the resolver (answering every host's name); returns once the
/// resolver answers.
pub fn start(lab: &mut LabState, bins: &Binaries) -> Result<()> {
    let Some(outside) = lab.scenario.outside.clone() else {
        return Ok(());
    };
    let internet = LabState::netns_path(&lab.internet());
    let mut daemon = |args: Vec<String>, log: &str| -> Result<()> {
        let mut cmd = Command::new(bins.path("podnet-lab"));
        cmd.args(args);
        let p = procs::spawn_daemon(
            cmd,
            &Placement {
                netns: &internet,
                pod: PodNs::Host {
                    hostname: Some(&outside.hosts[0].name),
                },
                detach: true,
            },
            &lab.logs().join(log),
        )?;
        lab.outside.push(p);
        lab.save()
    };
    daemon(
        vec!["serve-http".into(), "--port".into(), "80".into()],
        "internet-http.log",
    )?;
    let Some(resolver) = outside.resolver else {
        return Ok(());
    };
    let mut args = vec![
        "serve-dns".to_string(),
        "--listen".into(),
        format!("{resolver}:53"),
    ];
    for h in &outside.hosts {
        args.extend(["--record".into(), format!("{}={}", h.name, h.ip)]);
    }
    daemon(args, "internet-dns.log")?;
    wait_for_resolver(&internet, resolver, &outside.hosts[0].name)
}

/// Asks the resolver from inside the internet until it answers (at most 5 s).
fn wait_for_resolver(internet: &str, resolver: Ipv4Addr, name: &str) -> Result<()> {
    let ns = Netns::open(internet)?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let asked = ns
            .run(|| crate::dns::resolve((resolver, 53).into(), name, Duration::from_millis(200)))?;
        if asked.is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the outside resolver {resolver} did not answer within 5 s (see internet-dns.log)")
}
