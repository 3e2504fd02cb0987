//! The agent's settings: flags, then the facts resolved from the host (node address and
//! uplink, pool), all checked before anything is changed.

use crate::desired::Mode;
use crate::Error;
use ipnet::Ipv4Net;
use podnet_ipam::model::PoolRecord;
use podnet_ipam::{keys, Datastore, PoolSpec};
use podnet_netlink::{Link, Netlink};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// `--encapsulation`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Encapsulation {
    Ipip,
    Vxlan,
    None,
    /// IPIP where the kernel has it, else VXLAN.
    Auto,
}

/// `--routing`: who makes the routes to other nodes' blocks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// The agent writes them from a datastore watch (proto 119).
    Datastore,
    /// BIRD learns them by BGP from its peers and installs them (proto bird).
    Bgp,
}

/// `podnet-agent run` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// This node's name [default: the hostname].
    #[arg(long)]
    pub node_name: Option<String>,
    /// This node's address; must be on one of its interfaces.
    #[arg(long, group = "ip")]
    pub node_ip: Option<Ipv4Addr>,
    /// Take the node address from the first interface whose name matches (`*` wildcards).
    #[arg(long, group = "ip", value_name = "PATTERN")]
    pub node_ip_interface: Option<String>,
    /// Take the node address the kernel would use to reach this peer.
    #[arg(long, group = "ip", value_name = "PEER")]
    pub node_ip_reaches: Option<Ipv4Addr>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long, value_enum, default_value_t = Encapsulation::Auto)]
    pub encapsulation: Encapsulation,
    /// No encapsulation to peers in this node's own subnet.
    #[arg(long)]
    pub cross_subnet: bool,
    /// Where the pod MTU is published for the CNI plugin.
    #[arg(long, default_value = "/var/lib/podnet")]
    pub state_dir: PathBuf,
    /// Health and metrics endpoint.
    #[arg(long, default_value = "127.0.0.1:9099")]
    pub metrics_addr: SocketAddr,
    /// The pod pool [default: the one pool in the datastore].
    #[arg(long)]
    pub pool: Option<Ipv4Net>,
    #[arg(long, default_value_t = podnet_ipam::pool::DEFAULT_BLOCK_SIZE)]
    pub block_size: u8,
    #[arg(long)]
    pub strict_affinity: bool,
    /// A block pinned to this node (repeatable), like a Kubernetes node's podCIDR.
    #[arg(long = "node-block", value_name = "CIDR")]
    pub node_blocks: Vec<Ipv4Net>,
    /// Full resync period, on top of reacting to changes.
    #[arg(long, default_value_t = 10)]
    pub resync_seconds: u64,
    /// How routes to other nodes' blocks are made.
    #[arg(long, value_enum, default_value_t = Routing::Datastore)]
    pub routing: Routing,
    /// The BIRD 2 binary (BGP mode; Debian package bird2, 2.0.12 or newer).
    #[arg(long, default_value = "bird")]
    pub bird: String,
}

/// Where the datastore is: the embedded SQLite file, or etcd when `--etcd-endpoints` is given.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The SQLite datastore file.
    #[arg(long, default_value = podnet_ipam::store::config::DEFAULT_SQLITE_PATH)]
    pub datastore: PathBuf,
    /// Use etcd v3 at these endpoints (comma separated) instead of the SQLite file.
    #[arg(long, value_delimiter = ',', value_name = "URLS")]
    pub etcd_endpoints: Vec<String>,
    /// The etcd key prefix [default: /podnet].
    #[arg(long, requires = "etcd_endpoints")]
    pub etcd_prefix: Option<String>,
    /// PEM files for etcd over TLS.
    #[arg(long, requires = "etcd_endpoints")]
    pub etcd_ca: Option<PathBuf>,
    #[arg(long, requires = "etcd_endpoints")]
    pub etcd_cert: Option<PathBuf>,
    #[arg(long, requires = "etcd_endpoints")]
    pub etcd_key: Option<PathBuf>,
    /// Deadline of each etcd call, in milliseconds [default: 10000].
    #[arg(long, requires = "etcd_endpoints")]
    pub etcd_timeout_ms: Option<u64>,
}

impl RunArgs {
    /// `run`'s settings from these flags alone (no config file), with what clap says about
    /// which were given: what `config check` and the tests start from.
    pub fn from_flags(flags: &[&str]) -> Result<RunArgs, clap::Error> {
        use clap::{Args, FromArgMatches};
        let cmd = RunArgs::augment_args(clap::Command::new("run"));
        let argv = std::iter::once("run").chain(flags.iter().copied());
        RunArgs::from_arg_matches(&cmd.try_get_matches_from(argv)?)
    }
}

impl StoreArgs {
    pub fn config(&self) -> podnet_ipam::DatastoreConfig {
        if self.etcd_endpoints.is_empty() {
            return podnet_ipam::DatastoreConfig::sqlite(&self.datastore);
        }
        let tls = (self.etcd_ca.is_some() || self.etcd_cert.is_some()).then(|| {
            podnet_ipam::store::config::TlsConfig {
                ca: self.etcd_ca.clone(),
                cert: self.etcd_cert.clone(),
                key: self.etcd_key.clone(),
            }
        });
        podnet_ipam::DatastoreConfig::Etcd {
            endpoints: self.etcd_endpoints.clone(),
            prefix: self.etcd_prefix.clone(),
            tls,
            timeout_ms: self.etcd_timeout_ms,
        }
    }
}

/// The node's identity on the network, as found on the host.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// The node address with its subnet's prefix length.
    pub ip: Ipv4Net,
    pub uplink: Link,
}

/// The mode asked for; `Auto` is settled when the tunnel is set up.
pub fn requested_mode(e: Encapsulation) -> Option<Mode> {
    match e {
        Encapsulation::Ipip => Some(Mode::Ipip),
        Encapsulation::Vxlan => Some(Mode::Vxlan),
        Encapsulation::None => Some(Mode::None),
        Encapsulation::Auto => None,
    }
}

pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Finds the node's address and uplink as the flags say; the address must be on this host.
pub fn resolve_host(args: &RunArgs, nl: &mut Netlink) -> Result<Host, Error> {
    let name = args
        .node_name
        .clone()
        .or_else(hostname)
        .ok_or_else(|| Error::Settings("no node name: pass --node-name".into()))?;
    podnet_ipam::validate_node_name(&name)?;
    let addresses = nl.addresses().map_err(Error::netlink("list addresses"))?;
    let links = nl.links().map_err(Error::netlink("list links"))?;
    let ip: Ipv4Addr = if let Some(ip) = args.node_ip {
        ip
    } else if let Some(pattern) = &args.node_ip_interface {
        let link = links
            .iter()
            .filter(|l| glob(pattern, &l.name))
            .find(|l| addresses.iter().any(|a| a.index == l.index))
            .ok_or_else(|| {
                Error::Settings(format!(
                    "no interface matching {pattern:?} has an IPv4 address"
                ))
            })?;
        addresses
            .iter()
            .find(|a| a.index == link.index)
            .expect("checked above")
            .net
            .addr()
    } else {
        let peer = args.node_ip_reaches.unwrap_or(Ipv4Addr::new(8, 8, 8, 8));
        nl.route_to(peer)
            .map_err(Error::netlink(format!("look up the route to {peer}")))?
            .and_then(|r| r.pref_source)
            .ok_or_else(|| {
                Error::Settings(format!("no source address reaches {peer}: pass --node-ip"))
            })?
    };
    let addr = addresses
        .iter()
        .find(|a| a.net.addr() == ip)
        .ok_or_else(|| {
            Error::Settings(format!("node IP {ip} is not on any interface of this host"))
        })?;
    let uplink = links
        .into_iter()
        .find(|l| l.index == addr.index)
        .ok_or_else(|| Error::Settings(format!("the interface holding {ip} vanished")))?;
    Ok(Host {
        name,
        ip: addr.net,
        uplink,
    })
}

/// `*` matches any run of characters.
pub fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

/// The pool from the flags, or the single pool already in the datastore.
pub fn resolve_pool(args: &RunArgs, node: &str, store: &dyn Datastore) -> Result<PoolSpec, Error> {
    match args.pool {
        Some(cidr) => {
            let pins: BTreeMap<String, Vec<Ipv4Net>> = if args.node_blocks.is_empty() {
                BTreeMap::new()
            } else {
                [(node.to_string(), args.node_blocks.clone())].into()
            };
            Ok(PoolSpec::new(
                cidr,
                args.block_size,
                args.strict_affinity,
                pins,
            )?)
        }
        None => {
            let pools: Vec<PoolRecord> = store
                .list(keys::POOLS)?
                .kvs
                .iter()
                .filter_map(|kv| serde_json::from_str(&kv.value).ok())
                .collect();
            match pools.as_slice() {
                [one] => Ok(PoolSpec::from_record(one.clone())?),
                [] => Err(Error::Settings(
                    "no pool in the datastore: pass --pool".into(),
                )),
                _ => Err(Error::Settings(
                    "several pools in the datastore: pass --pool".into(),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("ens*", "ens3"));
        assert!(glob("*", "anything"));
        assert!(glob("e*3", "ens3"));
        assert!(glob("eth0", "eth0"));
        assert!(!glob("ens*", "eth0"));
        assert!(!glob("e*4", "ens3"));
    }
}
