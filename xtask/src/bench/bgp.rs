//! `cargo xtask bench bgp` (root): the routing plane at 10 and 100 nodes, by BGP with a full
//! mesh, by BGP through two route reflectors, and beside them the agents' datastore routing, in
//! one run. For each: time from start until every node is ready (BGP: every session
//! Established), time from a new block of one node to its route in every other node's kernel
//! (p50, p99), BIRD's resident memory, and the CPU the routing plane (agent + BIRD) burns per
//! node while idle. Every plane gets its node's neighbours pinned: one machine's namespaces
//! share one ARP table capped at `gc_thresh3` entries, which a 100-node mesh overflows.

use super::agent::{build, rss_kib, wait_registered, Backend, Cluster, POOL};
use super::stats::{ms, verdict, Stats};
use crate::sh::{self, cargo, execute};
use anyhow::{bail, Result};
use ipnet::Ipv4Net;
use podnet_ipam::model::{Affinity, Block};
use podnet_ipam::store::Txn;
use podnet_ipam::{keys, Datastore, DatastoreConfig};
use podnet_netlink::{AGENT_ROUTE_PROTOCOL, BIRD_ROUTE_PROTOCOL};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

#[derive(clap::Args)]
pub struct Args {
    /// Cluster sizes.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    nodes: Vec<usize>,
    /// New blocks announced per run.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// How long the idle CPU is sampled.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plane {
    Datastore,
    Mesh,
    Reflectors,
}

impl Plane {
    fn name(self) -> &'static str {
        match self {
            Plane::Datastore => "datastore",
            Plane::Mesh => "bgp mesh",
            Plane::Reflectors => "bgp 2 RRs",
        }
    }
}

struct Row {
    plane: Plane,
    nodes: usize,
    sessions: usize,
    ready: Duration,
    all_nodes: Stats,
    bird_rss_kib: u64,
    cpu_percent_per_node: f64,
}

pub fn run(args: Args) -> Result<()> {
    if !sh::is_root() {
        bail!("bench bgp makes namespaces and runs agents and BIRDs in them: run it as root");
    }
    crate::deps::ensure_build()?;
    crate::deps::ensure(&[&crate::deps::BIRD])?;
    execute(cargo().args(["build", "--release", "-q", "-p", "podnet-agent", "--bins"]))?;
    let agent = sh::root().join("target/release/podnet-agent");
    let mut rows = Vec::new();
    for &n in &args.nodes {
        for plane in [Plane::Datastore, Plane::Mesh, Plane::Reflectors] {
            eprintln!("{n} nodes, {}:", plane.name());
            rows.push(measure_plane(&agent, n, plane, &args)?);
        }
    }
    println!("\n== routing plane: datastore routing vs BGP (BIRD), one run ==");
    println!(
        "{:>10} {:>6} {:>9} {:>12} {:>14} {:>14} {:>12} {:>14}",
        "plane",
        "nodes",
        "sessions",
        "all ready",
        "new block p50",
        "new block p99",
        "BIRD RSS",
        "idle CPU/node"
    );
    for r in &rows {
        println!(
            "{:>10} {:>6} {:>9} {:>12} {:>14} {:>14} {:>8.1} MiB {:>13.2}%",
            r.plane.name(),
            r.nodes,
            r.sessions,
            ms(r.ready),
            ms(r.all_nodes.median()),
            ms(r.all_nodes.p99()),
            r.bird_rss_kib as f64 / 1024.0,
            r.cpu_percent_per_node
        );
    }
    if let Some(r) = rows
        .iter()
        .find(|r| r.plane == Plane::Mesh && r.nodes == 100)
    {
        println!(
            "full mesh at 100 nodes: {} sessions Established (target: works, 4,950: {})",
            r.sessions,
            verdict(r.sessions == 4950)
        );
    }
    if let Some(r) = rows
        .iter()
        .find(|r| r.plane == Plane::Reflectors && r.nodes == 100)
    {
        println!(
            "reflectors at 100 nodes: new block p99 {} (target <= 1 s: {})",
            ms(r.all_nodes.p99()),
            verdict(r.all_nodes.p99() <= Duration::from_secs(1))
        );
    }
    let max_rss = rows.iter().map(|r| r.bird_rss_kib).max().unwrap_or(0);
    println!(
        "BIRD RSS at most {:.1} MiB per node (target <= 10 MiB: {})",
        max_rss as f64 / 1024.0,
        verdict(max_rss <= 10 * 1024)
    );
    Ok(())
}

fn measure_plane(agent: &Path, n: usize, plane: Plane, args: &Args) -> Result<Row> {
    let work = sh::root().join(format!(
        "target/bench-bgp/{}-{n}",
        plane.name().replace(' ', "-")
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let store = DatastoreConfig::sqlite(work.join("store.db")).open_or_create()?;
    if plane == Plane::Reflectors {
        podnet_ipam::bgp::change(&*store, |b| {
            b.cluster.node_to_node_mesh = false;
            for rr in ["n0", "n1"] {
                b.nodes
                    .entry(rr.into())
                    .or_default()
                    .route_reflector_cluster_id = Some("224.0.0.1".parse().expect("an address"));
            }
            Ok(())
        })?;
    }
    let extra: Vec<String> = match plane {
        Plane::Datastore => vec![],
        _ => vec!["--routing".into(), "bgp".into()],
    };
    let tag = format!("pnbb{}-{}{n}", std::process::id(), plane.name().len());
    let start = Instant::now();
    // Every node talks to every other (mesh) or to the reflectors: more ARP entries than one
    // host's shared neighbour table takes at 100 nodes, so they are pinned.
    let cluster = build(n, &tag, agent, &work, Backend::Sqlite, &extra, true)?;
    wait_registered(&*store, n)?;
    let sessions = wait_ready(&cluster, plane, n)?;
    let ready = start.elapsed();
    eprintln!("  ready after {ready:?} ({sessions} sessions)");
    let protocol = if plane == Plane::Datastore {
        AGENT_ROUTE_PROTOCOL
    } else {
        BIRD_ROUTE_PROTOCOL
    };
    // A new block for n2 (a client in the reflector case), as when a node fills its first.
    let (_, all_nodes) = super::agent::measure(&cluster, args.trials, protocol, Some(2), |t| {
        add_block(&*store, "n2", t)
    })?;
    let birds: Vec<u32> = (0..n).filter_map(|i| bird_pid(&work, i)).collect();
    let bird_rss_kib = birds.iter().filter_map(|p| rss_kib(*p)).max().unwrap_or(0);
    let mut pids: Vec<u32> = cluster.agents.iter().map(|a| a.id()).collect();
    pids.extend(&birds);
    let cpu_percent_per_node = idle_cpu(&pids, Duration::from_secs(args.idle_seconds)) / n as f64;
    drop(cluster);
    for p in birds {
        // SAFETY: kill(2) on the BIRDs this run's agents started.
        unsafe {
            libc::kill(p as i32, libc::SIGKILL);
        }
    }
    Ok(Row {
        plane,
        nodes: n,
        sessions,
        ready,
        all_nodes: Stats::new(all_nodes),
        bird_rss_kib,
        cpu_percent_per_node,
    })
}

/// A new block for `node` (the `t`-th of the run), written as IPAM writes a claim: its record
/// and its affinity in one transaction.
fn add_block(store: &dyn Datastore, node: &str, t: usize) -> Result<(Ipv4Net, SystemTime)> {
    let pool: Ipv4Net = POOL.parse()?;
    let cidr = Ipv4Net::new(std::net::Ipv4Addr::new(10, 190, t as u8, 0), 24)?;
    let mut txn = Txn::default();
    txn.put(
        keys::block(&cidr),
        serde_json::to_string(&Block::new(cidr, pool, node))?,
    );
    txn.put(
        keys::affinity(node, &cidr),
        serde_json::to_string(&Affinity {
            node: node.to_string(),
            block: cidr,
            pool,
        })?,
    );
    let at = SystemTime::now();
    store.txn(&txn)?;
    Ok((cidr, at))
}

fn bird_pid(work: &Path, i: usize) -> Option<u32> {
    std::fs::read_to_string(work.join(format!("n{i}/bird/bird.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Waits until every agent's /readyz answers 200 (BGP: BIRD up and every session
/// Established); the number of BGP sessions in the cluster (each counted once).
fn wait_ready(c: &Cluster, plane: Plane, n: usize) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(300 + n as u64 * 2);
    let mut ready = vec![false; n];
    while ready.iter().any(|r| !r) {
        if Instant::now() > deadline {
            bail!(
                "{} of {n} nodes not ready after {:?}",
                ready.iter().filter(|r| !**r).count(),
                deadline.elapsed()
            );
        }
        for (i, ns) in c.nodes.iter().enumerate() {
            if !ready[i] {
                ready[i] = ns.run(readyz).unwrap_or(false);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(match plane {
        Plane::Datastore => 0,
        Plane::Mesh => n * (n - 1) / 2,
        // Each client with both reflectors, and the reflectors with each other.
        Plane::Reflectors => (n - 2) * 2 + 1,
    })
}

fn readyz() -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:9099") else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut out = String::new();
    s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").is_ok()
        && s.read_to_string(&mut out).is_ok()
        && out.contains(" 200 ")
}

/// CPU time (user + system) of `pids` over `window`, as a percentage of one core.
fn idle_cpu(pids: &[u32], window: Duration) -> f64 {
    let ticks = |pid: &u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
                Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0)
    };
    let before: u64 = pids.iter().map(ticks).sum();
    std::thread::sleep(window);
    let after: u64 = pids.iter().map(ticks).sum();
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (after.saturating_sub(before)) as f64 / hz / window.as_secs_f64() * 100.0
}
