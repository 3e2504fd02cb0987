//! `podnet-agent`: the per-node route agent (`run`), and admin commands (`node remove`,
//! `status`, `bgp ...`). Logs go to stderr.

use anyhow::Context;
use clap::{Parser, Subcommand};
use podnet_agent::settings::{RunArgs, StoreArgs};
use podnet_ipam::{Datastore, Ipam, PoolSpec};
use std::process::ExitCode;

/// podnet's per-node route agent: registers the node, owns its tunnel device, and keeps the
/// routes to every pod block in the cluster.
#[derive(Parser)]
#[command(name = "podnet-agent", version)]
struct Cli {
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: tracing::Level,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (until killed; routes stay when it stops).
    Run(RunArgs),
    /// Nodes in the datastore.
    Node {
        #[command(subcommand)]
        command: NodeCmd,
    },
    /// BGP: the node's sessions, explicit peers, cluster and node settings.
    Bgp {
        #[command(subcommand)]
        command: podnet_agent::bgp::admin::BgpCmd,
    },
    /// This node's blocks, tunnel device and owned routes (run it in the node's namespace).
    Status {
        #[arg(long)]
        node_name: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        cross_subnet: bool,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Remove a node: its record, tunnel address and block affinities. Every other agent drops
    /// its routes.
    Remove {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List registered nodes.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(cli.log_level)
        .with_target(false)
        .with_ansi(false)
        .init();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podnet-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Run(args) => podnet_agent::run::run(args).context("run the agent"),
        Cmd::Bgp { command } => Ok(podnet_agent::bgp::admin::run(command)?),
        Cmd::Node {
            command: NodeCmd::Remove { name, store },
        } => {
            let store = store.config().open()?;
            remove_node(&*store, &name)
        }
        Cmd::Node {
            command: NodeCmd::List { store },
        } => {
            let store = store.config().open()?;
            let (nodes, _) = podnet_ipam::nodes::list(&*store)?;
            for n in nodes {
                println!("{}\t{}/{}\t{}", n.name, n.ip, n.prefix_len, n.encapsulation);
            }
            Ok(())
        }
        Cmd::Status {
            node_name,
            store,
            cross_subnet,
            output,
        } => {
            let store = store.config().open()?;
            let name = node_name
                .or_else(podnet_agent::settings::hostname)
                .context("no node name: pass --node-name")?;
            let s = podnet_agent::status::status(&*store, &name, cross_subnet)?;
            match output {
                Output::Table => print!("{}", s.render()),
                Output::Json => println!("{}", serde_json::to_string_pretty(&s)?),
            }
            Ok(())
        }
    }
}

/// Deletes the node record, then releases its tunnel address and blocks in every pool.
fn remove_node(store: &dyn Datastore, name: &str) -> anyhow::Result<()> {
    let existed = podnet_ipam::nodes::delete(store, name)?;
    let mut released = Vec::new();
    for kv in store.list(podnet_ipam::keys::POOLS)?.kvs {
        let record: podnet_ipam::model::PoolRecord =
            serde_json::from_str(&kv.value).with_context(|| format!("read {}", kv.key))?;
        let ipam = Ipam::new(store, PoolSpec::from_record(record)?);
        released.extend(ipam.release_node(name)?);
    }
    if !existed && released.is_empty() {
        anyhow::bail!("node {name} is not in the datastore");
    }
    let blocks: Vec<String> = released.iter().map(|b| b.to_string()).collect();
    println!(
        "removed node {name}; released blocks [{}]",
        blocks.join(", ")
    );
    Ok(())
}
