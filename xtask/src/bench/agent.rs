//! `cargo xtask bench agent`: N node namespaces on one bridge, each with its `podnet-agent`
//! on the embedded store. A new node registers and claims a block; we time how long until its
//! route is in every other node's kernel (each node's route events are watched from inside
//! its namespace), and read the agents' resident memory.

use super::stats::{ms, verdict, Stats};
use crate::sh::{self, cargo, execute};
use anyhow::{bail, Context, Result};
use podnet_ipam::store::Txn;
use podnet_ipam::{Datastore, DatastoreConfig, Ipam, PoolSpec};
use podnet_netlink::netns::OwnedNetns;
use podnet_netlink::{Netlink, RouteEvent, RouteMonitor, Uplink, AGENT_ROUTE_PROTOCOL};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    Sqlite,
    Etcd,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Etcd => "etcd",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Cluster sizes to measure on etcd.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    etcd_nodes: Vec<usize>,
    /// Cluster sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    nodes: Vec<usize>,
    /// New nodes registered per size.
    #[arg(long, default_value_t = 20)]
    trials: usize,
}

pub(super) struct Cluster {
    /// Dropped before the namespaces.
    _etcd: Option<super::etcd::Etcd>,
    pub fabric: OwnedNetns,
    pub nodes: Vec<OwnedNetns>,
    pub agents: Vec<Child>,
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

/// The etcd of the etcd runs, in the fabric namespace on the bridge.
const ETCD_IP: &str = "192.168.0.1";

/// `n` nodes on one bridge, each with an agent (`extra` flags added) on the SQLite file in
/// `work` or on an etcd in the fabric namespace; `pin`: their neighbours pinned (see
/// [`podnet_netlink::pin_neighbours`]), for a full mesh of node-to-node sessions.
pub(super) fn build(
    n: usize,
    tag: &str,
    agent: &Path,
    work: &Path,
    backend: Backend,
    extra: &[String],
    pin: bool,
) -> Result<Cluster> {
    let fabric = OwnedNetns::named(&format!("{tag}-fabric"))?;
    let mut f = fabric.run(Netlink::open)??;
    f.add_bridge("br0")?;
    let br = f.link("br0")?.context("br0")?;
    f.set_up(br.index)?;
    let etcd = match backend {
        Backend::Sqlite => None,
        Backend::Etcd => {
            f.add_address(br.index, format!("{ETCD_IP}/16").parse()?)?;
            let lo = f.link("lo")?.context("lo")?;
            f.set_up(lo.index)?;
            Some(super::etcd::Etcd::start(Some(&fabric), ETCD_IP, 2379)?)
        }
    };
    let store_args: Vec<String> = match &etcd {
        Some(e) => vec!["--etcd-endpoints".into(), e.url.clone()],
        None => vec![
            "--datastore".into(),
            work.join("store.db").display().to_string(),
        ],
    };
    let mut nodes = Vec::new();
    let mut agents = Vec::new();
    for i in 0..n {
        let ns = OwnedNetns::named(&format!("{tag}-n{i}"))?;
        f.plug_node(
            br.index,
            &ns,
            &Uplink {
                port: &format!("p{i}"),
                addr: ipnet::Ipv4Net::new(node_ip(i), 16)?,
                gateway: Ipv4Addr::new(192, 168, 0, 254),
                onlink: true,
            },
        )?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path()))
            .arg(agent)
            .args([
                "--log-level",
                "warn",
                "run",
                "--no-config",
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
            .args(&store_args)
            .args(extra)
            .arg("--state-dir")
            .arg(work.join(format!("n{i}")))
            .stdout(Stdio::null())
            .spawn()?;
        agents.push(child);
        nodes.push(ns);
    }
    if pin {
        let all: Vec<(&podnet_netlink::Netns, Ipv4Addr)> = nodes
            .iter()
            .enumerate()
            .map(|(i, ns)| (&**ns, node_ip(i)))
            .collect();
        podnet_netlink::pin_neighbours(&all)?;
    }
    Ok(Cluster {
        _etcd: etcd,
        fabric,
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
    execute(cargo().args([
        "build",
        "--release",
        "-q",
        "-p",
        "podnet-ipam",
        "--example",
        "register_node",
    ]))?;
    let agent = sh::root().join("target/release/podnet-agent");
    let mut summary = Vec::new();
    let runs: Vec<(Backend, usize)> = args
        .nodes
        .iter()
        .map(|&n| (Backend::Sqlite, n))
        .chain(args.etcd_nodes.iter().map(|&n| (Backend::Etcd, n)))
        .collect();
    for (backend, n) in runs {
        let work = sh::root().join(format!("target/bench-agent/{}-{n}", backend.name()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        let tag = format!("pnba{}-{}{n}", std::process::id(), backend.name());
        eprintln!("{n} nodes on {}: starting agents", backend.name());
        let cluster = build(n, &tag, &agent, &work, backend, &[], false)?;
        let (latencies, all_nodes) = match backend {
            Backend::Sqlite => {
                let store = DatastoreConfig::sqlite(work.join("store.db")).open_or_create()?;
                wait_registered(&*store, n)?;
                measure(&cluster, args.trials, AGENT_ROUTE_PROTOCOL, None, |t| {
                    register_sqlite(&*store, &format!("new{t}"), new_ip(t))
                })?
            }
            Backend::Etcd => {
                let conf = format!(r#"{{"type":"etcd","endpoints":["http://{ETCD_IP}:2379"]}}"#);
                // etcd serves the fabric: xtask reaches it through helpers in its namespace.
                let helper = sh::root().join("target/release/examples/register_node");
                wait_registered_with(|| count_nodes_etcd(&cluster.fabric), n)?;
                measure(&cluster, args.trials, AGENT_ROUTE_PROTOCOL, None, |t| {
                    register_etcd(
                        &helper,
                        &cluster.fabric,
                        &conf,
                        &format!("new{t}"),
                        new_ip(t),
                    )
                })?
            }
        };
        let rss: Vec<u64> = cluster
            .agents
            .iter()
            .filter_map(|a| rss_kib(a.id()))
            .collect();
        let max_rss = rss.iter().copied().max().unwrap_or(0);
        let mean_rss = rss.iter().sum::<u64>() / rss.len().max(1) as u64;
        summary.push((
            backend,
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
        "{:>7} {:>6} {:>12} {:>12} {:>16} {:>16} {:>14} {:>13}",
        "store",
        "nodes",
        "per-node p50",
        "per-node p99",
        "all-nodes p50",
        "all-nodes p99",
        "RSS mean",
        "RSS max"
    );
    for (backend, n, per, all, mean, max) in &summary {
        println!(
            "{:>7} {n:>6} {:>12} {:>12} {:>16} {:>16} {:>10.1} MiB {:>9.1} MiB",
            backend.name(),
            ms(per.median()),
            ms(per.p99()),
            ms(all.median()),
            ms(all.p99()),
            *mean as f64 / 1024.0,
            *max as f64 / 1024.0
        );
    }
    if let Some((_, _, _, all, _, _)) = summary.iter().find(|s| s.0 == Backend::Etcd && s.1 == 100)
    {
        let ok = all.p99() <= Duration::from_millis(100);
        println!(
            "N=100 on etcd: all-nodes p99 {} (target <= 100 ms with etcd watch: {})",
            ms(all.p99()),
            verdict(ok)
        );
    }
    if let Some((_, _, per, all, _, max)) = summary
        .iter()
        .find(|s| s.0 == Backend::Sqlite && s.1 == 100)
    {
        let ok = all.p99() <= Duration::from_millis(200);
        println!(
            "N=100: all-nodes p99 {} (target <= 200 ms: {}); per-node p99 {}",
            ms(all.p99()),
            verdict(ok),
            ms(per.p99())
        );
        let ok = *max <= 15 * 1024;
        println!(
            "N=100: max agent RSS {:.1} MiB (target <= 15 MiB: {})",
            *max as f64 / 1024.0,
            verdict(ok)
        );
    }
    Ok(())
}

pub(super) const POOL: &str = "10.128.0.0/10";

/// The address of the `t`-th node registered during a run.
fn new_ip(t: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 200, t as u8 + 1)
}

/// Waits until `count` says all `n` agents have registered.
fn wait_registered_with(count: impl Fn() -> Result<usize>, n: usize) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if count()? >= n {
            std::thread::sleep(Duration::from_millis(500));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("only {} of {n} agents registered in 120 s", count()?)
}

/// Registered nodes on etcd, counted by the agent's `node list` run in the fabric namespace.
fn count_nodes_etcd(fabric: &OwnedNetns) -> Result<usize> {
    let agent = sh::root().join("target/release/podnet-agent");
    let mut cmd = Command::new(agent);
    cmd.args([
        "node",
        "list",
        "--etcd-endpoints",
        &format!("http://{ETCD_IP}:2379"),
    ]);
    fabric.enter_on_exec(&mut cmd)?;
    Ok(crate::sh::output(&mut cmd)?.lines().count())
}

/// Waits until all `n` agents have registered.
pub(super) fn wait_registered(store: &dyn Datastore, n: usize) -> Result<()> {
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

/// Runs `trials` changes one by one with `change` (which returns the block that should reach
/// every node and the wall-clock time it wrote it); returns per-node latencies until the route
/// (with `protocol`) was in each node's kernel and, per trial, the time until the last node had
/// it. `owner`, the cluster node the block belongs to (its route there is a blackhole), is not
/// waited for.
pub(super) fn measure(
    c: &Cluster,
    trials: usize,
    protocol: u8,
    owner: Option<usize>,
    change: impl Fn(usize) -> Result<(ipnet::Ipv4Net, SystemTime)>,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (tx, rx) = mpsc::channel::<(usize, ipnet::Ipv4Net, SystemTime)>();
    for (i, ns) in c.nodes.iter().enumerate() {
        let mut mon = ns.run(RouteMonitor::open)??;
        let tx = tx.clone();
        std::thread::spawn(move || loop {
            let Ok(events) = mon.wait() else { return };
            let now = SystemTime::now();
            for e in events {
                if let RouteEvent::Added(r) = e {
                    let remote = r.kind == podnet_netlink::RouteKind::Unicast;
                    if r.protocol == protocol && remote && tx.send((i, r.dst, now)).is_err() {
                        return;
                    }
                }
            }
        });
    }
    let mut per_node = Vec::new();
    let mut all_nodes = Vec::new();
    for t in 0..trials {
        while rx.try_recv().is_ok() {}
        let (block, start) = change(t)?;
        let mut seen = vec![false; c.nodes.len()];
        if let Some(owner) = owner {
            seen[owner] = true;
        }
        let mut last = Duration::ZERO;
        while seen.iter().any(|s| !s) {
            let (i, dst, at) = rx
                .recv_timeout(Duration::from_secs(10))
                .context("a node never got the new route")?;
            if dst == block && !seen[i] {
                seen[i] = true;
                let d = at.duration_since(start).unwrap_or_default();
                per_node.push(d);
                last = last.max(d);
            }
        }
        all_nodes.push(last);
    }
    Ok((per_node, all_nodes))
}

/// In-process registration on the embedded store.
fn register_sqlite(
    store: &dyn Datastore,
    name: &str,
    ip: Ipv4Addr,
) -> Result<(ipnet::Ipv4Net, SystemTime)> {
    let pool = PoolSpec::new(POOL.parse()?, 24, false, Default::default())?;
    let block = Ipam::new(store, pool).ensure_block(name)?;
    let record =
        serde_json::json!({"name": name, "ip": ip, "prefixLen": 16, "encapsulation": "none"});
    let mut txn = Txn::default();
    txn.put(format!("/podnet/v1/nodes/{name}"), record.to_string());
    let start = SystemTime::now();
    store.txn(&txn)?;
    Ok((block, start))
}

/// Registration on etcd through the `register_node` helper (xtask itself links no etcd
/// client), run in the fabric namespace; its own clock reading marks the write.
fn register_etcd(
    helper: &Path,
    fabric: &OwnedNetns,
    conf: &str,
    name: &str,
    ip: Ipv4Addr,
) -> Result<(ipnet::Ipv4Net, SystemTime)> {
    let mut cmd = Command::new(helper);
    cmd.args([conf, POOL, name, &ip.to_string()]);
    fabric.enter_on_exec(&mut cmd)?;
    let out = crate::sh::output(&mut cmd)?;
    let (block, nanos) = out
        .trim()
        .split_once(' ')
        .context("read register_node's output")?;
    Ok((
        block.parse()?,
        SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos.parse()?),
    ))
}

pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
