//! STATUS (CNI 1.1): could an ADD be served now? IPAM decides (datastore reachable, room in
//! the pool for this node); its failures come back as code 50.

use crate::config::NetConf;
use crate::error::Error;
use crate::ipam::Ipam;
use podnet_cni_types::{code, CniEnv, CniError};

pub fn status(env: &CniEnv, conf: &NetConf) -> Result<(), Error> {
    let unavailable = |e: CniError| CniError {
        code: code::PLUGIN_NOT_AVAILABLE,
        ..e
    };
    Ipam::for_conf(env, conf)
        .and_then(|i| i.status())
        .map_err(|e| Error::Cni(unavailable(e)))
}
