//! `cargo xtask bench datapath`: what a pod gets from the network, from `podnet-lab perf` on
//! the seed lab. For each encapsulation: pod -> pod on another node beside node -> node over
//! the same fabric, and pod -> pod on one node beside a bare veth pair, in alternating rounds;
//! whether anything was fragmented; and, with VXLAN, the tunnel's offloads varied (GRO on the
//! nodes' uplinks, the tunnel's transmit checksum off as Calico does on kernels with the
//! checksum bug) to see which the kernel performs best with. IPIP runs in the VM
//! (`cargo xtask vm`) when this kernel has none, so its figures are ratios within the VM.

use super::stats::verdict;
use crate::deps::{self, Package};
use crate::sh;
use anyhow::{bail, Context, Result};
use podnet_netlink::{netns::OwnedNetns, Netlink, Netns};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Rounds of each pair of measurements (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds each iperf3 run lasts.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    /// Encapsulations to measure.
    #[arg(long, value_delimiter = ',', default_value = "none,vxlan,ipip")]
    encaps: Vec<String>,
    /// Skip the offload variants.
    #[arg(long)]
    no_offloads: bool,
    /// (used in the VM) write the figures as JSON here instead of printing them.
    #[arg(long, hide = true)]
    json_to: Option<PathBuf>,
}

const ETHTOOL: Package = Package {
    name: "ethtool",
    provides: "/usr/sbin/ethtool",
};

/// The pods measured: ubuntu-test (sung-ubuntu04) to web-1 (sung-ubuntu05) and to web-0
/// (sung-ubuntu04, the same node).
const FROM: &str = "ubuntu-test";
const OTHER_NODE: &str = "web-1";
const SAME_NODE: &str = "web-0";

/// One encapsulation's (or variant's) medians.
#[derive(serde::Serialize, serde::Deserialize)]
struct Figures {
    what: String,
    cross: f64,
    node_to_node: f64,
    cross_ratio: f64,
    same: f64,
    veth: f64,
    same_ratio: f64,
    requests: f64,
    fragments: u64,
    mss: u64,
}

pub fn run(args: Args) -> Result<()> {
    if !sh::is_root() {
        bail!("bench datapath builds labs: run it as root");
    }
    // In the VM (`--json-to`) the host has built everything already.
    let lab = if args.json_to.is_none() {
        deps::ensure_build()?;
        deps::ensure(&[&deps::BIRD, &deps::IPERF3, &ETHTOOL])?;
        super::release_lab()?
    } else {
        sh::root().join("target/release/podnet-lab")
    };
    let mut all = Vec::new();
    for encap in &args.encaps {
        if encap == "ipip" && !has_ipip()? {
            all.extend(in_vm(&args)?);
            continue;
        }
        all.push(measure(&lab, &args, encap, encap, &[])?);
        if encap == "vxlan" && !args.no_offloads {
            all.push(measure(
                &lab,
                &args,
                encap,
                "vxlan, GRO on the nodes' ens3",
                &[("ens3", "gro", "on")],
            )?);
            all.push(measure(
                &lab,
                &args,
                encap,
                "vxlan, tunnel tx checksum off",
                &[("vxlan.calico", "tx", "off")],
            )?);
        }
    }
    if let Some(to) = &args.json_to {
        std::fs::write(to, serde_json::to_string(&all)?)?;
        return Ok(());
    }
    print(&all);
    Ok(())
}

fn print(all: &[Figures]) {
    println!("\n== pod data path (medians; Gbit/s by iperf3) ==");
    for f in all {
        let target = match f.what.as_str() {
            "none" => Some(0.97),
            "vxlan" => Some(0.9),
            _ => None,
        };
        let against = target.map_or(String::new(), |t| {
            format!(" (target >= {t}: {})", verdict(f.cross_ratio >= t))
        });
        println!("{}:", f.what);
        println!(
            "  other node  pod -> pod {:6.2}  node -> node {:6.2}  {:.2}x{against}",
            f.cross, f.node_to_node, f.cross_ratio
        );
        println!(
            "  same node   pod -> pod {:6.2}  bare veth    {:6.2}  {:.2}x",
            f.same, f.veth, f.same_ratio
        );
        println!(
            "  requests/s pod -> pod (other node) {:.0}; MSS {}; fragments {} ({})",
            f.requests,
            f.mss,
            f.fragments,
            if f.fragments == 0 {
                "none: full-size segments crossed whole"
            } else {
                "MTU too big for the way"
            }
        );
    }
}

/// The seed up with `encap`, each node's `(device, feature, value)` set with ethtool, then
/// `rounds` alternating perf runs to another node and on the same node.
fn measure(
    lab: &Path,
    args: &Args,
    encap: &str,
    what: &str,
    features: &[(&str, &str, &str)],
) -> Result<Figures> {
    eprintln!("{what}: seed lab up");
    sh::output(Command::new(lab).args(["up", "--quiet", "--encap", encap]))?;
    let result = (|| -> Result<Figures> {
        for node in ["sung-ubuntu04", "sung-ubuntu05"] {
            for (dev, feature, value) in features {
                let mut cmd = Command::new("ethtool");
                cmd.args(["-K", dev, feature, value]);
                Netns::open(format!("/run/netns/{node}"))?.enter_on_exec(&mut cmd)?;
                sh::output(&mut cmd)?;
            }
        }
        let (mut cross, mut same) = (Vec::new(), Vec::new());
        for r in 0..args.rounds {
            eprintln!("{what}: round {}/{}", r + 1, args.rounds);
            cross.push(perf(lab, OTHER_NODE, args.seconds)?);
            same.push(perf(lab, SAME_NODE, args.seconds)?);
        }
        let med = |v: &[serde_json::Value], f: &dyn Fn(&serde_json::Value) -> f64| {
            let mut x: Vec<f64> = v.iter().map(f).collect();
            x.sort_by(f64::total_cmp);
            x[x.len() / 2]
        };
        let g = |k: &'static str| move |v: &serde_json::Value| v[k].as_f64().unwrap_or(0.0);
        let ratio = |v: &serde_json::Value| g("pod_gbits")(v) / g("reference_gbits")(v).max(1e-9);
        Ok(Figures {
            what: what.into(),
            cross: med(&cross, &g("pod_gbits")),
            node_to_node: med(&cross, &g("reference_gbits")),
            cross_ratio: med(&cross, &ratio),
            same: med(&same, &g("pod_gbits")),
            veth: med(&same, &g("reference_gbits")),
            same_ratio: med(&same, &ratio),
            requests: med(&cross, &g("requests_per_second")),
            fragments: cross
                .iter()
                .chain(&same)
                .map(|v| v["fragments"].as_u64().unwrap_or(0))
                .sum(),
            mss: cross[0]["mss"].as_u64().unwrap_or(0),
        })
    })();
    let _ = Command::new(lab).arg("down").output();
    std::thread::sleep(Duration::from_secs(2));
    result
}

/// `podnet-lab perf FROM to --json`.
fn perf(lab: &Path, to: &str, seconds: u64) -> Result<serde_json::Value> {
    let out = sh::output(Command::new(lab).args([
        "perf",
        FROM,
        to,
        "--json",
        "--seconds",
        &seconds.to_string(),
    ]))?;
    serde_json::from_str(&out).context("perf's JSON")
}

/// Whether this kernel can make an IPIP device (tried in a namespace made for it).
fn has_ipip() -> Result<bool> {
    let ns = OwnedNetns::named(&format!("pnbench{}-ipip", std::process::id()))?;
    Ok(ns.run(|| {
        Netlink::open()
            .and_then(|mut nl| nl.add_ipip("probe", 1480))
            .is_ok()
    })?)
}

/// IPIP measured in the VM: this same benchmark, its figures passed back in a file.
fn in_vm(args: &Args) -> Result<Vec<Figures>> {
    eprintln!("ipip: this kernel has none; measuring in the VM (software emulation: ratios only)");
    let out = sh::root().join("target/bench-datapath-ipip.json");
    let _ = std::fs::remove_file(&out);
    let xtask = std::env::current_exe()?;
    let script = format!(
        "{} bench datapath --encaps ipip --rounds {} --seconds {} --json-to {}",
        xtask.display(),
        args.rounds,
        args.seconds,
        out.display()
    );
    let vm = crate::vm::Vm::prepare()?;
    let code = vm.run(&script, 2048, Duration::from_secs(900), false)?;
    if code != 0 {
        bail!("bench datapath for ipip failed in the VM (exit {code})");
    }
    let mut figures: Vec<Figures> = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    for f in &mut figures {
        f.what = format!("{} (in the VM)", f.what);
    }
    Ok(figures)
}
