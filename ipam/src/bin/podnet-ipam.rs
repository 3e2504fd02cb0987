//! `podnet-ipam`: a CNI IPAM plugin when run by a container runtime (no arguments, `CNI_*`
//! environment, config on stdin), and a small admin tool when given a subcommand.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use podnet_cni_types::{reply::reply, CniEnv, CniVersion};
use podnet_ipam::{inspect, DatastoreConfig};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

/// podnet's block IPAM. Run with no arguments it is a CNI IPAM plugin (see the README for the
/// network config); the subcommands look at the datastore.
#[derive(Parser)]
#[command(name = "podnet-ipam")]
struct Cli {
    /// The SQLite datastore file.
    #[arg(long, global = true, default_value = podnet_ipam::store::config::DEFAULT_SQLITE_PATH)]
    datastore: PathBuf,
    /// Use etcd v3 at these endpoints (comma separated, plain http) instead of the SQLite file.
    #[arg(long, global = true, value_delimiter = ',', value_name = "URLS")]
    etcd_endpoints: Vec<String>,
    /// The etcd key prefix [default: /podnet].
    #[arg(long, global = true)]
    etcd_prefix: Option<String>,
    #[command(subcommand)]
    command: Admin,
}

#[derive(Subcommand)]
enum Admin {
    /// Pools (with their capacity in blocks) and blocks (with their node and use).
    Show {
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Checks that every allocation and handle agree; exits 1 if not.
    Check,
    /// Pools: list them, create one, turn natOutgoing on or off.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Cluster-wide egress settings (which destinations are never masqueraded to).
    Egress {
        /// IPPoolsOnly (Calico's default) or IPPoolsAndHostIPs (node addresses too).
        #[arg(long)]
        nat_outgoing_exclusions: Option<podnet_ipam::pools::NatExclusions>,
    },
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Every pool with its block size, affinity mode and natOutgoing.
    List,
    /// Stores a new pool (nodes and the CNI plugin use pools they find; see the README).
    Create {
        cidr: ipnet::Ipv4Net,
        #[arg(long, default_value_t = podnet_ipam::pool::DEFAULT_BLOCK_SIZE)]
        block_size: u8,
        #[arg(long)]
        strict_affinity: bool,
        /// Masquerade traffic from the pool to outside every pool (on by default, as Calico).
        #[arg(long, value_enum, default_value_t = OnOff::On)]
        nat_outgoing: OnOff,
    },
    /// Changes a pool's settings; agents follow within a second.
    Set {
        cidr: ipnet::Ipv4Net,
        #[arg(long, value_enum)]
        nat_outgoing: OnOff,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    init_logging();
    if std::env::args_os().len() > 1 {
        return admin(parse_admin());
    }
    let env = match CniEnv::from_process() {
        Ok(env) => env,
        Err(e) => {
            if std::env::var_os("CNI_COMMAND").is_none() {
                eprintln!("podnet-ipam is a CNI plugin run by a container runtime; see `podnet-ipam --help`");
            }
            return reply(CniVersion::LATEST, Err(e));
        }
    };
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        let err = podnet_cni_types::CniError::new(
            podnet_cni_types::code::IO_FAILURE,
            "read the network config from stdin",
        )
        .with_details(e.to_string());
        return reply(CniVersion::LATEST, Err(err));
    }
    let (version, outcome) = podnet_ipam::plugin::run(&env, &stdin);
    if let Err(e) = &outcome {
        tracing::warn!(command = ?env.command, container = %env.container_id, "{e}");
    }
    reply(version, outcome)
}

/// The subcommand line; `--version` and `--help` name the CNI versions the plugin speaks, as
/// the reference plugins do.
fn parse_admin() -> Cli {
    let version = format!(
        "{}\n{}",
        env!("CARGO_PKG_VERSION"),
        CniVersion::supported_line()
    );
    let matches = Cli::command()
        .version(version)
        .help_template(
            "{name} {version}\n\n{about-with-newline}\n{usage-heading} {usage}\n\n{all-args}{after-help}",
        )
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn admin(cli: Cli) -> ExitCode {
    let conf = if cli.etcd_endpoints.is_empty() {
        DatastoreConfig::sqlite(&cli.datastore)
    } else {
        DatastoreConfig::Etcd {
            endpoints: cli.etcd_endpoints.clone(),
            prefix: cli.etcd_prefix.clone(),
            tls: None,
            timeout_ms: None,
        }
    };
    let store = match conf.open() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match cli.command {
        Admin::Show { output } => match inspect::summary(&*store) {
            Ok(s) => {
                match output {
                    Output::Table => print!("{}", s.render()),
                    Output::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(&s).expect("summary serializes")
                    ),
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Admin::Check => match inspect::verify(&*store) {
            Ok(problems) if problems.is_empty() => {
                println!("{}: consistent", store.describe());
                ExitCode::SUCCESS
            }
            Ok(problems) => {
                for p in problems {
                    println!("{p}");
                }
                ExitCode::FAILURE
            }
            Err(e) => fail(&e),
        },
        Admin::Pool(cmd) => match pool(&*store, cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Admin::Egress {
            nat_outgoing_exclusions,
        } => match egress(&*store, nat_outgoing_exclusions) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
    }
}

fn pool(store: &dyn podnet_ipam::Datastore, cmd: PoolCmd) -> Result<(), podnet_ipam::Error> {
    use podnet_ipam::{pools, PoolSpec};
    match cmd {
        PoolCmd::List => {
            println!(
                "{:<20} {:>6} {:>15} {:>12}",
                "CIDR", "BLOCK", "STRICTAFFINITY", "NATOUTGOING"
            );
            for p in pools::list(store)? {
                println!(
                    "{:<20} {:>6} {:>15} {:>12}",
                    p.cidr().to_string(),
                    format!("/{}", p.block_size()),
                    p.strict_affinity(),
                    p.nat_outgoing()
                );
            }
        }
        PoolCmd::Create {
            cidr,
            block_size,
            strict_affinity,
            nat_outgoing,
        } => {
            let p = PoolSpec::new(cidr, block_size, strict_affinity, Default::default())?
                .with_nat_outgoing(nat_outgoing == OnOff::On);
            pools::create(store, &p)?;
            println!("pool {cidr} created (natOutgoing {})", p.nat_outgoing());
        }
        PoolCmd::Set { cidr, nat_outgoing } => {
            let p = pools::set_nat_outgoing(store, cidr, nat_outgoing == OnOff::On)?;
            println!("pool {cidr}: natOutgoing {}", p.nat_outgoing());
        }
    }
    Ok(())
}

fn egress(
    store: &dyn podnet_ipam::Datastore,
    exclusions: Option<podnet_ipam::pools::NatExclusions>,
) -> Result<(), podnet_ipam::Error> {
    use podnet_ipam::pools;
    let mut conf = pools::egress(store)?;
    if let Some(x) = exclusions {
        conf.nat_outgoing_exclusions = x;
        pools::set_egress(store, conf)?;
    }
    println!(
        "natOutgoingExclusions: {}",
        conf.nat_outgoing_exclusions.as_str()
    );
    Ok(())
}

fn fail(e: &dyn std::error::Error) -> ExitCode {
    let mut msg = format!("podnet-ipam: {e}");
    let mut cur = e.source();
    while let Some(s) = cur {
        msg.push_str(&format!(": {s}"));
        cur = s.source();
    }
    eprintln!("{msg}");
    ExitCode::FAILURE
}

/// Logs go to stderr (never stdout, which belongs to the CNI reply), at `PODNET_LOG` level
/// (error, warn, info, debug, trace; default warn).
fn init_logging() {
    let level = std::env::var("PODNET_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(tracing::Level::WARN);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
