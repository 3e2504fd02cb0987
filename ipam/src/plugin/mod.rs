//! The CNI IPAM plugin: ADD hands the attachment an address (a /32), DEL frees it, CHECK
//! confirms it, GC frees what the runtime no longer knows, STATUS says whether ADD would work.
//!
//! [`run`] is the whole plugin given the environment and stdin; the `podnet-ipam` binary wraps
//! it, and the `podnet` main plugin calls [`add`] and [`del`] in-process for `ipam.type`
//! `podnet-ipam`, getting the same results without an exec.
//!
//! The plugin never creates the datastore (the agent does): without one, ADD and CHECK answer
//! code 11 ("try again later") naming its path, STATUS code 50, and DEL and GC succeed, as
//! there is nothing to free.

pub mod config;
mod errors;

pub use config::NetConf;
pub use errors::to_cni;

use crate::allocator::{pod_handle, Ipam};
use crate::store::{Datastore, StoreError};
use ipnet::{IpNet, Ipv4Net};
use podnet_cni_types::{code, CniEnv, CniError, CniResult, CniVersion, Command, IpConfig};
use std::collections::HashSet;

/// Runs one CNI call. Returns the version to reply in and the reply body.
pub fn run(env: &CniEnv, stdin: &[u8]) -> (CniVersion, Result<serde_json::Value, CniError>) {
    let conf = match podnet_cni_types::reply::config_or_early(env.command, stdin, NetConf::parse) {
        Ok(c) => c,
        Err(early) => return early,
    };
    let v = conf.version;
    let outcome = match env.command {
        Command::Add => add(env, &conf).map(|r| r.to_json(v)),
        Command::Del => del(env, &conf).map(|()| serde_json::Value::Null),
        Command::Check => v
            .require(CniVersion::V0_4_0, "CHECK")
            .and_then(|()| check(env, &conf))
            .map(|()| serde_json::Value::Null),
        Command::Gc => v
            .require(CniVersion::V1_1_0, "GC")
            .and_then(|()| gc(&conf))
            .map(|()| serde_json::Value::Null),
        Command::Status => v
            .require(CniVersion::V1_1_0, "STATUS")
            .and_then(|()| status(&conf))
            .map(|()| serde_json::Value::Null),
        Command::Version => unreachable!("answered above"),
    };
    (v, outcome)
}

/// The datastore, which must exist: the plugin never creates one (the agent does), so a
/// missing SQLite file is code 11 naming its path.
fn open(conf: &NetConf) -> Result<Box<dyn Datastore>, CniError> {
    conf.ipam.datastore.open().map_err(opening)
}

/// The datastore for a call that frees addresses (DEL, GC): `None` when the SQLite file is
/// missing, since a store that does not exist holds nothing to free.
fn open_if_there(conf: &NetConf) -> Result<Option<Box<dyn Datastore>>, CniError> {
    match conf.ipam.datastore.open() {
        Ok(store) => Ok(Some(store)),
        Err(StoreError::Missing { path }) => {
            tracing::info!(%path, "no datastore, so nothing to free");
            Ok(None)
        }
        Err(e) => Err(opening(e)),
    }
}

fn opening(e: StoreError) -> CniError {
    to_cni("open the IPAM datastore", e.into())
}

/// Allocates the attachment's address: the result holds it as a /32, no interfaces.
pub fn add(env: &CniEnv, conf: &NetConf) -> Result<CniResult, CniError> {
    let node = conf.node()?;
    let store = open(conf)?;
    let handle = pod_handle(&env.container_id, &env.ifname);
    let ip = Ipam::new(&*store, conf.pool.clone())
        .allocate(&node, &handle)
        .map_err(|e| {
            to_cni(
                &format!("allocate an address for {handle} on node {node}"),
                e,
            )
        })?;
    tracing::info!(%handle, %ip, %node, "allocated");
    Ok(CniResult {
        ips: vec![IpConfig {
            address: IpNet::V4(Ipv4Net::from(ip)),
            gateway: None,
            interface: None,
        }],
        ..Default::default()
    })
}

/// Frees the attachment's address; nothing held (or no datastore at all) is not an error.
pub fn del(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    let Some(store) = open_if_there(conf)? else {
        return Ok(());
    };
    let handle = pod_handle(&env.container_id, &env.ifname);
    let freed = Ipam::new(&*store, conf.pool.clone())
        .release(&handle)
        .map_err(|e| to_cni(&format!("release {handle}"), e))?;
    tracing::info!(%handle, ?freed, "released");
    Ok(())
}

/// The attachment holds an address, and it is the one in `prevResult` (when given).
pub fn check(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    let store = open(conf)?;
    let handle = pod_handle(&env.container_id, &env.ifname);
    let held = Ipam::new(&*store, conf.pool.clone())
        .lookup(&handle)
        .map_err(|e| to_cni(&format!("look up {handle}"), e))?
        .ok_or_else(|| {
            CniError::new(
                code::CHECK_FAILED,
                format!("{handle} holds no address in the IPAM datastore"),
            )
        })?;
    if let Some(prev) = &conf.prev_result {
        let want = IpNet::V4(Ipv4Net::from(held.address));
        if !prev.ips.iter().any(|ip| ip.address.addr() == want.addr()) {
            let listed: Vec<String> = prev.ips.iter().map(|i| i.address.to_string()).collect();
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!(
                    "{handle} holds {} but prevResult lists [{}]",
                    held.address,
                    listed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Frees this node's pod addresses in this pool whose attachment is not in
/// `cni.dev/valid-attachments` (none without a datastore). Carries on past failures and
/// reports them all at the end.
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    let node = conf.node()?;
    let Some(store) = open_if_there(conf)? else {
        return Ok(());
    };
    let valid: HashSet<String> = conf
        .valid_attachments
        .iter()
        .map(|a| pod_handle(&a.container_id, &a.ifname))
        .collect();
    let report = Ipam::new(&*store, conf.pool.clone())
        .gc(&node, &valid)
        .map_err(|e| to_cni("list IPAM handles for GC", e))?;
    for (handle, ip) in &report.released {
        tracing::info!(%handle, %ip, "released by GC");
    }
    if report.errors.is_empty() {
        return Ok(());
    }
    let failed: Vec<String> = report
        .errors
        .iter()
        .map(|(h, e)| format!("{h}: {e}"))
        .collect();
    Err(CniError::new(
        code::IO_FAILURE,
        format!("GC could not release {} handle(s)", failed.len()),
    )
    .with_details(failed.join("; ")))
}

/// Succeeds when an ADD on this node could get an address now.
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    let unavailable = |e: CniError| CniError {
        code: code::PLUGIN_NOT_AVAILABLE,
        ..e
    };
    let node = conf.node()?;
    let store = open(conf).map_err(unavailable)?;
    let room = Ipam::new(&*store, conf.pool.clone())
        .has_room(&node)
        .map_err(|e| unavailable(to_cni("read the IPAM datastore", e)))?;
    if room {
        Ok(())
    } else {
        Err(CniError::new(
            code::PLUGIN_NOT_AVAILABLE,
            format!(
                "pool {} has no free address for node {node}",
                conf.pool.cidr()
            ),
        ))
    }
}
