//! `test`: the lab checked against what the seed shows, each check a PASS/FAIL line. The
//! seed-specific checks run when the seed's pods are there; the general ones run on any lab.

use super::trace::{addresses, ping, resolve, trace};
use crate::block_routes;
use crate::inventory::Inventory;
use crate::procs::{self, Placement, PodNs};
use crate::runtime::{self, Binaries};
use crate::state::{self, LabState, PodState};
use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use podnet_netlink::{Netlink, Netns, ROUTE_PROTOCOL};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(super) struct Checks {
    passed: usize,
    failed: usize,
}

impl Checks {
    pub(super) fn check(&mut self, what: &str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("PASS  {what}");
            }
            Err(why) => {
                self.failed += 1;
                println!("FAIL  {what}: {why}");
            }
        }
    }
}

fn expect<T: PartialEq + std::fmt::Debug>(got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got:?}, want {want:?}"))
    }
}

fn tunnel_device(encap: &str) -> Option<&'static str> {
    match encap {
        "ipip" => Some("tunl0"),
        "vxlan" => Some("vxlan.calico"),
        _ => None,
    }
}

/// The pod's eth0 as the kernel has it: (address/prefix, MTU, MAC), read through `netns`.
fn eth0(netns: &str) -> Result<(Option<Ipv4Net>, u32, String)> {
    let mut nl = Netns::open(netns)?.run(Netlink::open)??;
    let link = nl.link("eth0")?.context("no eth0")?;
    let addr = nl
        .addresses()?
        .into_iter()
        .find(|a| a.index == link.index)
        .map(|a| a.net);
    Ok((addr, link.mtu, link.mac_string()))
}

pub fn test(lab: &LabState) -> Result<bool> {
    let mut t = Checks {
        passed: 0,
        failed: 0,
    };
    let inv = Inventory::read(lab);
    let overhead = match lab.encapsulation.as_str() {
        "ipip" => 20,
        "vxlan" => 50,
        _ => 0,
    };
    let mtu = 1500 - overhead;
    println!(
        "lab {} ({} nodes, {} pods, {})",
        lab.name,
        lab.nodes.len(),
        lab.pods.len(),
        lab.encapsulation
    );

    for pod in ["ubuntu-test", "multi-container"] {
        if let Some(want) = expected_address(lab, pod) {
            t.check(
                &format!("{pod} has {want}"),
                eth0(&LabState::netns_path(pod))
                    .map_err(|e| e.to_string())
                    .and_then(|(a, _, _)| expect(a, Some(want))),
            );
        }
    }
    for p in &lab.pods {
        let r = eth0(&LabState::netns_path(&p.name)).map_err(|e| e.to_string());
        t.check(
            &format!("pod {}: eth0 has a /32 and MTU {mtu}", p.name),
            r.and_then(|(a, m, _)| {
                expect(a.map(|a| a.prefix_len()), Some(32))?;
                expect(m, mtu)
            }),
        );
    }
    if let Ok(multi) = lab.pod("multi-container") {
        multi_container_checks(&mut t, multi);
    }

    for (node, rec) in lab.scenario.nodes.iter().filter_map(|n| {
        inv.records
            .iter()
            .find(|r| r.name == n.name)
            .map(|r| (n, r))
    }) {
        let Some(dev) = tunnel_device(&lab.encapsulation) else {
            break;
        };
        let outcome = (|| -> Result<(), String> {
            let tip = rec.tunnel_ip.ok_or("no tunnel address in the datastore")?;
            if let Some(b) = node.block {
                expect(tip, b.network())?;
            }
            let mut nl = Netns::open(LabState::netns_path(&node.name))
                .and_then(|n| n.run(Netlink::open)?)
                .map_err(|e| e.to_string())?;
            let link = nl
                .link(dev)
                .map_err(|e| e.to_string())?
                .ok_or(format!("no {dev}"))?;
            expect(link.mtu, mtu)?;
            let addrs: Vec<String> = nl
                .addresses()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|a| a.index == link.index)
                .map(|a| a.net.to_string())
                .collect();
            expect(addrs, vec![format!("{tip}/32")])
        })();
        t.check(
            &format!(
                "{}: {dev} holds its block's first address as a /32, MTU {mtu}",
                node.name
            ),
            outcome,
        );
    }
    let made_by = if lab.bgp() {
        "BIRD (proto bird)"
    } else {
        "the agent (proto 119)"
    };
    for node in &lab.scenario.nodes {
        t.check(
            &format!(
                "{}: pod-network routes match the cluster, made by {made_by}",
                node.name
            ),
            node_routes(lab, &inv, &node.name),
        );
    }
    if lab.bgp() {
        for node in &lab.scenario.nodes {
            t.check(
                &format!("{}: every BGP session is Established", node.name),
                super::bgp::all_established(lab, &node.name).map(drop),
            );
        }
    }

    if lab.pod("ubuntu-test").is_ok() && lab.pod("multi-container").is_ok() {
        let dst: Ipv4Addr = resolve(lab, "multi-container")?;
        t.check(
            "ubuntu-test pings multi-container",
            ping(lab, "ubuntu-test", dst)
                .map_err(|e| e.to_string())
                .and_then(|ok| if ok { Ok(()) } else { Err("no reply".into()) }),
        );
        let want = expected_trace(lab, &inv, "ubuntu-test", "multi-container");
        let got = trace(lab, "ubuntu-test", "multi-container")
            .and_then(|h| addresses(&h))
            .map_err(|e| e.to_string());
        t.check(
            &format!(
                "trace ubuntu-test -> multi-container is {}",
                want.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            got.and_then(|g| expect(g, want)),
        );
    }
    every_node_reaches_every_node(&mut t, lab)?;
    if let (Some(outside), Some(pod)) = (&lab.scenario.outside, lab.pods.first()) {
        if let Some(resolver) = outside.resolver {
            resolver_checks(&mut t, &pod.name, resolver, &outside.hosts[0])?;
        }
        outside_checks(&mut t, lab, &pod.name, outside.hosts[0].ip)?;
    }
    super::pod_file_checks::run(&mut t, lab)?;
    super::service_checks::run(&mut t, lab)?;
    println!("\n{} passed, {} failed", t.passed, t.failed);
    Ok(t.failed == 0)
}

/// The address the IPAM hands `pod`: the lowest free one of its node's pinned block, taken in
/// the order the lab made the node's pods, after the node's tunnel address (the block's first,
/// where there is a tunnel). With a tunnel that is the seed's: ubuntu-test 10.233.99.1 and
/// multi-container 10.233.78.3; without one every pod of a node sits one lower. `None` where
/// the pod is not there or its node has no pinned block.
fn expected_address(lab: &LabState, pod: &str) -> Option<Ipv4Net> {
    let node = &lab.pod(pod).ok()?.node;
    let block = lab.scenario.nodes.iter().find(|n| &n.name == node)?.block?;
    let before = lab
        .pods
        .iter()
        .take_while(|p| p.name != pod)
        .filter(|p| &p.node == node)
        .count();
    let tunnel = u32::from(tunnel_device(&lab.encapsulation).is_some());
    let ip = Ipv4Addr::from(u32::from(block.network()) + tunnel + before as u32);
    Some(Ipv4Net::from(ip))
}

/// Hop 1 is the source's node (its uplink address), hop 2 the destination node's tunnel
/// (or its uplink without encapsulation), hop 3 the pod.
fn expected_trace(lab: &LabState, inv: &Inventory, from: &str, to: &str) -> Vec<Ipv4Addr> {
    let (Ok(a), Ok(b)) = (lab.pod(from), lab.pod(to)) else {
        return vec![];
    };
    let ip_of = |n: &str| inv.hosts.get(n).copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let dst: Ipv4Addr = b
        .ip()
        .and_then(|i| i.parse().ok())
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    if a.node == b.node {
        return vec![ip_of(&a.node), dst];
    }
    let far = inv.records.iter().find(|r| r.name == b.node);
    let hop2 = match (
        tunnel_device(&lab.encapsulation),
        far.and_then(|r| r.tunnel_ip),
    ) {
        (Some(_), Some(t)) => t,
        _ => ip_of(&b.node),
    };
    vec![ip_of(&a.node), hop2, dst]
}

/// The node's owned routes are exactly the cluster's blocks (remote via the peer, its own a
/// blackhole), and each of its pods has a /32 on a cali device.
fn node_routes(lab: &LabState, inv: &Inventory, node: &str) -> Result<(), String> {
    let mut nl = Netns::open(LabState::netns_path(node))
        .and_then(|n| n.run(Netlink::open)?)
        .map_err(|e| e.to_string())?;
    let blocks = block_routes::blocks(lab).map_err(|e| e.to_string())?;
    let have =
        block_routes::have(&mut nl, lab.block_route_protocol()).map_err(|e| e.to_string())?;
    expect(have, block_routes::want(lab, inv, node, &blocks))?;
    let links: std::collections::HashMap<u32, String> = nl
        .links()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    let routes = nl.routes().map_err(|e| e.to_string())?;
    for p in lab.pods.iter().filter(|p| p.node == node) {
        let ip: Ipv4Net = p
            .ip()
            .and_then(|i| i.parse::<Ipv4Addr>().ok())
            .map(Ipv4Net::from)
            .ok_or(format!("pod {} has no address", p.name))?;
        let ok = routes.iter().any(|r| {
            r.dst == ip
                && r.protocol == ROUTE_PROTOCOL
                && r.oif
                    .and_then(|i| links.get(&i))
                    .is_some_and(|n| n.starts_with("cali"))
        });
        if !ok {
            return Err(format!("no route {ip} dev cali* for pod {}", p.name));
        }
    }
    Ok(())
}

fn multi_container_checks(t: &mut Checks, multi: &PodState) {
    let pids: Vec<u32> = multi
        .containers
        .iter()
        .filter_map(|c| c.process.as_ref().map(|p| p.pid))
        .collect();
    let views: Vec<_> = pids
        .iter()
        .map(|pid| eth0(&format!("/proc/{pid}/ns/net")))
        .collect();
    t.check(
        "multi-container: both containers see the same eth0 (same IP, same MAC)",
        match views.as_slice() {
            [Ok(a), Ok(b)] => expect((&a.0, &a.2), (&b.0, &b.2)),
            other => Err(format!(
                "could not read both containers: {}",
                other
                    .iter()
                    .filter_map(|r| r.as_ref().err())
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        },
    );
    let got = run_in_container(
        multi,
        "ubuntu",
        &["http-get", "http://localhost:80/"],
        Duration::from_secs(5),
    );
    t.check(
        "multi-container: ubuntu reaches nginx on localhost:80",
        got.map_err(|e| e.to_string()).and_then(|(code, out)| {
            if code == Some(0) && out.contains("200 OK") {
                Ok(())
            } else {
                Err(format!("exit {code:?}: {out}"))
            }
        }),
    );
    let got = run_in_container(
        multi,
        "ubuntu",
        &["serve-http", "--port", "80"],
        Duration::from_secs(2),
    );
    t.check(
        "multi-container: a second bind of port 80 in the pod fails with \"address in use\"",
        got.map_err(|e| e.to_string()).and_then(|(code, out)| {
            if code.is_some_and(|c| c != 0) && out.to_lowercase().contains("in use") {
                Ok(())
            } else {
                Err(format!("exit {code:?}: {}", out.trim()))
            }
        }),
    );
}

/// Runs `podnet-lab ARGS` in a container's namespaces with a deadline; (exit code, output).
pub(super) fn run_in_container(
    pod: &PodState,
    container: &str,
    args: &[&str],
    deadline: Duration,
) -> Result<(Option<i32>, String)> {
    run_program_in_container(pod, container, &std::env::current_exe()?, args, deadline)
}

/// Runs `program ARGS` in a container's namespaces with a deadline; (exit code, output).
pub(super) fn run_program_in_container(
    pod: &PodState,
    container: &str,
    program: &std::path::Path,
    args: &[&str],
    deadline: Duration,
) -> Result<(Option<i32>, String)> {
    let c = pod
        .containers
        .iter()
        .find(|c| c.name == container)
        .context("no such container")?;
    let pid = c.process.as_ref().context("container not started")?.pid;
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let netns = LabState::netns_path(&pod.name);
    procs::place(
        &mut cmd,
        &Placement {
            netns: &netns,
            pod: PodNs::Join(pid),
            detach: false,
        },
    )?;
    let mut child = cmd.spawn()?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let out = child.wait_with_output()?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return Ok((status.code(), text));
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((None, "still running at the deadline".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One pod per node (a temporary probe pod, made and removed through CNI, where a node has
/// none) pings one pod on every other node (on big labs: the next few nodes).
fn every_node_reaches_every_node(t: &mut Checks, lab: &LabState) -> Result<()> {
    let bins = Binaries::find()?;
    let mut probes: Vec<PodState> = Vec::new();
    let mut reps: Vec<(String, String, Ipv4Addr)> = Vec::new();
    for node in &lab.nodes {
        if let Some(p) = lab
            .pods
            .iter()
            .find(|p| p.node == node.name && p.result.is_some())
        {
            reps.push((
                node.name.clone(),
                p.name.clone(),
                p.ip()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(Ipv4Addr::UNSPECIFIED),
            ));
            continue;
        }
        let name = format!("probe-{}", node.name);
        let mut pod = PodState {
            name: name.clone(),
            namespace: "podnet-lab".into(),
            node: node.name.clone(),
            container_id: runtime::container_id(&lab.name, "podnet-lab", &name),
            result: None,
            containers: vec![],
            created: state::now(),
        };
        podnet_netlink::netns::create(LabState::netns_path(&name))?;
        pod.result = Some(runtime::cni(&bins, lab, &pod, "ADD")?);
        reps.push((
            node.name.clone(),
            name.clone(),
            pod.ip()
                .and_then(|i| i.parse().ok())
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
        ));
        probes.push(pod);
    }
    let n = reps.len();
    let span = if n > 10 { 3 } else { n - 1 };
    let mut failures = Vec::new();
    let mut pairs = 0;
    for i in 0..n {
        for k in 1..=span {
            let j = (i + k) % n;
            pairs += 1;
            let ok = lab_ping(lab, &probes, &reps[i].1, reps[j].2)?;
            if !ok {
                failures.push(format!(
                    "{} ({}) -> {} ({})",
                    reps[i].1, reps[i].0, reps[j].1, reps[j].0
                ));
            }
        }
    }
    let what = if span == n - 1 {
        format!("a pod on every node reaches a pod on every other node ({pairs} pairs)")
    } else {
        format!("pods reach pods on the next {span} nodes ({pairs} pairs)")
    };
    t.check(
        &what,
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        },
    );
    for p in &probes {
        let _ = runtime::cni(&bins, lab, p, "DEL");
        let _ = podnet_netlink::netns::remove(LabState::netns_path(&p.name));
    }
    Ok(())
}

/// The way out: the pod reaches the outside host only masqueraded (the upstream router has no
/// route to the pool), so with natOutgoing switched off for a moment it must not. Each try is
/// a new TCP connection to the host's HTTP port: a new flow, where an old one (a ping's) would
/// keep the NAT binding conntrack gave it.
fn outside_checks(t: &mut Checks, lab: &LabState, pod: &str, host: Ipv4Addr) -> Result<()> {
    let ns = Netns::open(LabState::netns_path(pod))?;
    let reaches = || {
        (0..3).any(|_| {
            ns.run(|| {
                std::net::TcpStream::connect_timeout(
                    &(host, 80).into(),
                    std::time::Duration::from_millis(700),
                )
                .is_ok()
            })
            .unwrap_or(false)
        })
    };
    let pool = lab.scenario.pool.cidr;
    if !lab.scenario.pool.nat_outgoing {
        t.check(
            &format!("{pod} does not reach {host}: natOutgoing is off for {pool} and the upstream router has no route back to pods"),
            if reaches() { Err("it did".into()) } else { Ok(()) },
        );
        return Ok(());
    }
    t.check(
        &format!("{pod} pings {host} outside the cluster (masqueraded by its node)"),
        if ping(lab, pod, host).unwrap_or(false) && reaches() {
            Ok(())
        } else {
            Err("no reply".into())
        },
    );
    let set = |on: bool| {
        lab.with_store(move |s| podnet_ipam::pools::set_nat_outgoing(s, pool, on).map(drop))
    };
    set(false)??;
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let off = reaches();
    set(true)??;
    t.check(
        &format!("with natOutgoing off, {pod} gets no reply from {host} (its address is unknown outside)"),
        if off { Err("a reply came: something else masquerades".into()) } else { Ok(()) },
    );
    let start = std::time::Instant::now();
    let mut back = false;
    while start.elapsed() < std::time::Duration::from_secs(3) && !back {
        back = reaches();
    }
    t.check(
        &format!("natOutgoing back on: {pod} reaches {host} again"),
        if back { Ok(()) } else { Err("no reply".into()) },
    );
    Ok(())
}

/// The outside resolver, asked from a pod (through its node's masquerade): the host's name
/// resolves, an unknown name is NXDOMAIN.
fn resolver_checks(
    t: &mut Checks,
    pod: &str,
    resolver: Ipv4Addr,
    host: &crate::scenario::OutsideHost,
) -> Result<()> {
    use crate::dns::{resolve, Found};
    let ns = Netns::open(LabState::netns_path(pod))?;
    let timeout = std::time::Duration::from_secs(1);
    let ask = |name: &str| {
        ns.run(|| resolve((resolver, 53).into(), name, timeout))
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
    };
    t.check(
        &format!(
            "{pod} resolves {} at the outside resolver {resolver}",
            host.name
        ),
        match ask(&host.name) {
            Ok(Found::Addresses(ips)) if ips == [host.ip] => Ok(()),
            other => Err(format!("expected {}, got {other:?}", host.ip)),
        },
    );
    let unknown = format!("no-such-host.{}", host.name);
    t.check(
        &format!("{pod} gets NXDOMAIN for {unknown}"),
        match ask(&unknown) {
            Ok(Found::NxDomain) => Ok(()),
            other => Err(format!("expected NXDOMAIN, got {other:?}")),
        },
    );
    Ok(())
}

fn lab_ping(lab: &LabState, probes: &[PodState], from: &str, dst: Ipv4Addr) -> Result<bool> {
    if probes.iter().any(|p| p.name == from) {
        let ns = Netns::open(LabState::netns_path(from))?;
        return ns.run(|| super::trace::ping_here(dst))?;
    }
    ping(lab, from, dst)
}
