//! `podnet-agent bgp ...`: BGP settings in the datastore (`peer add/remove/list`, `config`)
//! and the node's BGP status. Every change is validated before anything is written: a bad
//! address, an AS outside 1..4294967295 or a node peering with itself changes nothing.
//! Settings may be written before any agent has run (as with calicoctl), so these commands
//! create a missing SQLite store, as the agent does.

use super::{daemon::Paths, status};
use crate::settings::StoreArgs;
use crate::Error;
use podnet_ipam::bgp::{self, Peer};
use std::net::Ipv4Addr;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum BgpCmd {
    /// The node's BGP sessions, as `calicoctl node status` shows them (read from its BIRD).
    Status {
        /// The agent's state folder (BIRD's socket is in `bird/` there).
        #[arg(long, default_value = "/var/lib/podnet")]
        state_dir: PathBuf,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// The route BIRD has for an address, and where it learned it (JSON).
    Route {
        addr: Ipv4Addr,
        /// The agent's state folder (BIRD's socket is in `bird/` there).
        #[arg(long, default_value = "/var/lib/podnet")]
        state_dir: PathBuf,
    },
    /// Explicit BGP peers (a rack's router): for every node, or one.
    Peer {
        #[command(subcommand)]
        command: PeerCmd,
    },
    /// Show or change the cluster's BGP settings (with --node, one node's).
    Config(ConfigArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum PeerCmd {
    Add {
        name: String,
        #[arg(long)]
        peer_ip: Ipv4Addr,
        #[arg(long = "as", value_parser = parse_as)]
        as_number: u32,
        /// Only this node peers with it [default: every node].
        #[arg(long)]
        node: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    Remove {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Change this node's settings instead of the cluster's.
    #[arg(long)]
    node: Option<String>,
    /// The AS number (cluster default, or the node's own with --node).
    #[arg(long = "as", value_parser = parse_as)]
    as_number: Option<u32>,
    /// With --node: back to the cluster's AS.
    #[arg(long, requires = "node", conflicts_with = "as_number")]
    cluster_as: bool,
    /// The node-to-node mesh.
    #[arg(long, value_enum)]
    mesh: Option<OnOff>,
    /// With --node: make the node a route reflector of this cluster id.
    #[arg(long, requires = "node")]
    rr_cluster_id: Option<Ipv4Addr>,
    /// With --node: no longer a route reflector.
    #[arg(long, requires = "node", conflicts_with = "rr_cluster_id")]
    no_rr: bool,
    /// How long peers keep a restarting node's routes.
    #[arg(long)]
    graceful_restart_seconds: Option<u32>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// An AS number, 1..=4294967295.
fn parse_as(s: &str) -> Result<u32, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=u32::MAX as u64).contains(&n) => Ok(n as u32),
        _ => Err(format!("{s:?} is not an AS number (1..4294967295)")),
    }
}

pub fn run(cmd: BgpCmd) -> Result<(), Error> {
    match cmd {
        BgpCmd::Status { state_dir, output } => {
            let s = status::read(&Paths::new(&state_dir));
            match output {
                Output::Table => print!("{}", s.render()),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&s).expect("status serializes")
                ),
            }
            Ok(())
        }
        BgpCmd::Route { addr, state_dir } => {
            let route = Paths::new(&state_dir)
                .control()
                .and_then(|mut c| c.route_for(addr))
                .map_err(|e| Error::Settings(format!("ask BIRD for the route to {addr}: {e}")))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&route).expect("a route serializes")
            );
            Ok(())
        }
        BgpCmd::Peer { command } => peer(command),
        BgpCmd::Config(args) => config(args),
    }
}

fn peer(cmd: PeerCmd) -> Result<(), Error> {
    match cmd {
        PeerCmd::Add {
            name,
            peer_ip,
            as_number,
            node,
            store,
        } => {
            let store = store.config().open_or_create()?;
            let p = Peer {
                name: name.clone(),
                peer_ip,
                as_number,
                node,
            };
            bgp::change(&*store, |s| {
                s.peers.retain(|q| q.name != p.name);
                s.peers.push(p.clone());
                Ok(())
            })?;
            println!("BGP peer {name} ({peer_ip}, AS {as_number}) saved");
            Ok(())
        }
        PeerCmd::Remove { name, store } => {
            let store = store.config().open_or_create()?;
            bgp::remove_peer(&*store, &name)?;
            println!("BGP peer {name} removed");
            Ok(())
        }
        PeerCmd::List { store } => {
            let store = store.config().open_or_create()?;
            let s = bgp::read(&*store)?;
            let mut rows = vec![[
                "NAME".to_string(),
                "PEER IP".into(),
                "AS".into(),
                "NODE".into(),
            ]];
            rows.extend(s.peers.iter().map(|p| {
                [
                    p.name.clone(),
                    p.peer_ip.to_string(),
                    p.as_number.to_string(),
                    p.node.clone().unwrap_or_else(|| "(all)".into()),
                ]
            }));
            let mut out = String::new();
            podnet_ipam::inspect::table(&mut out, &rows);
            print!("{out}");
            Ok(())
        }
    }
}

fn config(a: ConfigArgs) -> Result<(), Error> {
    let store = a.store.config().open_or_create()?;
    let changes = a.as_number.is_some()
        || a.cluster_as
        || a.mesh.is_some()
        || a.rr_cluster_id.is_some()
        || a.no_rr
        || a.graceful_restart_seconds.is_some();
    if (a.mesh.is_some() || a.graceful_restart_seconds.is_some()) && a.node.is_some() {
        return Err(Error::Settings(
            "--mesh and --graceful-restart-seconds are cluster settings: leave out --node".into(),
        ));
    }
    let s = if changes {
        bgp::change(&*store, |s| {
            match &a.node {
                Some(node) => {
                    let n = s.nodes.entry(node.clone()).or_default();
                    if a.as_number.is_some() || a.cluster_as {
                        n.as_number = a.as_number;
                    }
                    if a.rr_cluster_id.is_some() || a.no_rr {
                        n.route_reflector_cluster_id = a.rr_cluster_id;
                    }
                }
                None => {
                    if let Some(asn) = a.as_number {
                        s.cluster.as_number = asn;
                    }
                    if let Some(m) = a.mesh {
                        s.cluster.node_to_node_mesh = matches!(m, OnOff::On);
                    }
                    if let Some(g) = a.graceful_restart_seconds {
                        s.cluster.graceful_restart_seconds = g;
                    }
                }
            }
            Ok(())
        })?
    } else {
        bgp::read(&*store)?
    };
    println!("AS:                 {}", s.cluster.as_number);
    println!(
        "node-to-node mesh:  {}",
        if s.cluster.node_to_node_mesh {
            "on"
        } else {
            "off"
        }
    );
    println!(
        "graceful restart:   {} s",
        s.cluster.graceful_restart_seconds
    );
    for (node, n) in &s.nodes {
        let asn = n
            .as_number
            .map_or("cluster AS".to_string(), |a| format!("AS {a}"));
        let rr = n.route_reflector_cluster_id.map_or(String::new(), |id| {
            format!(", route reflector (cluster id {id})")
        });
        println!("node {node}:  {asn}{rr}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_as;

    #[test]
    fn as_numbers_are_1_to_2_pow_32_minus_1() {
        assert_eq!(parse_as("64512"), Ok(64512));
        assert_eq!(parse_as("4294967295"), Ok(u32::MAX));
        for bad in ["0", "4294967296", "-1", "AS1", ""] {
            assert!(
                parse_as(bad).unwrap_err().contains("1..4294967295"),
                "{bad}"
            );
        }
    }
}
