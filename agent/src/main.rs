//! `podnet-agent`: the per-node route agent (`run`), and admin commands (`node remove`,
//! `status`, `bgp ...`, `config check`). Settings come from the flags, then the config file
//! (`/etc/podnet/agent.toml`), then the defaults. Logs go to stderr.

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use podnet_agent::config_file::{self, AgentFile};
use podnet_agent::settings::{RunArgs, StoreArgs};
use podnet_ipam::{Datastore, Ipam, PoolSpec};
use std::path::PathBuf;
use std::process::ExitCode;

/// podnet's per-node route agent: registers the node, owns its tunnel device, and keeps the
/// routes to every pod block in the cluster.
#[derive(Parser)]
#[command(name = "podnet-agent", version)]
struct Cli {
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: tracing::Level,
    /// The config file (every `run` flag as a key; flags win) [default:
    /// /etc/podnet/agent.toml, if it exists].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read no config file, not even the default one.
    #[arg(long, global = true, conflicts_with = "config")]
    no_config: bool,
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
    /// Put `podnet` and `podnet-ipam` into the CNI bin dir and write 10-podnet.conflist from
    /// the agent's settings (what a DaemonSet's init container or the package runs).
    InstallCni {
        #[command(flatten)]
        settings: RunArgs,
        #[command(flatten)]
        install: podnet_agent::install_cni::InstallArgs,
    },
    /// The config file.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
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

#[derive(Subcommand)]
enum ConfigCmd {
    /// Checks FILE (unknown keys, types, contradictions) and prints the settings `run` would
    /// use with it and no flags; exits 1 if it is refused.
    Check { file: PathBuf },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let given = given_flags(&matches);
    // `config check FILE` looks at FILE alone.
    let read = if matches!(cli.command, Cmd::Config { .. }) {
        Ok(None)
    } else {
        config(&cli)
    };
    let file = match read {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("podnet-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !given("log_level") {
        if let Some(level) = file.log_level.as_deref().and_then(|l| l.parse().ok()) {
            cli.log_level = level;
        }
    }
    match &mut cli.command {
        Cmd::Run(args) | Cmd::InstallCni { settings: args, .. } => file.apply(args, &given),
        Cmd::Status { store, .. }
        | Cmd::Node {
            command: NodeCmd::Remove { store, .. } | NodeCmd::List { store },
        } => file.apply_store(store, &given),
        Cmd::Bgp { .. } | Cmd::Config { .. } => {}
    }
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

/// The config file `--config` names (it must exist), else the default one if it exists.
fn config(cli: &Cli) -> Result<Option<AgentFile>, config_file::FileError> {
    if cli.no_config {
        return Ok(None);
    }
    match &cli.config {
        Some(path) => AgentFile::read(path).map(Some),
        None => {
            let default = std::path::Path::new(config_file::DEFAULT_PATH);
            if default.exists() {
                AgentFile::read(default).map(Some)
            } else {
                Ok(None)
            }
        }
    }
}

/// Which flags (by clap id) were on the command line, at any level of subcommands.
fn given_flags(matches: &ArgMatches) -> impl Fn(&str) -> bool {
    let mut levels = vec![matches.clone()];
    while let Some((_, sub)) = levels.last().and_then(|m| m.subcommand()) {
        levels.push(sub.clone());
    }
    move |id: &str| {
        levels.iter().any(|m| {
            m.try_get_raw(id).is_ok_and(|v| v.is_some())
                && m.value_source(id) == Some(ValueSource::CommandLine)
        })
    }
}

/// `config check FILE`: the settings `run` would use, as a file.
fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let parsed = AgentFile::read(file)?;
    let mut args = RunArgs::from_flags(&[]).expect("the defaults parse");
    parsed.apply(&mut args, &|_| false);
    let shown = file.display();
    if let Some(name) = &args.node_name {
        if let Err(podnet_ipam::Error::InvalidName { why, .. }) =
            podnet_ipam::validate_node_name(name)
        {
            anyhow::bail!("config file {shown}: node-name: {name:?}: {why}");
        }
    }
    match args.pool {
        Some(cidr) => {
            let pins = [(String::from("this-node"), args.node_blocks.clone())].into();
            match PoolSpec::new(cidr, args.block_size, args.strict_affinity, pins) {
                Err(podnet_ipam::Error::BadSetting {
                    setting,
                    value,
                    why,
                }) => anyhow::bail!(
                    "config file {shown}: {}: {value}: {why}",
                    podnet_agent::config_errors::setting_key(&setting)
                ),
                other => {
                    other.with_context(|| format!("config file {shown}: pool"))?;
                }
            }
        }
        None if !args.node_blocks.is_empty() => anyhow::bail!(
            "config file {}: node-block needs pool (the pool the blocks are cut from)",
            file.display()
        ),
        None => {}
    }
    let level = parsed
        .log_level
        .as_deref()
        .and_then(|l| l.parse().ok())
        .unwrap_or(tracing::Level::INFO);
    eprintln!(
        "{}: ok; the settings `podnet-agent run` would use:",
        file.display()
    );
    print!("{}", AgentFile::effective(&args, level).render());
    Ok(())
}

fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Config {
            command: ConfigCmd::Check { file },
        } => check_config(&file),
        Cmd::Run(args) => {
            podnet_agent::stop::exit_on_signals()
                .context("install the SIGTERM and SIGINT handler")?;
            podnet_agent::run::run(args).context("run the agent")
        }
        Cmd::InstallCni { settings, install } => {
            for done in podnet_agent::install_cni::install(&settings, &install)? {
                println!("{done}");
            }
            Ok(())
        }
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
