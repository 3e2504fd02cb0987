//! `cargo xtask bench <what>`: measurements against a reference run in the same process, so
//! the figures are ratios on the same machine at the same moment.

mod agent;
mod bgp;
mod call;
mod cni;
mod datapath;
mod egress;
mod etcd;
mod ipam;
mod lab;
mod seeded;
mod services;
mod stats;

use anyhow::Result;

/// Builds the lab and its binaries (release) for a bench that brings labs up; returns
/// `podnet-lab`'s path, every lab of an earlier run taken down.
fn release_lab() -> Result<std::path::PathBuf> {
    crate::sh::execute(crate::sh::cargo().args([
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
    let lab = crate::sh::root().join("target/release/podnet-lab");
    let _ = std::process::Command::new(&lab)
        .args(["down", "--all"])
        .output();
    Ok(lab)
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// podnet-ipam vs host-local: exec ADD+DEL, and in-process allocate+release pairs/s.
    Ipam(ipam::Args),
    /// Agent convergence and memory with 10, 50, 100 nodes (needs root).
    Agent(agent::Args),
    /// The routing plane by BGP (mesh, two reflectors) beside datastore routing, at 10 and
    /// 100 nodes (needs root).
    Bgp(bgp::Args),
    /// What a pod gets from the network (`podnet-lab perf`): pod -> pod beside node -> node and
    /// beside a bare veth pair, for each encapsulation, and the tunnel's offloads (needs root).
    Datapath(datapath::Args),
    /// The lab's speed (seed; 100 nodes x 10 pods) beside Mininet's 100 hosts (needs root).
    Lab(lab::Args),
    /// natOutgoing: the agent's apply time (1, 100 pools) and TCP connections/s through the
    /// masquerade beside no NAT, from a pod of the seed lab (needs root).
    Egress(egress::Args),
    /// ClusterIPs: conn/s to a Service beside its pods directly, and the proxy's update time
    /// with 1,000 Services (needs root).
    Services(services::Args),
    /// podnet vs ptp+host-local: per-pod ADD and DEL, sequential and 8-way (needs root).
    Cni(cni::Args),
}

pub fn run(args: Args) -> Result<()> {
    match args.what {
        What::Ipam(a) => ipam::run(a),
        What::Cni(a) => cni::run(a),
        What::Agent(a) => agent::run(a),
        What::Bgp(a) => bgp::run(a),
        What::Lab(a) => lab::run(a),
        What::Datapath(a) => datapath::run(a),
        What::Egress(a) => egress::run(a),
        What::Services(a) => services::run(a),
    }
}

/// Creates the SQLite store at `path`, as the agent does on a node: the plugins a benchmark
/// runs never create one (without it they answer code 11).
fn create_store(path: &std::path::Path) -> Result<()> {
    podnet_ipam::DatastoreConfig::sqlite(path).open_or_create()?;
    Ok(())
}
