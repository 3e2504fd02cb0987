//! `cargo xtask bench egress`: the way out (natOutgoing).
//! - Apply time of a changed rule set, with 1 and 100 pools: the agent's sync alone (read the
//!   table back, compare, replace it in one batch; the `egress_apply` example, in a namespace
//!   of its own), and end to end (a pool's natOutgoing flipped in the datastore until a
//!   running agent's kernel table shows it).
//! - TCP connections per second from a pod of the seed lab to the outside host through the
//!   node's masquerade, beside the same connections with no NAT (natOutgoing off and, for the
//!   replies, a route back to the pod on the fabric and the upstream router). Rounds alternate.

use super::agent::{build, wait_registered, Backend};
use super::seeded::{median, run_example};
use super::stats::{ms, verdict, Stats};
use crate::sh;
use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use podnet_ipam::{pools, DatastoreConfig, PoolSpec};
use podnet_netlink::netns::Netns;
use podnet_netlink::nft::Nftables;
use podnet_netlink::{Netlink, RouteSpec};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Changes timed per pool count.
    #[arg(long, default_value_t = 50)]
    trials: usize,
    #[command(flatten)]
    load: super::seeded::Load,
}

/// The seed lab's defaults: the outside host, the fabric's end of the transit link, and the
/// lab's namespaces.
const OUTSIDE_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const FABRIC_TRANSIT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const POD: &str = "ubuntu-test";

pub fn run(args: Args) -> Result<()> {
    super::seeded::prepare("egress", "podnet-agent", "egress_apply")?;
    let mut sync = Vec::new();
    for n in [1, 100] {
        sync.push((n, sync_alone(n, args.trials)?));
    }
    let mut e2e = Vec::new();
    for n in [1, 100] {
        eprintln!("agent, {n} pools: store change -> kernel");
        e2e.push((n, end_to_end(n, args.trials)?));
    }
    let (nat, plain) = connections(&args)?;

    println!("\n== apply a changed rule set (table ip podnet) ==");
    for (n, (median, p99)) in &sync {
        println!("sync alone (read back, compare, replace), {n:>3} pools: median {median:.2} ms, p99 {p99:.2} ms");
    }
    for (n, s) in &e2e {
        println!(
            "agent, store change -> kernel,          {n:>3} pools: median {}, p99 {}",
            ms(s.median()),
            ms(s.p99())
        );
    }
    println!("\n== TCP connections/s from pod {POD} to {OUTSIDE_HOST}:80 ({} x {} per round, {} at once) ==", args.load.rounds, args.load.connections, args.load.parallel);
    let (nat, plain) = (median(&nat), median(&plain));
    println!("masqueraded (natOutgoing on): {nat:.0}/s");
    println!("no NAT (routed back):         {plain:.0}/s");
    let ratio = nat / plain;
    println!(
        "ratio masqueraded / no NAT: {ratio:.3} (target >= 0.9: {})",
        verdict(ratio >= 0.9)
    );
    Ok(())
}

/// The `egress_apply` example in a namespace of its own: (median, p99) in ms.
fn sync_alone(pools: usize, trials: usize) -> Result<(f64, f64)> {
    let v = run_example("egress_apply", &[pools.to_string(), trials.to_string()])?;
    let at = |k: &str| {
        v[k].as_f64()
            .map(|us| us / 1e3)
            .context("egress_apply's figures")
    };
    Ok((at("median_us")?, at("p99_us")?))
}

/// The extra pools of the 100-pool runs: apart from each other and from the agent's
/// 10.128.0.0/10, so the kernel's sets hold 100 intervals.
fn extra_pool(i: usize) -> Result<PoolSpec> {
    Ok(PoolSpec::new(
        format!("10.{i}.0.0/24").parse()?,
        26,
        false,
        Default::default(),
    )?)
}

/// One node with its agent on SQLite; flips the last pool's natOutgoing `trials` times,
/// timing each flip from the datastore write until the node's kernel table shows it.
fn end_to_end(n: usize, trials: usize) -> Result<Stats> {
    let work = sh::root().join(format!("target/bench-egress/{n}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let agent = sh::root().join("target/release/podnet-agent");
    let tag = format!("pnbe{}-{n}", std::process::id());
    let cluster = build(1, &tag, &agent, &work, Backend::Sqlite, &[], false)?;
    let store = DatastoreConfig::sqlite(work.join("store.db")).open_or_create()?;
    wait_registered(&*store, 1)?;
    for i in 1..n {
        pools::create(&*store, &extra_pool(i)?)?;
    }
    let last: Ipv4Net = if n == 1 {
        "10.128.0.0/10".parse()?
    } else {
        extra_pool(n - 1)?.cidr()
    };
    let node = &cluster.nodes[0];
    wait_nat(node, last, true, Duration::from_secs(10)).context("the agent's first table")?;
    let mut took = Vec::new();
    let mut on = true;
    for _ in 0..trials {
        on = !on;
        let start = Instant::now();
        pools::set_nat_outgoing(&*store, last, on)?;
        wait_nat(node, last, on, Duration::from_secs(5))?;
        took.push(start.elapsed());
    }
    Ok(Stats::new(took))
}

/// Polls the node's table `ip podnet` until pool `cidr` is (or is not) in set `nat-pools`.
fn wait_nat(node: &Netns, cidr: Ipv4Net, on: bool, timeout: Duration) -> Result<()> {
    node.run(|| -> Result<()> {
        let mut nft = Nftables::open()?;
        let start = Instant::now();
        while start.elapsed() < timeout {
            let table = nft.read("podnet")?;
            let has = table
                .as_ref()
                .and_then(|t| t.set("nat-pools"))
                .is_some_and(|s| s.elements().iter().any(|e| e.contains(&cidr)));
            if has == on {
                return Ok(());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        bail!("natOutgoing of {cidr} did not become {on} in the kernel within {timeout:?}")
    })?
}

/// Rounds of connections from the seed lab's pod, masqueraded and not: the rates of each.
fn connections(args: &Args) -> Result<(Vec<f64>, Vec<f64>)> {
    let lab = sh::root().join("target/release/podnet-lab");
    let _ = Command::new(&lab).args(["down", "--all"]).output();
    eprintln!("seed lab up");
    sh::output(Command::new(&lab).args(["up", "--quiet"]))?;
    let result = rounds(&lab, args);
    let _ = Command::new(&lab).args(["down"]).output();
    result
}

fn rounds(lab: &Path, args: &Args) -> Result<(Vec<f64>, Vec<f64>)> {
    let pods = sh::output(Command::new(lab).args(["get", "pods", "-o", "wide"]))?;
    let nodes = sh::output(Command::new(lab).args(["get", "nodes", "-o", "wide"]))?;
    let pod_ip: Ipv4Addr = column(&pods, POD, "IP")?.parse()?;
    let node = column(&pods, POD, "NODE")?;
    let node_ip: Ipv4Addr = column(&nodes, &node, "INTERNAL-IP")?.parse()?;
    let store = DatastoreConfig::sqlite(lab_store()).open()?;
    let pool = pools::list(&*store)?
        .iter()
        .map(|p| p.cidr())
        .find(|c| c.contains(&pod_ip))
        .with_context(|| format!("no pool holds {pod_ip}"))?;
    // No NAT needs replies routed back to the pod: the fabric to its node, the upstream
    // router to the fabric (the lab's own namespaces only).
    let host = Ipv4Net::new(pod_ip, 32)?;
    let fabric = Netns::open(ns_path("seed-fabric"))?;
    fabric.run(|| -> Result<()> {
        let mut nl = Netlink::open()?;
        let br = nl.link("br0")?.context("br0")?;
        Ok(nl.add_route(&RouteSpec::via(host, node_ip, br.index), false)?)
    })??;
    let upstream = Netns::open(ns_path("seed-upstream"))?;
    upstream.run(|| -> Result<()> {
        let mut nl = Netlink::open()?;
        let eth0 = nl.link("eth0")?.context("eth0")?;
        Ok(nl.add_route(&RouteSpec::via(host, FABRIC_TRANSIT, eth0.index), false)?)
    })??;
    let pod = Netns::open(ns_path(POD))?;
    let node_ns = Netns::open(ns_path(&node))?;
    let (mut nat, mut plain) = (Vec::new(), Vec::new());
    for r in 0..args.load.rounds * 2 {
        let masquerade = r % 2 == 0;
        pools::set_nat_outgoing(&*store, pool, masquerade)?;
        wait_nat(&node_ns, pool, masquerade, Duration::from_secs(5))?;
        let rate = pod.run(|| burst(args.load.connections, args.load.parallel))??;
        eprintln!(
            "round {}: {} {rate:.0} conn/s",
            r + 1,
            if masquerade { "masqueraded" } else { "no NAT" }
        );
        if masquerade { &mut nat } else { &mut plain }.push(rate);
    }
    pools::set_nat_outgoing(&*store, pool, true)?;
    Ok((nat, plain))
}

fn lab_store() -> std::path::PathBuf {
    Path::new("/run/podnet-lab/seed/store.db").to_path_buf()
}

fn ns_path(name: &str) -> String {
    format!("{}/{name}", podnet_netlink::netns::NETNS_DIR)
}

/// `count` connections to the outside host's port 80 from this thread's namespace,
/// `parallel` at once: connections per second.
fn burst(count: usize, parallel: usize) -> Result<f64> {
    burst_to(&[SocketAddr::from((OUTSIDE_HOST, 80))], count, parallel)
}

/// `count` connections from this thread's namespace, to `targets` in turn, `parallel` at
/// once: connections per second.
pub(super) fn burst_to(targets: &[SocketAddr], count: usize, parallel: usize) -> Result<f64> {
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..parallel)
            .map(|w| {
                let share = count / parallel + usize::from(w < count % parallel);
                s.spawn(move || -> Result<()> {
                    for i in 0..share {
                        get(targets[(w + i) % targets.len()])?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a worker panicked")?;
        }
        Ok(())
    })?;
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// One connection: connect, `GET /`, read the answer to the end.
fn get(addr: SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!("no HTTP answer from {addr}");
    }
    Ok(())
}

/// The cell of a kubectl-style table in row `name`, column `header`.
pub(super) fn column(table: &str, name: &str, header: &str) -> Result<String> {
    let mut lines = table.lines();
    let heads: Vec<&str> = lines
        .next()
        .context("an empty table")?
        .split_whitespace()
        .collect();
    let i = heads
        .iter()
        .position(|h| *h == header)
        .with_context(|| format!("no column {header}"))?;
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&name))
        .and_then(|cells| cells.get(i).map(|c| c.to_string()))
        .with_context(|| format!("no row {name} with a {header}"))
}
