//! Pools as an operator manages them (`podnet-ipam pool ...`): list, create, turn `natOutgoing`
//! on or off; and the cluster-wide egress option, which addresses are never masqueraded to.
//!
//! ```text
//! /podnet/v1/pools/<cidr>        a pool (crate::model::PoolRecord)
//! /podnet/v1/config/egress       {"natOutgoingExclusions": "IPPoolsOnly" | "IPPoolsAndHostIPs"}
//! ```

use crate::model::PoolRecord;
use crate::store::{update, Txn};
use crate::{keys, Datastore, Error, PoolSpec};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub const EGRESS: &str = "/podnet/v1/config/egress";

/// Every pool in the datastore, lowest CIDR first; a record that does not read or validate is
/// an error naming its key (the agent must not build rules on a guess).
pub fn list(store: &dyn Datastore) -> Result<Vec<PoolSpec>, Error> {
    let mut out = Vec::new();
    for kv in store.list(keys::POOLS)?.kvs {
        let r: PoolRecord = serde_json::from_str(&kv.value)
            .map_err(|e| Error::InvalidPool(format!("{} does not read as a pool: {e}", kv.key)))?;
        out.push(PoolSpec::from_record(r)?);
    }
    out.sort_by_key(|p| p.cidr());
    Ok(out)
}

/// Stores a new pool; refuses one that exists already or overlaps another.
pub fn create(store: &dyn Datastore, pool: &PoolSpec) -> Result<(), Error> {
    let key = keys::pool(&pool.cidr());
    update::<Error, _>(store, |r| {
        if r.get(&key)?.is_some() {
            return Err(Error::InvalidPool(format!(
                "pool {} exists already",
                pool.cidr()
            )));
        }
        for kv in r.list(keys::POOLS)? {
            if let Ok(other) = serde_json::from_str::<PoolRecord>(&kv.value) {
                if other.cidr.contains(&pool.cidr()) || pool.cidr().contains(&other.cidr) {
                    return Err(Error::PoolOverlap {
                        pool: pool.cidr(),
                        other: other.cidr,
                    });
                }
            }
        }
        let mut txn = Txn::default();
        txn.put(
            key.clone(),
            serde_json::to_string(pool.record()).expect("pool serializes"),
        );
        Ok(txn)
    })?;
    Ok(())
}

/// Turns masquerading of the pool's outgoing traffic on or off; returns the pool as stored.
pub fn set_nat_outgoing(store: &dyn Datastore, cidr: Ipv4Net, on: bool) -> Result<PoolSpec, Error> {
    let key = keys::pool(&cidr);
    let mut result = None;
    update::<Error, _>(store, |r| {
        let Some(kv) = r.get(&key)? else {
            return Err(Error::InvalidPool(format!(
                "no pool {cidr} in the datastore"
            )));
        };
        let stored: PoolRecord = serde_json::from_str(&kv.value)
            .map_err(|e| Error::InvalidPool(format!("{key} does not read as a pool: {e}")))?;
        let after = PoolSpec::from_record(stored.clone())?.with_nat_outgoing(on);
        let mut txn = Txn::default();
        if *after.record() != stored {
            txn.put(
                key.clone(),
                serde_json::to_string(after.record()).expect("pool serializes"),
            );
        }
        result = Some(after);
        Ok(txn)
    })?;
    Ok(result.expect("set by the update"))
}

/// Which destinations outside the pools are still never masqueraded to (Calico's FelixConfiguration
/// `natOutgoingExclusions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NatExclusions {
    /// Only pool addresses (Calico's default).
    #[default]
    IPPoolsOnly,
    /// Pool addresses and every node's address (calico#7446: a pod reaching another node's
    /// host keeps its own source).
    IPPoolsAndHostIPs,
}

impl NatExclusions {
    pub fn as_str(self) -> &'static str {
        match self {
            NatExclusions::IPPoolsOnly => "IPPoolsOnly",
            NatExclusions::IPPoolsAndHostIPs => "IPPoolsAndHostIPs",
        }
    }
}

impl std::str::FromStr for NatExclusions {
    type Err = String;
    fn from_str(s: &str) -> Result<NatExclusions, String> {
        match s {
            "IPPoolsOnly" => Ok(NatExclusions::IPPoolsOnly),
            "IPPoolsAndHostIPs" => Ok(NatExclusions::IPPoolsAndHostIPs),
            _ => Err(format!(
                "unknown natOutgoingExclusions {s:?} (IPPoolsOnly or IPPoolsAndHostIPs)"
            )),
        }
    }
}

/// The cluster's egress settings as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressConfig {
    #[serde(default)]
    pub nat_outgoing_exclusions: NatExclusions,
}

/// The egress settings (defaults when none are stored); an unreadable record is an error.
pub fn egress(store: &dyn Datastore) -> Result<EgressConfig, Error> {
    match store.get(EGRESS)? {
        None => Ok(EgressConfig::default()),
        Some(kv) => serde_json::from_str(&kv.value).map_err(|e| {
            Error::InvalidPool(format!("{EGRESS} does not read as egress settings: {e}"))
        }),
    }
}

pub fn set_egress(store: &dyn Datastore, conf: EgressConfig) -> Result<(), Error> {
    update::<Error, _>(store, |_| {
        let mut txn = Txn::default();
        txn.put(
            EGRESS,
            serde_json::to_string(&conf).expect("settings serialize"),
        );
        Ok(txn)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DatastoreConfig;
    use std::collections::BTreeMap;

    #[test]
    fn pools_are_created_once_listed_and_switched() {
        let dir = tempfile::tempdir().unwrap();
        let store = DatastoreConfig::sqlite(dir.path().join("s.db"))
            .open_or_create()
            .unwrap();
        let p = PoolSpec::new(
            "10.233.64.0/18".parse().unwrap(),
            24,
            false,
            BTreeMap::new(),
        )
        .unwrap();
        create(&*store, &p).unwrap();
        assert!(create(&*store, &p)
            .unwrap_err()
            .to_string()
            .contains("exists already"));
        let inner = PoolSpec::new(
            "10.233.65.0/24".parse().unwrap(),
            26,
            false,
            BTreeMap::new(),
        )
        .unwrap();
        assert!(matches!(
            create(&*store, &inner),
            Err(Error::PoolOverlap { .. })
        ));
        assert!(list(&*store).unwrap()[0].nat_outgoing());
        let off = set_nat_outgoing(&*store, p.cidr(), false).unwrap();
        assert!(!off.nat_outgoing());
        assert!(!list(&*store).unwrap()[0].nat_outgoing());
        let missing = set_nat_outgoing(&*store, "10.1.0.0/16".parse().unwrap(), true);
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("no pool 10.1.0.0/16"));
    }

    #[test]
    fn egress_settings_default_and_refuse_unknown_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = DatastoreConfig::sqlite(dir.path().join("s.db"))
            .open_or_create()
            .unwrap();
        assert_eq!(
            egress(&*store).unwrap().nat_outgoing_exclusions,
            NatExclusions::IPPoolsOnly
        );
        let both = EgressConfig {
            nat_outgoing_exclusions: NatExclusions::IPPoolsAndHostIPs,
        };
        set_egress(&*store, both).unwrap();
        assert_eq!(egress(&*store).unwrap(), both);
        assert!("Nope".parse::<NatExclusions>().is_err());
        let mut txn = Txn::default();
        txn.put(EGRESS, r#"{"natOutgoingExclusions":"Everything"}"#);
        store.txn(&txn).unwrap();
        assert!(egress(&*store).unwrap_err().to_string().contains(EGRESS));
    }
}
