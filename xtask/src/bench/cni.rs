//! `cargo xtask bench cni`: `podnet` against Debian's `ptp` + `host-local`, on the same kind of
//! namespaces in the same run: per-pod ADD and DEL, one at a time (alternating plugins) and 8
//! at a time, plus the kernel's own cost of deleting a veth, which bounds any DEL.

use super::call;
use super::stats::{ms, verdict, Stats};
use crate::deps::{self, CNI_PLUGINS};
use crate::sh::{self, cargo, execute};
use anyhow::{bail, Context, Result};
use podnet_netlink::netns::OwnedNetns;
use podnet_netlink::{Netlink, Netns, RouteSpec, VethSpec};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Pods per plugin in the one-at-a-time run.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pods per plugin in the 8-at-a-time run.
    #[arg(long, default_value_t = 160)]
    parallel_pods: usize,
}

const PARALLEL: usize = 8;

struct Plugin {
    name: &'static str,
    binary: PathBuf,
    config: String,
}

impl Plugin {
    /// Runs the plugin inside `node` (entered in the child before exec, so no extra process).
    fn exec(&self, node: &Netns, verb: &str, container: &str, pod: &Netns) -> Result<Duration> {
        let mut cmd = call::command(&self.binary, verb, container, pod.path());
        node.enter_on_exec(&mut cmd)?;
        call::timed(
            cmd,
            &self.config,
            &format!("{} {verb} {container}", self.name),
        )
    }
}

/// A node namespace with an uplink and a default route, like the lab's.
fn make_node(name: &str) -> Result<OwnedNetns> {
    let ns = OwnedNetns::named(name)?;
    let mut nl = ns.run(Netlink::open)??;
    nl.add_veth(&VethSpec {
        name: "ens3",
        mac: None,
        mtu: 1500,
        alias: None,
        peer_name: "fabric0",
        peer_netns: None,
    })?;
    for l in ["lo", "ens3", "fabric0"] {
        let link = nl.link(l)?.context("link just made")?;
        nl.set_up(link.index)?;
    }
    let ens3 = nl.link("ens3")?.context("ens3")?;
    nl.add_address(ens3.index, "192.168.110.103/16".parse()?)?;
    nl.add_route(
        &RouteSpec::default_via("192.168.0.1".parse()?, ens3.index, true),
        false,
    )?;
    Ok(ns)
}

#[derive(Default)]
struct Sequential {
    add: Vec<Duration>,
    del: Vec<Duration>,
}

pub fn run(args: Args) -> Result<()> {
    deps::ensure(&[&CNI_PLUGINS])?;
    deps::ensure_build()?;
    if !sh::is_root() {
        bail!(
            "bench cni makes namespaces and veths: run it as root (sudo -E cargo xtask bench cni)"
        );
    }
    execute(cargo().args([
        "build",
        "--release",
        "-q",
        "-p",
        "podnet-cni",
        "-p",
        "podnet-ipam",
        "--bins",
    ]))?;
    let release = sh::root().join("target/release");
    let work = sh::root().join("target/bench-cni");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    super::create_store(&work.join("store.db"))?;
    let tag = std::process::id();
    let podnet_node = make_node(&format!("pnbench{tag}-podnet"))?;
    let ptp_node = make_node(&format!("pnbench{tag}-ptp"))?;
    let podnet = Plugin {
        name: "podnet",
        binary: release.join("podnet"),
        config: podnet_config(&work),
    };
    let ptp = Plugin {
        name: "ptp+host-local",
        binary: PathBuf::from("/usr/lib/cni/ptp"),
        config: ptp_config(&work),
    };

    eprintln!("one at a time: {} pods per plugin, alternating", args.pods);
    let mut seq: [Sequential; 2] = Default::default();
    let pods: Vec<OwnedNetns> = (0..args.pods)
        .map(|i| OwnedNetns::named(&format!("pnbench{tag}-s{i}")))
        .collect::<Result<_, _>>()?;
    let pods2: Vec<OwnedNetns> = (0..args.pods)
        .map(|i| OwnedNetns::named(&format!("pnbench{tag}-t{i}")))
        .collect::<Result<_, _>>()?;
    let order = |i: usize| if i.is_multiple_of(2) { [0, 1] } else { [1, 0] };
    let runs = [(&podnet, &podnet_node, &pods), (&ptp, &ptp_node, &pods2)];
    for verb in ["ADD", "DEL"] {
        for i in 0..args.pods {
            for which in order(i) {
                let (plugin, node, pods) = runs[which];
                let took = plugin.exec(node, verb, &format!("s{i}"), &pods[i])?;
                let times = &mut seq[which];
                if verb == "ADD" {
                    times.add.push(took);
                } else {
                    times.del.push(took);
                }
            }
        }
    }
    drop(pods);
    drop(pods2);

    eprintln!(
        "{PARALLEL} at a time: {} pods per plugin",
        args.parallel_pods
    );
    let mut rates = Vec::new();
    for (which, (plugin, node)) in [(&podnet, &podnet_node), (&ptp, &ptp_node)]
        .into_iter()
        .enumerate()
    {
        let pods: Vec<OwnedNetns> = (0..args.parallel_pods)
            .map(|i| OwnedNetns::named(&format!("pnbench{tag}-p{which}-{i}")))
            .collect::<Result<_, _>>()?;
        let add = parallel(plugin, node, &pods, "ADD")?;
        let del = parallel(plugin, node, &pods, "DEL")?;
        rates.push((
            args.parallel_pods as f64 / add.as_secs_f64(),
            args.parallel_pods as f64 / del.as_secs_f64(),
        ));
    }
    let bare = bare_veth_delete(&podnet_node, tag, 50)?;

    let a = [
        Stats::new(seq[0].add.clone()),
        Stats::new(seq[1].add.clone()),
    ];
    let d = [
        Stats::new(seq[0].del.clone()),
        Stats::new(seq[1].del.clone()),
    ];
    println!("\n== one pod at a time ({} each) ==", args.pods);
    println!(
        "{:<16} {:>11} {:>11} {:>11} {:>11}",
        "plugin", "ADD median", "ADD p99", "DEL median", "DEL p99"
    );
    for (i, p) in [&podnet, &ptp].iter().enumerate() {
        println!(
            "{:<16} {:>11} {:>11} {:>11} {:>11}",
            p.name,
            ms(a[i].median()),
            ms(a[i].p99()),
            ms(d[i].median()),
            ms(d[i].p99())
        );
    }
    println!(
        "{:<16} {:>11} {:>11} {:>11} {:>11}",
        "bare veth delete",
        "",
        "",
        ms(bare.median()),
        ms(bare.p99())
    );
    let add_ratio = a[0].median().as_secs_f64() / a[1].median().as_secs_f64();
    let del_ratio = d[0].median().as_secs_f64() / d[1].median().as_secs_f64();
    println!(
        "ADD median ratio podnet / ptp+host-local: {add_ratio:.2}x (target <= 0.25x: {})",
        verdict(add_ratio <= 0.25)
    );
    println!(
        "DEL median ratio podnet / ptp+host-local: {del_ratio:.2}x (target <= 0.75x: {})",
        verdict(del_ratio <= 0.75)
    );
    println!(
        "\n== {PARALLEL} at a time ({} pods each) ==",
        args.parallel_pods
    );
    println!("{:<16} {:>14} {:>14}", "plugin", "ADD pods/s", "DEL pods/s");
    for (p, (add, del)) in [&podnet, &ptp].iter().zip(&rates) {
        println!("{:<16} {add:>14.0} {del:>14.0}", p.name);
    }
    let add_x = rates[0].0 / rates[1].0;
    println!(
        "ADD pods/s ratio podnet / ptp+host-local: {add_x:.2}x (target >= 3x: {})",
        verdict(add_x >= 3.0)
    );
    println!(
        "DEL pods/s ratio podnet / ptp+host-local: {:.2}x",
        rates[0].1 / rates[1].1
    );
    Ok(())
}

/// Runs `verb` for every pod with 8 workers; returns the wall time.
fn parallel(plugin: &Plugin, node: &Netns, pods: &[OwnedNetns], verb: &str) -> Result<Duration> {
    let start = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|w| {
                s.spawn(move || -> Result<()> {
                    for (i, pod) in pods.iter().enumerate().skip(w).step_by(PARALLEL) {
                        plugin.exec(node, verb, &format!("p{i}"), pod)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("worker panicked"))
    })?;
    Ok(start.elapsed())
}

/// The kernel's cost of removing a veth whose peer is in another namespace, through netlink
/// with no process start: the floor under any DEL.
fn bare_veth_delete(node: &Netns, tag: u32, n: usize) -> Result<Stats> {
    let mut nl = node.run(Netlink::open)??;
    let mut samples = Vec::new();
    for i in 0..n {
        let pod = OwnedNetns::named(&format!("pnbench{tag}-bare{i}"))?;
        nl.add_veth(&VethSpec {
            name: "benchveth",
            mac: None,
            mtu: 1500,
            alias: None,
            peer_name: "eth0",
            peer_netns: Some(pod.fd()),
        })?;
        let link = nl.link("benchveth")?.context("veth just made")?;
        nl.set_up(link.index)?;
        let start = Instant::now();
        nl.delete_link(link.index)?;
        samples.push(start.elapsed());
    }
    Ok(Stats::new(samples))
}

fn podnet_config(work: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": "bench", "type": "podnet", "nodename": "bench",
        "stateDir": work.join("state"),
        "log": {"file": work.join("podnet.log"), "level": "warn"},
        "ipam": {"type": "podnet-ipam", "pool": "10.200.0.0/16", "blockSize": 24,
                 "datastore": {"type": "sqlite", "path": work.join("store.db")}},
    })
    .to_string()
}

fn ptp_config(work: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": "bench", "type": "ptp", "mtu": 1480,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.201.0.0/16"}]], "dataDir": work.join("host-local")},
    })
    .to_string()
}
