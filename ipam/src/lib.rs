//! podnet's IP address management, Calico style: a pool is cut into blocks, each block is
//! affine to one node, and a node hands out addresses from its own blocks (claiming another
//! when they are full, borrowing from other nodes' blocks unless the pool is strict).
//!
//! - [`store`]: the etcd-shaped datastore trait and its embedded SQLite backend.
//! - [`Ipam`]: allocate, release and garbage-collect addresses by handle.
//! - [`nodes`]: node records, read by the agent and the lab alike; [`bgp`]: BGP settings;
//!   [`pools`]: pools as an operator manages them, and the cluster's egress option.
//! - [`inspect`]: the admin view (`podnet-ipam show`) and a consistency check.
//! - [`plugin`]: the CNI IPAM plugin, used by the `podnet-ipam` binary and in-process by the
//!   `podnet` main plugin. CNI error codes are assigned there, once.
//!
//! Crates: `rusqlite` (bundled SQLite) for the store, `serde_json` for records, `ipnet` for
//! CIDR arithmetic, `thiserror` for this crate's one error enum.

pub mod allocator;
pub mod bgp;
pub mod cidr;
pub mod inspect;
pub mod keys;
pub mod model;
pub mod nodes;
pub mod plugin;
pub mod pool;
pub mod pools;
pub mod services;
pub mod store;

pub use allocator::{pod_handle, pod_handles, tunnel_handle, GcReport, Ipam};
pub use pool::{PoolSetting, PoolSpec};
pub use store::{Datastore, DatastoreConfig, StoreError};

use ipnet::Ipv4Net;
use thiserror::Error;

/// Everything IPAM can fail with.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid pool: {0}")]
    InvalidPool(String),
    /// A pool setting refused: which, its value as written, why.
    #[error("invalid pool: {setting}: {value}: {why}")]
    BadSetting {
        setting: pool::PoolSetting,
        value: String,
        why: String,
    },
    #[error("pool {pool} is stored with block size /{stored}, but the config asks for /{wanted}")]
    PoolMismatch {
        pool: Ipv4Net,
        stored: u8,
        wanted: u8,
    },
    #[error("pool {pool} overlaps pool {other} already in the datastore")]
    PoolOverlap { pool: Ipv4Net, other: Ipv4Net },
    #[error("pool {pool} has no free address for node {node}{}", if *.strict { " (strictAffinity: no borrowing)" } else { "" })]
    PoolExhausted {
        pool: Ipv4Net,
        node: String,
        strict: bool,
    },
    #[error(
        "handle {0} already holds an address (a second ADD for the same container and interface?)"
    )]
    AlreadyAllocated(String),
    #[error("invalid Service record: {0}")]
    InvalidService(String),
    #[error("invalid {what} {value:?}: {why}")]
    InvalidName {
        what: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Node names become part of keys: non-empty, at most 253 characters, no `/` or whitespace.
pub fn validate_node_name(node: &str) -> Result<(), Error> {
    validate_name("node name", node)
}

pub(crate) fn validate_name(what: &'static str, value: &str) -> Result<(), Error> {
    let why = if value.is_empty() {
        Some("it is empty")
    } else if value.len() > 253 {
        Some("it is longer than 253 characters")
    } else if value
        .chars()
        .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        Some("it contains '/', whitespace or a control character")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Error::InvalidName {
            what,
            value: value.to_string(),
            why,
        }),
    }
}
