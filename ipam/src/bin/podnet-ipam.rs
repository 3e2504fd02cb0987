//! `podnet-ipam`: a CNI IPAM plugin when run by a container runtime (no arguments, `CNI_*`
//! environment, config on stdin), and a small admin tool when given a subcommand.

use clap::{Parser, Subcommand, ValueEnum};
use podnet_cni_types::{reply::reply, CniEnv, CniVersion};
use podnet_ipam::{inspect, DatastoreConfig};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

/// podnet's block IPAM. Run with no arguments it is a CNI IPAM plugin (see the README for the
/// network config); the subcommands look at the datastore.
#[derive(Parser)]
#[command(name = "podnet-ipam", version)]
struct Cli {
    /// The SQLite datastore file.
    #[arg(long, global = true, default_value = podnet_ipam::store::config::DEFAULT_SQLITE_PATH)]
    datastore: PathBuf,
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    init_logging();
    if std::env::args_os().len() > 1 {
        return admin(Cli::parse());
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

fn admin(cli: Cli) -> ExitCode {
    let store = match DatastoreConfig::sqlite(&cli.datastore).open() {
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
    }
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
