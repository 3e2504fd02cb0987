//! One module per CNI verb. Each takes the validated environment and config and returns the
//! verb's outcome; `main` turns it into the single reply.

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;

use crate::error::{nl, Error};
use podnet_cni_types::CniEnv;
use podnet_netlink::{Netlink, Netns};

/// The pod's namespace and a netlink socket opened inside it.
pub(crate) fn pod_side(env: &CniEnv) -> Result<(Netns, Netlink), Error> {
    let path = env.netns.as_deref().unwrap_or_default();
    let netns = Netns::open(path).map_err(Error::Netns)?;
    let socket = netns
        .run(Netlink::open)
        .and_then(|r| r)
        .map_err(nl(format!("open a netlink socket in {path}")))?;
    Ok((netns, socket))
}

/// A netlink socket in the node's (our own) namespace.
pub(crate) fn node_side() -> Result<Netlink, Error> {
    Netlink::open().map_err(nl("open a netlink socket in the node namespace"))
}
