//! DEL: best effort and idempotent. Removes the pod's interface (and with it the host end and
//! the node route) and releases the address. A missing netns, a missing interface, a missing
//! or empty prevResult, a repeat, or the leftovers of a crashed ADD are all fine.

use super::node_side;
use crate::config::NetConf;
use crate::error::{nl, Error};
use crate::ipam::Ipam;
use crate::naming::{attachment_alias, host_veth_name};
use podnet_cni_types::CniEnv;
use podnet_netlink::{Netlink, Netns};

pub fn del(env: &CniEnv, conf: &NetConf) -> Result<(), Error> {
    let alias = attachment_alias(&env.container_id, &env.ifname);
    // The pod's end, if its namespace is still there.
    if let Some(path) = env.netns.as_deref() {
        match Netns::open(path) {
            Ok(netns) => {
                let mut pod = netns
                    .run(Netlink::open)
                    .and_then(|r| r)
                    .map_err(nl(format!("open a netlink socket in {path}")))?;
                if let Some(l) = pod
                    .link(&env.ifname)
                    .map_err(nl(format!("look up {} in the pod", env.ifname)))?
                {
                    if l.kind.as_deref() == Some("veth") {
                        delete(&mut pod, l.index, &env.ifname)?;
                    }
                }
            }
            Err(podnet_netlink::Error::NetnsMissing(_)) => {}
            Err(e) => tracing::warn!("DEL: {e}; removing the host side only"),
        }
    }
    // The host end, if the pod end went first without taking it (or the netns is gone). Only
    // a device labelled for this attachment is touched.
    let mut host = node_side()?;
    let mut names = vec![host_veth_name(&env.args, &env.container_id)];
    if let Some(prev) = &conf.prev_result {
        names.extend(
            prev.interfaces
                .iter()
                .filter(|i| i.sandbox.is_none())
                .map(|i| i.name.clone()),
        );
    }
    for name in names {
        if let Some(l) = host.link(&name).map_err(nl(format!("look up {name}")))? {
            if l.alias.as_deref() == Some(alias.as_str()) {
                delete(&mut host, l.index, &name)?;
            }
        }
    }
    Ipam::for_conf(env, conf)?.del(env)?;
    Ok(())
}

fn delete(nl_: &mut Netlink, index: u32, name: &str) -> Result<(), Error> {
    match nl_.delete_link(index) {
        Err(e) if !e.is_not_found() => Err(nl(format!("delete {name}"))(e)),
        _ => Ok(()),
    }
}
