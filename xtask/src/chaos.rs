//! `cargo xtask chaos`: the long chaos run, for people (the test suite runs a short one).
//! Builds everything, brings up a generated lab of `--nodes` nodes, runs `podnet-lab chaos`
//! on it with the seed given (or one from the clock, printed) and removes the lab, whatever
//! the outcome; the exit status is the run's.

use crate::deps::{self, BIRD, ETCD};
use crate::sh::{self, cargo, execute};
use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    /// The seed of every random choice (a failed run prints its seed: pass it to replay).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// `sqlite`, or `etcd` (a three-member cluster, one member killed now and then).
    #[arg(long, value_parser = ["sqlite", "etcd"], default_value = "sqlite")]
    datastore: String,
    #[arg(long, default_value_t = 64)]
    runtimes: usize,
    /// Percent of plugin calls SIGKILLed.
    #[arg(long, default_value_t = 20)]
    kill_percent: u32,
}

pub fn run(a: Args) -> Result<()> {
    deps::ensure_build()?;
    deps::ensure(&[&BIRD, &ETCD])?;
    execute(cargo().args(["build", "-q", "--workspace", "--bins"]))?;
    let bin = sh::root().join("target/debug/podnet-lab");
    let bin = bin.to_str().expect("UTF-8 path");
    let lab = format!("gen{}x0", a.nodes);
    let podnet_lab = |args: &[String]| -> Result<bool> {
        let mut cmd = sh::as_root(bin)?;
        Ok(cmd.args(args).status()?.success())
    };
    let words = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let mut up = words(&["up", "--nodes", &a.nodes.to_string(), "--quiet"]);
    if a.datastore == "etcd" {
        up.extend(words(&["--datastore", "etcd", "--etcd-members", "3"]));
    }
    if !podnet_lab(&up)? {
        bail!("the lab did not come up");
    }
    let mut chaos = words(&[
        "--lab",
        &lab,
        "chaos",
        "--minutes",
        &a.minutes.to_string(),
        "--runtimes",
        &a.runtimes.to_string(),
        "--kill-percent",
        &a.kill_percent.to_string(),
    ]);
    if let Some(s) = a.seed {
        chaos.extend(words(&["--seed", &s.to_string()]));
    }
    let passed = podnet_lab(&chaos);
    podnet_lab(&words(&["--lab", &lab, "down"]))?;
    if !passed? {
        bail!("chaos found broken invariants (its report above names the seed)");
    }
    Ok(())
}
