//! `cargo xtask bench lab`: the lab's own speed (the seed up, test, down, routed by BGP and by
//! the agents; 100 nodes with 1,000 pods up, a sample of cross-node pings, down, as generated
//! with route reflectors and with `--mesh`), beside Mininet bringing up and tearing down 100
//! bare hosts (`mn --switch lxbr --controller none --topo single,100 --test none`), run inside
//! a namespace of its own so the host's stays untouched.

use super::stats::{verdict, Stats};
use crate::deps::{self, Package};
use crate::sh;
use anyhow::{bail, Context, Result};
use podnet_netlink::netns::OwnedNetns;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Seed runs (up, test, down each), with each routing.
    #[arg(long, default_value_t = 3)]
    seed_runs: usize,
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    #[arg(long, default_value_t = 10)]
    pods_per_node: usize,
    /// The big lab's routing: `bgp` (its default, BIRD in a node-to-node mesh) or
    /// `datastore` (the agents' own routes). The seed runs both ways.
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
    let lab = super::release_lab()?;

    // The seed routed both ways in one run: BGP (the lab's default) and the agents' own routes.
    let by_bgp = seed_runs(&lab, "bgp", args.seed_runs)?;
    let by_agents = seed_runs(&lab, "datastore", args.seed_runs)?;

    // The big lab as generated (route reflectors above 50 nodes), then with a full mesh.
    let generated = big_lab(&lab, &args, false)?;
    let meshed = big_lab(&lab, &args, true)?;

    eprintln!("Mininet, {} bare hosts", args.nodes);
    let mn = mininet(args.nodes)?;

    for (routing, runs) in [("bgp", &by_bgp), ("datastore", &by_agents)] {
        println!(
            "\n== podnet-lab, seed scenario ({} runs, medians, routing {routing}) ==",
            args.seed_runs
        );
        let up = runs.up.median();
        let target = match routing {
            "bgp" => format!(" (target <= 1.0 s: {})", verdict(up.as_secs_f64() <= 1.0)),
            _ => String::new(),
        };
        println!(
            "up {}{target}   test {}   down {}   total {}",
            secs(up),
            secs(runs.test.median()),
            secs(runs.down.median()),
            secs(runs.total.median()),
        );
    }
    println!(
        "\n== {} nodes, {} pods, routing {} ==",
        args.nodes,
        args.nodes * args.pods_per_node,
        args.routing
    );
    println!(
        "Mininet {} bare hosts, up and down: {}",
        args.nodes,
        secs(mn)
    );
    for (big, target) in [(&generated, 1.0), (&meshed, 2.0)] {
        let ratio = (big.up + big.down).as_secs_f64() / mn.as_secs_f64();
        println!(
            "podnet-lab {}: up {}   test (sample of cross-node pings) {}   down {}   (up+down) / Mininet {ratio:.2}x (target <= {target:.1}: {})",
            big.what,
            secs(big.up),
            secs(big.test),
            secs(big.down),
            verdict(ratio <= target)
        );
        println!("  {}", big.timing);
    }
    Ok(())
}

/// One run of the big generated lab: up, test, down, and `up`'s own timing line.
struct BigRun {
    what: &'static str,
    up: Duration,
    test: Duration,
    down: Duration,
    timing: String,
}

/// The generated lab up (as generated, or with `--mesh`), tested and down.
fn big_lab(lab: &Path, args: &Args, mesh: bool) -> Result<BigRun> {
    let name = format!("gen{}x{}", args.nodes, args.pods_per_node);
    let what = if mesh {
        "full mesh (--mesh)"
    } else {
        "as generated"
    };
    eprintln!("{} nodes x {} pods, {what}", args.nodes, args.pods_per_node);
    let (nodes, pods) = (args.nodes.to_string(), args.pods_per_node.to_string());
    let mut up = vec![
        "up",
        "--nodes",
        &nodes,
        "--pods-per-node",
        &pods,
        "--routing",
        &args.routing,
    ];
    if mesh {
        up.push("--mesh");
    }
    let start = Instant::now();
    let out = Command::new(lab)
        .args(&up)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let up_took = start.elapsed();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let test = out
        .status
        .success()
        .then(|| timed(lab, &["--lab", &name, "test"]));
    let down = timed(lab, &["--lab", &name, "down"]);
    if !out.status.success() {
        bail!("podnet-lab {up:?} failed:\n{said}");
    }
    let (test, down) = (test.context("no test ran")??, down?);
    settle();
    let timing = said
        .lines()
        .filter(|l| l.starts_with("timing:") || l.contains("route reflectors"))
        .collect::<Vec<_>>()
        .join("\n  ");
    Ok(BigRun {
        what,
        up: up_took,
        test,
        down,
        timing,
    })
}

/// Medians of the seed's up, test, down and their sum.
struct SeedRuns {
    up: Stats,
    test: Stats,
    down: Stats,
    total: Stats,
}

/// The seed up, tested and down `n` times with `routing`.
fn seed_runs(lab: &Path, routing: &str, n: usize) -> Result<SeedRuns> {
    let (mut ups, mut tests, mut downs, mut totals) = (vec![], vec![], vec![], vec![]);
    for i in 0..n {
        eprintln!("seed run {}/{n}, routing {routing}", i + 1);
        let u = timed(lab, &["up", "--quiet", "--routing", routing])?;
        let t = timed(lab, &["test"]);
        let d = timed(lab, &["down"])?;
        let t = t?;
        settle();
        ups.push(u);
        tests.push(t);
        downs.push(d);
        totals.push(u + t + d);
    }
    Ok(SeedRuns {
        up: Stats::new(ups),
        test: Stats::new(tests),
        down: Stats::new(downs),
        total: Stats::new(totals),
    })
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
