//! `cargo xtask chaos` and `cargo xtask soak`: the long runs, for people (the test suite runs
//! short ones). Each builds everything, brings up a generated lab of `--nodes` nodes, runs
//! `podnet-lab chaos` (or `soak`) on it with the seed given (or one from the clock, printed)
//! and removes the lab, whatever the outcome; the exit status is the run's.

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
    let mut chaos = words(&[
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
    on_a_generated_lab(a.nodes, &a.datastore, &chaos, "chaos")
}

#[derive(clap::Args)]
pub struct SoakArgs {
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    #[arg(long, value_parser = ["sqlite", "etcd"], default_value = "sqlite")]
    datastore: String,
    #[arg(long)]
    seed: Option<u64>,
}

/// `cargo xtask soak`: the same, with `podnet-lab soak`.
pub fn soak(a: SoakArgs) -> Result<()> {
    let mut soak = words(&["soak", "--minutes", &a.minutes.to_string()]);
    if let Some(s) = a.seed {
        soak.extend(words(&["--seed", &s.to_string()]));
    }
    on_a_generated_lab(a.nodes, &a.datastore, &soak, "soak")
}

fn words(s: &[&str]) -> Vec<String> {
    s.iter().map(|w| w.to_string()).collect()
}

/// Builds, brings up a generated lab, runs `podnet-lab --lab LAB ARGS` on it, and removes
/// the lab whatever happened; fails when the run did.
fn on_a_generated_lab(nodes: usize, datastore: &str, args: &[String], what: &str) -> Result<()> {
    deps::ensure_build()?;
    deps::ensure(&[&BIRD, &ETCD])?;
    execute(cargo().args(["build", "-q", "--workspace", "--bins"]))?;
    let bin = sh::root().join("target/debug/podnet-lab");
    let bin = bin.to_str().expect("UTF-8 path");
    let lab = format!("gen{nodes}x0");
    let podnet_lab = |args: &[String]| -> Result<bool> {
        let mut cmd = sh::as_root(bin)?;
        Ok(cmd.args(args).status()?.success())
    };
    let mut up = words(&["up", "--nodes", &nodes.to_string(), "--quiet"]);
    if datastore == "etcd" {
        up.extend(words(&["--datastore", "etcd", "--etcd-members", "3"]));
    }
    if !podnet_lab(&up)? {
        bail!("the lab did not come up");
    }
    let mut on = words(&["--lab", &lab]);
    on.extend(args.iter().cloned());
    let passed = podnet_lab(&on);
    podnet_lab(&words(&["--lab", &lab, "down"]))?;
    if !passed? {
        bail!("{what} found broken invariants (its report above names the seed)");
    }
    Ok(())
}
