//! Netlink and network-namespace primitives shared by the CNI plugin, the agent and the lab.
//!
//! - [`Netlink`]: a small synchronous rtnetlink socket (request, ack, dump) for short-lived
//!   processes such as the CNI plugin: no async runtime, no hidden threads. Messages are built
//!   with rtnetlink's builders and the packet types come from its re-exports, so there is one
//!   `netlink-packet-route` in the tree.
//! - [`netns`]: opening a namespace by path (checked to really be one) and running code inside
//!   it on a dedicated thread, so `setns` never leaks into other work.
//! - [`nft`]: nftables tables as data, replaced whole in one atomic batch, read back, watched.
//! - [`sysctl`]: `/proc/sys` writes, which apply to the namespace of the calling thread.
//!
//! Errors keep the kernel's errno so callers match on it (`EEXIST`, `ENOENT`), never on text.

mod addr;
mod link;
pub mod monitor;
mod neigh;
pub mod netns;
pub mod nft;
mod route;
mod socket;
pub mod sysctl;
mod uplink;

pub use addr::Address;
pub use link::{Link, VethSpec, VxlanSpec};
pub use monitor::{RouteEvent, RouteMonitor};
pub use neigh::Neighbour;
pub use netns::Netns;
pub use route::{
    route_origin, Route, RouteKind, RouteSpec, AGENT_ROUTE_PROTOCOL, BIRD_ROUTE_PROTOCOL,
    NO_POD_GATEWAY_ROUTE, POD_GATEWAY, ROUTE_PROTOCOL,
};
pub use socket::Netlink;
pub use uplink::{pin_neighbours, Uplink};

pub use rtnetlink::packet_route;

use thiserror::Error;

/// Netlink, namespace and sysctl failures.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{action}: {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel { action: String, errno: i32 },
    #[error("{action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network namespace {0} does not exist")]
    NetnsMissing(String),
    #[error("{0} is not a network namespace")]
    NotNetns(String),
    #[error("decode a netlink reply to {action}: {detail}")]
    Decode { action: String, detail: String },
}

impl Error {
    /// The kernel's errno, if the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// The object was not there (no such device, route or address).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ESRCH) | Some(libc::EADDRNOTAVAIL)
        )
    }

    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let action = action.into();
        move |source| Error::Io { action, source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
