//! ADD: IPAM first, then the veth pair and routes; on any failure after IPAM, undo what was
//! made and release the address, so a failed ADD leaves nothing behind. A host-side name held
//! by podnet's veth of another container (a pod recreated under the same name while its old
//! sandbox still exists) is freed by deleting that veth, as Calico does.

use super::{node_side, pod_side};
use crate::config::NetConf;
use crate::dataplane::{self, PodPlan};
use crate::error::{nl, Error};
use crate::ipam::Ipam;
use crate::mtu;
use crate::naming::{attachment_alias, holder, host_veth_name, Holder, HOST_MAC};
use ipnet::{IpNet, Ipv4Net};
use podnet_cni_types::{code, CniEnv, CniError, CniResult, Interface, IpConfig};

pub fn add(env: &CniEnv, conf: &NetConf) -> Result<CniResult, Error> {
    let (netns, mut pod) = pod_side(env)?;
    let mut host = node_side()?;
    let host_name = host_veth_name(&env.args, &env.container_id);
    let alias = attachment_alias(&env.container_id, &env.ifname);

    // Refuse before allocating anything; a replaced pod's veth goes once we have an address.
    let existing = host
        .link(&host_name)
        .map_err(nl(format!("look up {host_name}")))?;
    let replaced = match existing
        .as_ref()
        .map(|l| (l.index, holder(l, &env.container_id, &env.ifname)))
    {
        None => None,
        Some((index, Holder::Replaced { container })) => Some((index, container.to_string())),
        Some((_, Holder::This)) => {
            return Err(Error::AlreadySetUp(format!(
                "container {} interface {} is already set up ({host_name}); DEL it first",
                env.container_id, env.ifname
            )))
        }
        Some((_, Holder::Foreign)) => {
            return Err(Error::InterfaceExists(format!(
                "host-side interface name {host_name} is taken by another device"
            )))
        }
    };
    if pod
        .link(&env.ifname)
        .map_err(nl(format!("look up {} in the pod", env.ifname)))?
        .is_some()
    {
        return Err(Error::InterfaceExists(format!(
            "the pod's namespace already has an interface {}",
            env.ifname
        )));
    }
    warn_without_pod_gateway(&mut host);
    let mtu = mtu::resolve(conf, &mut host);
    let ipam = Ipam::for_conf(env, conf)?;
    let allocated = ipam.add(env)?;

    let attempt = (|| {
        if let Some((index, old)) = &replaced {
            remove_replaced(&mut host, *index, &host_name, old)?;
        }
        let address = allocated
            .ips
            .iter()
            .find_map(|ip| match ip.address {
                IpNet::V4(net) => Some(Ipv4Net::from(net.addr())),
                IpNet::V6(_) => None,
            })
            .ok_or_else(|| {
                CniError::new(
                    code::INVALID_NETWORK_CONFIG,
                    "the IPAM plugin returned no IPv4 address",
                )
            })?;
        let plan = PodPlan {
            host_name: host_name.clone(),
            ifname: env.ifname.clone(),
            alias: alias.clone(),
            mtu,
            address,
        };
        let made = dataplane::setup(&plan, &mut host, &netns, &mut pod);
        if made.is_err() {
            if let Err(e) = dataplane::teardown(&plan, &mut host) {
                tracing::warn!("undo a failed ADD: {e}");
            }
        }
        made.map(|links| (plan, links))
    })();
    let (plan, (_host_link, pod_link)) = match attempt {
        Ok(v) => v,
        Err(e) => {
            if let Err(r) = ipam.del(env) {
                tracing::warn!("release the address of a failed ADD: {r}");
            }
            return Err(e);
        }
    };
    tracing::info!(host = %plan.host_name, address = %plan.address, mtu, "pod attached");
    Ok(CniResult {
        interfaces: vec![
            Interface {
                name: plan.host_name.clone(),
                mac: HOST_MAC
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                mtu: Some(mtu),
                sandbox: None,
            },
            Interface {
                name: plan.ifname.clone(),
                mac: pod_link.mac_string(),
                mtu: Some(mtu),
                sandbox: env.netns.clone(),
            },
        ],
        ips: vec![IpConfig {
            address: IpNet::V4(plan.address),
            gateway: None,
            interface: Some(1),
        }],
        routes: Vec::new(),
        dns: allocated.dns,
    })
}

/// Deletes the host end of a replaced pod's attachment (its pod end and /32 route go with
/// it). Its address is left to its own DEL or GC, so it is not reused while the old sandbox
/// may still send.
fn remove_replaced(
    host: &mut podnet_netlink::Netlink,
    index: u32,
    name: &str,
    old: &str,
) -> Result<(), Error> {
    tracing::warn!(
        link = name,
        old_container = old,
        "the host-side name is held by the veth of container {old}, a replaced pod of the same name; deleting it"
    );
    match host.delete_link(index) {
        Err(e) if !e.is_not_found() => Err(nl(format!("delete {name} of container {old}"))(e)),
        _ => Ok(()),
    }
}

/// A node that cannot route 169.254.1.1 gets pods that can send nothing: ADD still succeeds
/// (the pod is wired as asked), but the log says why its traffic will die.
fn warn_without_pod_gateway(host: &mut podnet_netlink::Netlink) {
    match host.routes_pod_gateway() {
        Ok(true) => {}
        Ok(false) => tracing::warn!("{}", podnet_netlink::NO_POD_GATEWAY_ROUTE),
        Err(e) => tracing::warn!("look up the route for the pods' gateway: {e}"),
    }
}
