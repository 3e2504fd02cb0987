//! BGP settings in the datastore (`/podnet/v1/bgp/...`), Calico's BGPConfiguration, BGPPeer
//! and the BGP part of its Node resource: datastore schema, read by every agent in BGP mode
//! (which renders BIRD's config from them) and written by `podnet-agent bgp ...`.
//!
//! ```text
//! /podnet/v1/bgp/config           cluster AS, node-to-node mesh on/off, graceful restart time
//! /podnet/v1/bgp/nodes/<node>     one node's AS and route-reflector cluster id
//! /podnet/v1/bgp/peers/<name>     an explicit peer (a rack's router): for all nodes or one
//! ```
//!
//! Values are checked when written ([`validate`]) and again when read back: a record written
//! by hand that does not hold up makes [`read`] fail, so a bad value is refused, never half
//! applied.

use crate::store::{update, Datastore, KeyValue, StoreError, Txn};
use crate::validate_node_name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use thiserror::Error;

pub const ROOT: &str = "/podnet/v1/bgp/";
pub const CONFIG: &str = "/podnet/v1/bgp/config";
pub const NODES: &str = "/podnet/v1/bgp/nodes/";
pub const PEERS: &str = "/podnet/v1/bgp/peers/";

/// Calico's default AS for a cluster.
pub const DEFAULT_AS: u32 = 64512;
/// BIRD's (and Calico's) graceful-restart time.
pub const DEFAULT_RESTART_SECONDS: u32 = 120;

/// The cluster's BGP settings (Calico's default BGPConfiguration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterBgp {
    #[serde(default = "default_as")]
    pub as_number: u32,
    /// Every node peers with every other node.
    #[serde(default = "default_true")]
    pub node_to_node_mesh: bool,
    /// How long peers keep a restarting node's routes.
    #[serde(default = "default_restart")]
    pub graceful_restart_seconds: u32,
}

impl Default for ClusterBgp {
    fn default() -> Self {
        ClusterBgp {
            as_number: DEFAULT_AS,
            node_to_node_mesh: true,
            graceful_restart_seconds: DEFAULT_RESTART_SECONDS,
        }
    }
}

fn default_as() -> u32 {
    DEFAULT_AS
}
fn default_true() -> bool {
    true
}
fn default_restart() -> u32 {
    DEFAULT_RESTART_SECONDS
}

/// One node's BGP settings (the `bgp` part of Calico's Node).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBgp {
    /// Overrides the cluster AS for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// Makes the node a route reflector of this cluster id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
}

/// An explicit BGP peer (Calico's BGPPeer): global, or for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Peer {
    pub name: String,
    pub peer_ip: Ipv4Addr,
    pub as_number: u32,
    /// Only this node peers with it; every node when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Everything BGP under `/podnet/v1/bgp/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpSettings {
    pub cluster: ClusterBgp,
    pub nodes: BTreeMap<String, NodeBgp>,
    pub peers: Vec<Peer>,
}

impl BgpSettings {
    /// The AS a node speaks with.
    pub fn node_as(&self, node: &str) -> u32 {
        self.nodes
            .get(node)
            .and_then(|n| n.as_number)
            .unwrap_or(self.cluster.as_number)
    }

    /// The node's route-reflector cluster id, if it is a reflector.
    pub fn reflector_id(&self, node: &str) -> Option<Ipv4Addr> {
        self.nodes.get(node)?.route_reflector_cluster_id
    }
}

#[derive(Debug, Error)]
pub enum BgpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{key}: {why}")]
    Invalid { key: String, why: String },
    #[error("no BGP peer named {0}")]
    NoSuchPeer(String),
}

fn invalid(key: impl Into<String>, why: impl Into<String>) -> BgpError {
    BgpError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

/// A 4-byte AS number: 1..=4294967295 (0 is reserved).
pub fn validate_as(key: &str, asn: u32) -> Result<(), BgpError> {
    if asn == 0 {
        return Err(invalid(key, "AS 0 is reserved: use 1..4294967295"));
    }
    Ok(())
}

/// A peer's address must be a unicast host address.
fn validate_peer_ip(key: &str, ip: Ipv4Addr) -> Result<(), BgpError> {
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(invalid(
            key,
            format!("peer address {ip} is not a unicast host address"),
        ));
    }
    Ok(())
}

/// Peer names become key parts and BIRD protocol names: letters, digits, `-`, `_`, `.`.
fn validate_peer_name(key: &str, name: &str) -> Result<(), BgpError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(invalid(
            key,
            format!("peer name {name:?}: use 1-63 letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// Checks every value, and that no peer is one of the nodes it would peer from (a node
/// peering with itself). `node_ips` are the registered nodes' addresses.
pub fn validate(s: &BgpSettings, node_ips: &BTreeMap<String, Ipv4Addr>) -> Result<(), BgpError> {
    validate_as(CONFIG, s.cluster.as_number)?;
    if s.cluster.graceful_restart_seconds == 0 || s.cluster.graceful_restart_seconds > 4095 {
        return Err(invalid(CONFIG, "gracefulRestartSeconds must be 1..4095"));
    }
    for (node, n) in &s.nodes {
        let key = format!("{NODES}{node}");
        validate_node_name(node).map_err(|e| invalid(&key, e.to_string()))?;
        if let Some(asn) = n.as_number {
            validate_as(&key, asn)?;
        }
    }
    for p in &s.peers {
        let key = format!("{PEERS}{}", p.name);
        validate_peer_name(&key, &p.name)?;
        validate_peer_ip(&key, p.peer_ip)?;
        validate_as(&key, p.as_number)?;
        if let Some(node) = &p.node {
            validate_node_name(node).map_err(|e| invalid(&key, e.to_string()))?;
        }
        let itself = node_ips.iter().find(|(name, ip)| {
            **ip == p.peer_ip && p.node.as_deref().is_none_or(|n| n == name.as_str())
        });
        if let Some((name, _)) = itself {
            return Err(invalid(
                &key,
                format!(
                    "peer {} is node {name} itself: a node cannot peer with itself",
                    p.peer_ip
                ),
            ));
        }
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &str) -> Result<T, BgpError> {
    serde_json::from_str(value).map_err(|e| invalid(key, format!("unreadable: {e}")))
}

/// Reads every BGP record and checks the result (see [`validate`]). Absent records mean
/// Calico's defaults.
pub fn read(store: &dyn Datastore) -> Result<BgpSettings, BgpError> {
    read_for(store, &node_ips(store)?)
}

/// [`read`], for a caller that has just listed the nodes (their addresses by name).
pub fn read_for(
    store: &dyn Datastore,
    node_ips: &BTreeMap<String, Ipv4Addr>,
) -> Result<BgpSettings, BgpError> {
    let s = parse(&store.list(ROOT)?.kvs)?;
    validate(&s, node_ips)?;
    Ok(s)
}

/// The settings the records under [`ROOT`] hold.
fn parse(kvs: &[KeyValue]) -> Result<BgpSettings, BgpError> {
    let mut s = BgpSettings::default();
    for kv in kvs {
        if kv.key == CONFIG {
            s.cluster = decode(&kv.key, &kv.value)?;
        } else if let Some(node) = kv.key.strip_prefix(NODES) {
            s.nodes
                .insert(node.to_string(), decode(&kv.key, &kv.value)?);
        } else if let Some(name) = kv.key.strip_prefix(PEERS) {
            let p: Peer = decode(&kv.key, &kv.value)?;
            if p.name != name {
                return Err(invalid(&kv.key, format!("holds peer {:?}", p.name)));
            }
            s.peers.push(p);
        } else {
            return Err(invalid(&kv.key, "unknown BGP record"));
        }
    }
    Ok(s)
}

/// The registered nodes' addresses, for [`validate`].
pub fn node_ips(store: &dyn Datastore) -> Result<BTreeMap<String, Ipv4Addr>, BgpError> {
    let (nodes, _) = crate::nodes::list(store)?;
    Ok(nodes.into_iter().map(|n| (n.name, n.ip)).collect())
}

/// The records that hold `s`, one per key; defaults are not written.
fn records(s: &BgpSettings, had_config: bool) -> BTreeMap<String, String> {
    let mut want = BTreeMap::new();
    if s.cluster != ClusterBgp::default() || had_config {
        want.insert(CONFIG.to_string(), json(&s.cluster));
    }
    for (node, n) in &s.nodes {
        if *n != NodeBgp::default() {
            want.insert(format!("{NODES}{node}"), json(n));
        }
    }
    for p in &s.peers {
        want.insert(format!("{PEERS}{}", p.name), json(p));
    }
    want
}

/// Applies `change` to the stored settings, checks the result, and writes what changed in one
/// transaction. Nothing is written if the stored settings are unreadable or the result does
/// not validate.
pub fn change(
    store: &dyn Datastore,
    change: impl Fn(&mut BgpSettings) -> Result<(), BgpError>,
) -> Result<BgpSettings, BgpError> {
    let ips = node_ips(store)?;
    let mut result = BgpSettings::default();
    update::<BgpError, _>(store, |r| {
        let kvs = r.list(ROOT)?;
        let mut after = parse(&kvs)?;
        change(&mut after)?;
        validate(&after, &ips)?;
        let want = records(&after, kvs.iter().any(|kv| kv.key == CONFIG));
        let mut txn = Txn::default();
        for (k, v) in &want {
            if !kvs.iter().any(|kv| kv.key == *k && kv.value == *v) {
                txn.put(k.clone(), v.clone());
            }
        }
        for kv in kvs.iter().filter(|kv| !want.contains_key(&kv.key)) {
            txn.delete(kv.key.clone());
        }
        result = after;
        Ok(txn)
    })?;
    Ok(result)
}

/// Deletes a peer's record, readable or not (the way out of a peer written badly by hand).
pub fn remove_peer(store: &dyn Datastore, name: &str) -> Result<(), BgpError> {
    let key = format!("{PEERS}{name}");
    let mut found = false;
    update::<BgpError, _>(store, |r| {
        let mut txn = Txn::default();
        found = r.get(&key)?.is_some();
        if found {
            txn.delete(key.clone());
        }
        Ok(txn)
    })?;
    if found {
        Ok(())
    } else {
        Err(BgpError::NoSuchPeer(name.to_string()))
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("BGP records serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_or_create(dir.path().join("s.db"), Default::default()).unwrap();
        (dir, s)
    }

    fn peer(name: &str, ip: &str, asn: u32, node: Option<&str>) -> Peer {
        Peer {
            name: name.into(),
            peer_ip: ip.parse().unwrap(),
            as_number: asn,
            node: node.map(str::to_string),
        }
    }

    #[test]
    fn nothing_stored_means_calicos_defaults() {
        let (_d, s) = store();
        let b = read(&s).unwrap();
        assert_eq!(b.cluster.as_number, 64512);
        assert!(b.cluster.node_to_node_mesh);
        assert_eq!(b.node_as("any"), 64512);
        assert!(b.peers.is_empty());
    }

    #[test]
    fn changes_round_trip_and_only_what_changed_is_written() {
        let (_d, s) = store();
        change(&s, |b| {
            b.cluster.node_to_node_mesh = false;
            b.nodes
                .entry("n1".into())
                .or_default()
                .route_reflector_cluster_id = Some("1.0.0.1".parse().unwrap());
            b.peers.push(peer("tor", "192.168.0.254", 65001, None));
            Ok(())
        })
        .unwrap();
        let b = read(&s).unwrap();
        assert!(!b.cluster.node_to_node_mesh);
        assert_eq!(b.reflector_id("n1"), Some("1.0.0.1".parse().unwrap()));
        assert_eq!(b.peers, vec![peer("tor", "192.168.0.254", 65001, None)]);
        let rev = s.revision().unwrap();
        change(&s, |_| Ok(())).unwrap();
        assert_eq!(
            s.revision().unwrap(),
            rev,
            "an unchanged setting writes nothing"
        );
        change(&s, |b| {
            b.peers.clear();
            b.nodes.clear();
            Ok(())
        })
        .unwrap();
        assert!(s.list(PEERS).unwrap().kvs.is_empty());
        assert!(s.list(NODES).unwrap().kvs.is_empty());
    }

    #[test]
    fn bad_values_are_refused_and_nothing_is_written() {
        let (_d, s) = store();
        crate::nodes::register(
            &s,
            &crate::nodes::NodeRecord {
                name: "n1".into(),
                ip: "192.168.110.101".parse().unwrap(),
                prefix_len: 16,
                tunnel_ip: None,
                tunnel_mac: None,
                encapsulation: "none".into(),
                routing: "datastore".into(),
            },
        )
        .unwrap();
        let rev = s.revision().unwrap();
        type Case = (&'static str, Box<dyn Fn(&mut BgpSettings)>);
        let cases: Vec<Case> = vec![
            ("AS 0", Box::new(|b| b.cluster.as_number = 0)),
            (
                "AS 0",
                Box::new(|b| b.peers.push(peer("p", "192.168.0.9", 0, None))),
            ),
            (
                "not a unicast",
                Box::new(|b| b.peers.push(peer("p", "224.0.0.5", 65001, None))),
            ),
            (
                "itself",
                Box::new(|b| b.peers.push(peer("p", "192.168.110.101", 65001, None))),
            ),
            (
                "itself",
                Box::new(|b| {
                    b.peers
                        .push(peer("p", "192.168.110.101", 65001, Some("n1")))
                }),
            ),
            (
                "peer name",
                Box::new(|b| b.peers.push(peer("a b", "192.168.0.9", 65001, None))),
            ),
        ];
        for (want, f) in cases {
            let err = change(&s, |b| {
                f(b);
                Ok(())
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert_eq!(s.revision().unwrap(), rev, "{want}: something was written");
        }
        // A peer at a node's address, but for another node, is fine (a node peering a reflector).
        change(&s, |b| {
            b.peers
                .push(peer("rr", "192.168.110.101", 64512, Some("n2")));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn hand_written_garbage_fails_the_read_naming_the_key() {
        let (_d, s) = store();
        for (key, value, want) in [
            (
                CONFIG,
                r#"{"asNumber": 4294967296}"#,
                "/podnet/v1/bgp/config",
            ),
            (CONFIG, r#"{"asNumbr": 1}"#, "unknown field"),
            (
                "/podnet/v1/bgp/peers/x",
                r#"{"name":"x","peerIp":"300.1.1.1","asNumber":1}"#,
                "/podnet/v1/bgp/peers/x",
            ),
            (
                "/podnet/v1/bgp/peers/x",
                r#"{"name":"y","peerIp":"10.1.1.1","asNumber":1}"#,
                "holds peer",
            ),
        ] {
            let mut txn = Txn::default();
            txn.put(key, value);
            s.txn(&txn).unwrap();
            let err = read(&s).unwrap_err().to_string();
            assert!(err.contains(want), "{value}: {err}");
            let mut txn = Txn::default();
            txn.delete(key);
            s.txn(&txn).unwrap();
        }
    }
}
