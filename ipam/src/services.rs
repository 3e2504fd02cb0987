//! Services as the lab's service proxies read them: each ClusterIP Service with its ports and
//! its ready endpoints, written by whoever plays Kubernetes' controllers (the lab), one key per
//! Service so a proxy watching the prefix sees every change.
//!
//! ```text
//! /podnet/v1/services/<namespace>/<name>   a Service (ServiceRecord)
//! ```

use crate::store::Txn;
use crate::{Datastore, Error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const SERVICES: &str = "/podnet/v1/services/";

/// One port: `port` on the ClusterIP to `targetPort` on each endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortRecord {
    #[serde(default)]
    pub name: String,
    /// `TCP` or `UDP`.
    pub protocol: String,
    pub port: u16,
    pub target_port: u16,
    /// A named `targetPort` resolves per pod (each pod names its own container port): each
    /// endpoint's port where it differs from `target_port`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoint_ports: BTreeMap<Ipv4Addr, u16>,
}

impl ServicePortRecord {
    /// The port `endpoint` listens on for this Service port.
    pub fn target_port_of(&self, endpoint: Ipv4Addr) -> u16 {
        self.endpoint_ports
            .get(&endpoint)
            .copied()
            .unwrap_or(self.target_port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    pub namespace: String,
    pub name: String,
    /// `None` for a headless Service.
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePortRecord>,
    /// The ready endpoints' addresses.
    pub endpoints: Vec<Ipv4Addr>,
    /// The pods' labels it selects (empty: endpoints kept by hand, or none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// When it was made (seconds since the epoch), for `get svc`'s AGE.
    #[serde(default)]
    pub created: u64,
}

pub fn key(namespace: &str, name: &str) -> String {
    format!("{SERVICES}{namespace}/{name}")
}

/// Every Service, in key order; a record that does not read is an error naming its key.
pub fn list(store: &dyn Datastore) -> Result<Vec<ServiceRecord>, Error> {
    store
        .list(SERVICES)?
        .kvs
        .into_iter()
        .map(|kv| {
            serde_json::from_str(&kv.value).map_err(|e| {
                Error::InvalidService(format!("{} does not read as a Service: {e}", kv.key))
            })
        })
        .collect()
}

/// Writes (or rewrites) a Service.
pub fn put(store: &dyn Datastore, s: &ServiceRecord) -> Result<(), Error> {
    let mut txn = Txn::default();
    txn.put(
        key(&s.namespace, &s.name),
        serde_json::to_string(s).expect("a Service serializes"),
    );
    store.txn(&txn)?;
    Ok(())
}

/// Removes a Service; false if there was none.
pub fn delete(store: &dyn Datastore, namespace: &str, name: &str) -> Result<bool, Error> {
    let k = key(namespace, name);
    if store.get(&k)?.is_none() {
        return Ok(false);
    }
    let mut txn = Txn::default();
    txn.delete(k);
    store.txn(&txn)?;
    Ok(true)
}
