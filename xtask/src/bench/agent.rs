//! `cargo xtask bench agent`: N node namespaces on one bridge, each with its `podnet-agent`
//! on the embedded store. A new node registers and claims a block; we time how long until its
//! route is in every other node's kernel (each node's route events are watched from inside
//! its namespace), and read the agents' resident memory.

use super::stats::{ms, Stats};
use crate::sh::{self, cargo, execute};
use anyhow::{bail, Context, Result};
use podnet_ipam::store::sqlite::SqliteStore;
use podnet_ipam::store::Txn;
use podnet_ipam::{Datastore, Ipam, PoolSpec};
use podnet_netlink::netns::OwnedNetns;
use podnet_netlink::{
    Netlink, RouteEvent, RouteMonitor, RouteSpec, VethSpec, AGENT_ROUTE_PROTOCOL,
};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Cluster sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    nodes: Vec<usize>,
    /// New nodes registered per size.
    #[arg(long, default_value_t = 20)]
    trials: usize,
}

struct Cluster {
    _fabric: OwnedNetns,
    nodes: Vec<OwnedNetns>,
    agents: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 110 + (i / 250) as u8, (i % 250 + 1) as u8)
}

fn build(n: usize, tag: &str, agent: &Path, work: &Path) -> Result<Cluster> {
    let fabric = OwnedNetns::named(&format!("{tag}-fabric"))?;
    let mut f = fabric.run(Netlink::open)??;
    f.add_bridge("br0")?;
    let br = f.link("br0")?.context("br0")?;
    f.set_up(br.index)?;
    let mut nodes = Vec::new();
    let mut agents = Vec::new();
    for i in 0..n {
        let ns = OwnedNetns::named(&format!("{tag}-n{i}"))?;
        let port = format!("p{i}");
        f.add_veth(&VethSpec {
            name: &port,
            mac: None,
            mtu: 1500,
            alias: None,
            peer_name: "ens3",
            peer_netns: Some(ns.fd()),
        })?;
        let p = f.link(&port)?.context("port")?;
        f.set_controller(p.index, br.index)?;
        f.set_up(p.index)?;
        let mut nl = ns.run(Netlink::open)??;
        let ens3 = nl.link("ens3")?.context("ens3")?;
        let lo = nl.link("lo")?.context("lo")?;
        nl.set_up(lo.index)?;
        nl.set_up(ens3.index)?;
        nl.add_address(ens3.index, ipnet::Ipv4Net::new(node_ip(i), 16)?)?;
        nl.add_route(
            &RouteSpec::default_via(Ipv4Addr::new(192, 168, 0, 254), ens3.index, true),
            false,
        )?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path()))
            .arg(agent)
            .args([
                "--log-level",
                "warn",
                "run",
                "--node-name",
                &format!("n{i}"),
                "--node-ip",
                &node_ip(i).to_string(),
            ])
            .args([
                "--encapsulation",
                "none",
                "--pool",
                "10.128.0.0/10",
                "--block-size",
                "24",
                "--resync-seconds",
                "60",
            ])
            .arg("--datastore")
            .arg(work.join("store.db"))
            .arg("--state-dir")
            .arg(work.join(format!("n{i}")))
            .stdout(Stdio::null())
            .spawn()?;
        agents.push(child);
        nodes.push(ns);
    }
    Ok(Cluster {
        _fabric: fabric,
        nodes,
        agents,
    })
}

pub fn run(args: Args) -> Result<()> {
    if !sh::is_root() {
        bail!("bench agent makes namespaces and runs agents in them: run it as root");
    }
    crate::deps::ensure_build()?;
    execute(cargo().args(["build", "--release", "-q", "-p", "podnet-agent", "--bins"]))?;
    let agent = sh::root().join("target/release/podnet-agent");
    let mut summary = Vec::new();
    for &n in &args.nodes {
        let work = sh::root().join(format!("target/bench-agent/{n}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        let tag = format!("pnba{}-{n}", std::process::id());
        eprintln!("{n} nodes: starting agents");
        let cluster = build(n, &tag, &agent, &work)?;
        let store = SqliteStore::open(work.join("store.db"), Default::default())?;
        wait_registered(&store, n)?;
        let (latencies, all_nodes) = measure(&cluster, &store, args.trials)?;
        let rss: Vec<u64> = cluster
            .agents
            .iter()
            .filter_map(|a| rss_kib(a.id()))
            .collect();
        let max_rss = rss.iter().copied().max().unwrap_or(0);
        let mean_rss = rss.iter().sum::<u64>() / rss.len().max(1) as u64;
        summary.push((
            n,
            Stats::new(latencies),
            Stats::new(all_nodes),
            mean_rss,
            max_rss,
        ));
        drop(cluster);
    }
    println!("\n== agent convergence: a new node's block in every other node's kernel ==");
    println!(
        "{:>6} {:>12} {:>12} {:>16} {:>16} {:>14} {:>13}",
        "nodes",
        "per-node p50",
        "per-node p99",
        "all-nodes p50",
        "all-nodes p99",
        "RSS mean",
        "RSS max"
    );
    for (n, per, all, mean, max) in &summary {
        println!(
            "{n:>6} {:>12} {:>12} {:>16} {:>16} {:>10.1} MiB {:>9.1} MiB",
            ms(per.median()),
            ms(per.p99()),
            ms(all.median()),
            ms(all.p99()),
            *mean as f64 / 1024.0,
            *max as f64 / 1024.0
        );
    }
    if let Some((_, per, all, _, max)) = summary.iter().find(|s| s.0 == 100) {
        let ok = all.p99() <= Duration::from_millis(200);
        println!(
            "N=100: all-nodes p99 {} (target <= 200 ms: {}); per-node p99 {}",
            ms(all.p99()),
            if ok { "met" } else { "MISSED" },
            ms(per.p99())
        );
        let ok = *max <= 15 * 1024;
        println!(
            "N=100: max agent RSS {:.1} MiB (target <= 15 MiB: {})",
            *max as f64 / 1024.0,
            if ok { "met" } else { "MISSED" }
        );
    }
    Ok(())
}

/// Waits until all `n` agents have registered.
fn wait_registered(store: &SqliteStore, n: usize) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if store.list("/podnet/v1/nodes/")?.kvs.len() >= n {
            std::thread::sleep(Duration::from_millis(500));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "only {} of {n} agents registered in 120 s",
        store.list("/podnet/v1/nodes/")?.kvs.len()
    )
}

/// Registers `trials` new nodes one by one; returns per-node latencies and, per trial, the
/// time until the last node had the route.
fn measure(
    c: &Cluster,
    store: &SqliteStore,
    trials: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (tx, rx) = mpsc::channel::<(usize, ipnet::Ipv4Net, Instant)>();
    for (i, ns) in c.nodes.iter().enumerate() {
        let mut mon = ns.run(RouteMonitor::open)??;
        let tx = tx.clone();
        std::thread::spawn(move || loop {
            let Ok(events) = mon.wait() else { return };
            let now = Instant::now();
            for e in events {
                if let RouteEvent::Added(r) = e {
                    if r.protocol == AGENT_ROUTE_PROTOCOL && tx.send((i, r.dst, now)).is_err() {
                        return;
                    }
                }
            }
        });
    }
    let pool = PoolSpec::new("10.128.0.0/10".parse()?, 24, false, Default::default())?;
    let ipam = Ipam::new(store, pool);
    let mut per_node = Vec::new();
    let mut all_nodes = Vec::new();
    for t in 0..trials {
        while rx.try_recv().is_ok() {}
        let name = format!("new{t}");
        let block = ipam.ensure_block(&name)?;
        let record = serde_json::json!({"name": name, "ip": Ipv4Addr::new(192, 168, 200, t as u8 + 1), "prefixLen": 16, "encapsulation": "none"});
        let start = Instant::now();
        let mut txn = Txn::default();
        txn.put(format!("/podnet/v1/nodes/{name}"), record.to_string());
        store.txn(&txn)?;
        let mut seen = vec![false; c.nodes.len()];
        let mut last = Duration::ZERO;
        while seen.iter().any(|s| !s) {
            let (i, dst, at) = rx
                .recv_timeout(Duration::from_secs(10))
                .context("a node never got the new route")?;
            if dst == block && !seen[i] {
                seen[i] = true;
                let d = at.saturating_duration_since(start);
                per_node.push(d);
                last = last.max(d);
            }
        }
        all_nodes.push(last);
    }
    Ok((per_node, all_nodes))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
