//! `podnet-agent`, the per-node route agent: it registers the node, owns its tunnel device
//! and tunnel address, and keeps the node's routes to every pod block in the cluster equal to
//! what the datastore says, so that a pod's address tells which node it is on.
//!
//! - [`desired`]: which routes should exist, a pure function of nodes and blocks;
//! - [`kernel`]: making the kernel match, touching only what the agent owns;
//! - [`tunnel`]: `tunl0` / `vxlan.calico` and the published MTU;
//! - [`egress`]: the node's nftables table `ip podnet` (natOutgoing masquerade, the tunnel
//!   source fix), computed as data and replaced whole when the kernel's copy differs;
//! - [`run`]: start-up, then reconcile on every datastore change, every route deleted behind
//!   its back, and periodically;
//! - [`http`] and [`metrics`]: `/healthz`, `/readyz`, `/metrics` on loopback;
//! - [`bgp`]: BGP mode, where BIRD learns and installs the routes and the agent renders its
//!   config, supervises it and reads its state;
//! - [`settings`] and [`config_file`]: the flags and `/etc/podnet/agent.toml` (flags win);
//! - [`install_cni`]: the plugins and their conflist put in place on a node;
//! - [`stop`]: SIGTERM and SIGINT end it at once, the kernel left as it is;
//! - [`status`]: the `status` view. Node records are datastore schema: `podnet_ipam::nodes`.
//!
//! Threads and blocking sockets rather than an async runtime: the agent waits on three things
//! (datastore watch, kernel route events, HTTP), each gets a thread, and the reconcile loop
//! runs on the main one. That keeps it small (RSS is a target) and easy to follow.

pub mod bgp;
pub mod config_errors;
pub mod config_file;
pub mod desired;
pub mod egress;
pub mod http;
pub mod install_cni;
pub mod kernel;
pub mod metrics;
pub mod run;
pub mod settings;
pub mod status;
pub mod stop;
pub mod tunnel;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Settings(String),
    #[error("{action}")]
    Netlink {
        action: String,
        #[source]
        source: podnet_netlink::Error,
    },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] podnet_ipam::StoreError),
    #[error(transparent)]
    Ipam(#[from] podnet_ipam::Error),
    #[error("tunnel device name {name} is taken by a {kind} device (podnet needs {wanted} there)")]
    TunnelNameTaken {
        name: String,
        kind: String,
        wanted: &'static str,
    },
    #[error("{0} vanished right after it was created")]
    Vanished(String),
    #[error(transparent)]
    Bird(#[from] bgp::daemon::BirdError),
    #[error("BGP settings: {0}")]
    Bgp(#[from] podnet_ipam::bgp::BgpError),
}

impl Error {
    pub(crate) fn netlink(
        action: impl Into<String>,
    ) -> impl FnOnce(podnet_netlink::Error) -> Error {
        let action = action.into();
        move |source| Error::Netlink { action, source }
    }
}
