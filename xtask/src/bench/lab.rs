//! `cargo xtask bench lab`: the lab's own speed (the seed up, test, down; 100 nodes with 1,000
//! pods up, a sample of cross-node pings, down), beside Mininet bringing up and tearing down
//! 100 bare hosts (`mn --switch lxbr --controller none --topo single,100 --test none`), run
//! inside a namespace of its own so the host's stays untouched.

use super::stats::{verdict, Stats};
use crate::deps::{self, Package};
use crate::sh::{self, cargo, execute};
use anyhow::{bail, Context, Result};
use podnet_netlink::netns::OwnedNetns;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Seed runs (up, test, down each).
    #[arg(long, default_value_t = 3)]
    seed_runs: usize,
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    #[arg(long, default_value_t = 10)]
    pods_per_node: usize,
    /// The lab's routing for every run: `bgp` (its default, BIRD in a node-to-node mesh) or
    /// `datastore` (the agents' own routes).
    #[arg(long, value_parser = ["bgp", "datastore"], default_value = "bgp")]
    routing: String,
}

const MININET: Package = Package {
    name: "mininet",
    provides: "/usr/bin/mn",
};
const BRIDGE_UTILS: Package = Package {
    name: "bridge-utils",
    provides: "/usr/sbin/brctl",
};

fn timed(lab: &Path, args: &[&str]) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new(lab)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "podnet-lab {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// Namespaces are destroyed by the kernel after `down` returns (asynchronously, as after
/// Mininet's exit); give that work time to finish so one phase doesn't slow the next.
fn settle() {
    std::thread::sleep(Duration::from_secs(3));
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn run(args: Args) -> Result<()> {
    if !sh::is_root() {
        bail!("bench lab builds labs: run it as root");
    }
    crate::deps::ensure_build()?;
    deps::ensure(&[&MININET, &BRIDGE_UTILS, &deps::BIRD])?;
    execute(cargo().args([
        "build",
        "--release",
        "-q",
        "-p",
        "podnet-lab",
        "-p",
        "podnet-cni",
        "-p",
        "podnet-ipam",
        "-p",
        "podnet-agent",
        "--bins",
    ]))?;
    let lab = sh::root().join("target/release/podnet-lab");
    let _ = Command::new(&lab).args(["down", "--all"]).output();

    let mut ups = Vec::new();
    let mut tests = Vec::new();
    let mut downs = Vec::new();
    let mut totals = Vec::new();
    for i in 0..args.seed_runs {
        eprintln!("seed run {}/{}", i + 1, args.seed_runs);
        let u = timed(&lab, &["up", "--quiet", "--routing", &args.routing])?;
        let t = timed(&lab, &["test"]);
        let d = timed(&lab, &["down"])?;
        let t = t?;
        settle();
        ups.push(u);
        tests.push(t);
        downs.push(d);
        totals.push(u + t + d);
    }

    let name = format!("gen{}x{}", args.nodes, args.pods_per_node);
    eprintln!("{} nodes x {} pods", args.nodes, args.pods_per_node);
    let big_up = timed(
        &lab,
        &[
            "up",
            "--quiet",
            "--nodes",
            &args.nodes.to_string(),
            "--pods-per-node",
            &args.pods_per_node.to_string(),
            "--routing",
            &args.routing,
        ],
    );
    let big_test = big_up
        .as_ref()
        .ok()
        .map(|_| timed(&lab, &["--lab", &name, "test"]));
    let big_down = timed(&lab, &["--lab", &name, "down"]);
    let (big_up, big_down) = (big_up?, big_down?);
    let big_test = big_test.context("no test ran")??;
    settle();

    eprintln!("Mininet, {} bare hosts", args.nodes);
    let mn = mininet(args.nodes)?;

    let (u, t, d, all) = (
        Stats::new(ups),
        Stats::new(tests),
        Stats::new(downs),
        Stats::new(totals),
    );
    println!(
        "\n== podnet-lab, seed scenario ({} runs, medians, routing {}) ==",
        args.seed_runs, args.routing
    );
    println!(
        "up {}   test {}   down {}   total {} (target < 2 s: {})",
        secs(u.median()),
        secs(t.median()),
        secs(d.median()),
        secs(all.median()),
        verdict(all.median() < Duration::from_secs(2))
    );
    println!(
        "\n== {} nodes, {} pods ==",
        args.nodes,
        args.nodes * args.pods_per_node
    );
    println!(
        "podnet-lab up {}   test (sample of cross-node pings) {}   down {}",
        secs(big_up),
        secs(big_test),
        secs(big_down)
    );
    println!(
        "Mininet {} bare hosts, up and down: {}",
        args.nodes,
        secs(mn)
    );
    let ratio = (big_up + big_down).as_secs_f64() / mn.as_secs_f64();
    println!(
        "ratio podnet-lab (up+down) / Mininet: {ratio:.2}x (target < 1.0: {})",
        verdict(ratio < 1.0)
    );
    Ok(())
}

/// Mininet's up and down of `n` hosts on one Linux bridge, inside a namespace of its own.
fn mininet(n: usize) -> Result<Duration> {
    let ns = OwnedNetns::named(&format!("pnbench{}-mininet", std::process::id()))?;
    let mut cmd = Command::new("mn");
    cmd.args([
        "--switch",
        "lxbr",
        "--controller",
        "none",
        "--topo",
        &format!("single,{n}"),
        "--test",
        "none",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    ns.enter_on_exec(&mut cmd)?;
    let start = Instant::now();
    let out = cmd.output().context("run mn")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!("mn failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(took)
}
