//! Node records in the datastore (`/podnet/v1/nodes/<name>`): who the nodes are, where they
//! are, and their tunnel endpoints. Datastore schema like pools and blocks: every agent
//! registers its own node and routes to the others'; the lab and admin tools read them.

use crate::keys::NODES;
use crate::store::{update, Datastore, Revision, StoreError, Txn};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

pub fn key(name: &str) -> String {
    format!("{NODES}{name}")
}

/// What other agents need to know to route to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub name: String,
    /// The node's own address (its uplink's).
    pub ip: Ipv4Addr,
    /// The uplink subnet's prefix length (cross-subnet decisions).
    pub prefix_len: u8,
    /// The tunnel device's address (ipip, vxlan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_ip: Option<Ipv4Addr>,
    /// The VXLAN device's MAC, `aa:bb:...` (vxlan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_mac: Option<String>,
    pub encapsulation: String,
    /// Who makes the routes to its blocks: `datastore` (the agent) or `bgp` (BIRD).
    #[serde(default = "datastore_routing")]
    pub routing: String,
}

fn datastore_routing() -> String {
    "datastore".into()
}

impl NodeRecord {
    pub fn tunnel_mac_bytes(&self) -> Option<[u8; 6]> {
        parse_mac(self.tunnel_mac.as_deref()?)
    }
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    bytes.try_into().ok()
}

/// Writes (creates or replaces) a node's record.
pub fn register(store: &dyn Datastore, record: &NodeRecord) -> Result<Revision, StoreError> {
    let value = serde_json::to_string(record).expect("a node record serializes");
    update::<StoreError, _>(store, |r| {
        let mut txn = Txn::default();
        if r.get(&key(&record.name))?.map(|kv| kv.value) != Some(value.clone()) {
            txn.put(key(&record.name), value.clone());
        }
        Ok(txn)
    })
}

/// Every node record (unreadable ones are skipped with a warning) and the store revision.
pub fn list(store: &dyn Datastore) -> Result<(Vec<NodeRecord>, Revision), StoreError> {
    let listing = store.list(NODES)?;
    let nodes = listing
        .kvs
        .iter()
        .filter_map(|kv| match serde_json::from_str(&kv.value) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(key = %kv.key, "skip an unreadable node record: {e}");
                None
            }
        })
        .collect();
    Ok((nodes, listing.revision))
}

/// Deletes a node's record; true if it existed.
pub fn delete(store: &dyn Datastore, name: &str) -> Result<bool, StoreError> {
    let mut existed = false;
    update::<StoreError, _>(store, |r| {
        let mut txn = Txn::default();
        existed = r.get(&key(name))?.is_some();
        if existed {
            txn.delete(key(name));
        }
        Ok(txn)
    })?;
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip() {
        let m = [0x66, 0x0a, 0xff, 0, 1, 2];
        assert_eq!(parse_mac(&format_mac(&m)), Some(m));
        assert_eq!(parse_mac("66:0a"), None);
        assert_eq!(parse_mac("zz:0a:ff:00:01:02"), None);
    }

    #[test]
    fn records_round_trip_through_the_store_and_bad_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open_or_create(
            dir.path().join("s.db"),
            Default::default(),
        )
        .unwrap();
        let record = NodeRecord {
            name: "sung-ubuntu05".into(),
            ip: "192.168.110.104".parse().unwrap(),
            prefix_len: 16,
            tunnel_ip: Some("10.233.78.0".parse().unwrap()),
            tunnel_mac: None,
            encapsulation: "ipip".into(),
            routing: "datastore".into(),
        };
        register(&store, &record).unwrap();
        let mut txn = Txn::default();
        txn.put(key("broken"), "{not json".to_string());
        store.txn(&txn).unwrap();
        let (nodes, _) = list(&store).unwrap();
        assert_eq!(nodes, vec![record]);
        assert!(delete(&store, "sung-ubuntu05").unwrap());
        assert!(!delete(&store, "sung-ubuntu05").unwrap());
    }
}
