//! `cargo xtask`: the project's own machinery. `test` installs what the suite needs and runs
//! every test (root tests as root); `bench` measures podnet against the reference plugins;
//! `dist` makes the Debian package and the container image.
//!
//! Plain `std::process::Command` and `anyhow`: this is glue, run by developers and CI.

mod bench;
mod chaos;
mod deps;
mod dist;
mod fuzz;
mod sh;
mod test;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "podnet's build, test and benchmark tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the tests need (apt-get, PyPI) and run the whole suite: unit tests as
    /// you, root tests as root (through sudo when you are not root).
    Test(test::Args),
    /// Measure podnet against the reference implementations, in one run.
    Bench(bench::Args),
    /// A long chaos run on a generated lab (`--minutes`, `--seed` to replay, `--datastore
    /// etcd`): pod churn with kills, agents, BIRD and etcd members killed, invariants checked.
    Chaos(chaos::Args),
    /// A long soak on a generated lab (`--minutes`): steady pod and node churn, invariants
    /// checked, agents' memory and descriptors, latency and datastore size reported.
    Soak(chaos::SoakArgs),
    /// Coverage-guided fuzzing of a parser (`fuzz cni_config --seconds 300`, or `fuzz all`).
    Fuzz(fuzz::Args),
    /// Build what an operator installs: `dist deb` (the Debian package), `dist image` (the
    /// container image).
    Dist(dist::Args),
    /// Run a command under a Debian kernel with IPIP, in qemu (`vm -- CMD`, `vm --shell`).
    Vm(vm::Args),
    /// Build the binaries and run `podnet-lab` with these arguments (`lab up`, `lab test`,
    /// `lab down`...), as root (through sudo when you are not root).
    Lab {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Builds every binary, then runs the lab with `args` as root; its exit status is ours. BIRD
/// is installed too (the lab routes by BGP by default), and iperf3 for `perf`.
fn lab(args: Vec<String>) -> Result<()> {
    deps::ensure_build()?;
    deps::ensure(&[&deps::BIRD, &deps::IPERF3])?;
    sh::execute(sh::cargo().args(["build", "-q", "--workspace", "--bins"]))?;
    let bin = sh::root().join("target/debug/podnet-lab");
    let mut cmd = sh::as_root(bin.to_str().expect("UTF-8 path"))?;
    let status = cmd.args(&args).status()?;
    std::process::exit(status.code().unwrap_or(1));
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Test(args) => test::run(args),
        Task::Bench(args) => bench::run(args),
        Task::Lab { args } => lab(args),
        Task::Vm(args) => vm::run(args),
        Task::Dist(args) => dist::run(args),
        Task::Chaos(args) => chaos::run(args),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Soak(args) => chaos::soak(args),
    }
}
