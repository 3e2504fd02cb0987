//! STATUS (CNI 1.1): could an ADD be served now? IPAM decides (datastore reachable, room in
//! the pool for this node), and the node must be able to answer for the pods' gateway
//! (a route for 169.254.1.1); every failure comes back as code 50.

use crate::config::NetConf;
use crate::error::{nl, Error};
use crate::ipam::Ipam;
use podnet_cni_types::{code, CniEnv, CniError};

pub fn status(env: &CniEnv, conf: &NetConf) -> Result<(), Error> {
    let unavailable = |e: CniError| CniError {
        code: code::PLUGIN_NOT_AVAILABLE,
        ..e
    };
    Ipam::for_conf(env, conf)
        .and_then(|i| i.status())
        .map_err(|e| Error::Cni(unavailable(e)))?;
    let mut host = super::node_side()?;
    if !host
        .routes_pod_gateway()
        .map_err(nl("look up the route for the pods' gateway"))?
    {
        return Err(Error::Cni(CniError::new(
            code::PLUGIN_NOT_AVAILABLE,
            podnet_netlink::NO_POD_GATEWAY_ROUTE,
        )));
    }
    Ok(())
}
