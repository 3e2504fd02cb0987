//! What the benchmarks on the seed lab share: the release build (the lab's binaries and one
//! measuring example) and an example run in a namespace of its own, its JSON line read back.

use crate::sh::{self, cargo, execute};
use anyhow::{bail, Context, Result};
use podnet_netlink::netns::OwnedNetns;
use std::process::Command;

/// The connection rounds of a benchmark: two kinds of round, alternating.
#[derive(clap::Args)]
pub struct Load {
    /// Connections per round (each a connect, an HTTP GET and its answer).
    #[arg(long, default_value_t = 2000)]
    pub connections: usize,
    /// Rounds of each kind, alternating.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Connections open at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
}

/// Root, build tools and BIRD checked; every binary and `example` of `package` built in release.
pub fn prepare(what: &str, package: &str, example: &str) -> Result<()> {
    if !sh::is_root() {
        bail!("bench {what} makes namespaces and nftables tables in them: run it as root");
    }
    crate::deps::ensure_build()?;
    crate::deps::ensure(&[&crate::deps::BIRD])?;
    execute(cargo().args(["build", "--release", "-q", "--bins"]))?;
    execute(cargo().args([
        "build",
        "--release",
        "-q",
        "-p",
        package,
        "--example",
        example,
    ]))
}

/// Runs release example `example` with `args` in a new namespace; its one JSON line.
pub fn run_example(example: &str, args: &[String]) -> Result<serde_json::Value> {
    let ns = OwnedNetns::named(&format!("pnb{}-{example}", std::process::id()))?;
    let mut cmd = Command::new(sh::root().join("target/release/examples").join(example));
    cmd.args(args);
    ns.enter_on_exec(&mut cmd)?;
    let out = sh::output(&mut cmd)?;
    serde_json::from_str(out.trim()).with_context(|| format!("{example}'s JSON"))
}

/// The middle value (the upper one of an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
