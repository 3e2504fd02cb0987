//! CHECK: the pod still looks the way ADD left it, compared against prevResult. The first
//! difference found is named precisely.

use super::{node_side, pod_side};
use crate::config::NetConf;
use crate::error::{nl, Error};
use crate::ipam::Ipam;
use crate::naming::{attachment_alias, GATEWAY, HOST_MAC};
use ipnet::{IpNet, Ipv4Net};
use podnet_cni_types::CniEnv;
use podnet_netlink::RouteKind;

pub fn check(env: &CniEnv, conf: &NetConf) -> Result<(), Error> {
    let fail = |m: String| Err(Error::Check(m));
    let Some(prev) = &conf.prev_result else {
        return fail("no prevResult to check against".into());
    };
    let Some(host_if) = prev.interfaces.iter().find(|i| i.sandbox.is_none()) else {
        return fail("prevResult lists no host-side interface".into());
    };
    let (_netns, mut pod) = pod_side(env)?;
    let mut host = node_side()?;

    let Some(pod_link) = pod
        .link(&env.ifname)
        .map_err(nl("look up the pod interface"))?
    else {
        return fail(format!("the pod has no interface {}", env.ifname));
    };
    let Some(host_link) = host
        .link(&host_if.name)
        .map_err(nl("look up the host interface"))?
    else {
        return fail(format!("host interface {} is missing", host_if.name));
    };
    if host_link.alias.as_deref() != Some(attachment_alias(&env.container_id, &env.ifname).as_str())
    {
        return fail(format!(
            "host interface {} does not belong to this attachment",
            host_if.name
        ));
    }
    if host_link.mac != HOST_MAC {
        return fail(format!(
            "host interface {} has MAC {}, not ee:ee:ee:ee:ee:ee",
            host_if.name,
            host_link.mac_string()
        ));
    }
    if pod_link.peer_index != Some(host_link.index) {
        return fail(format!(
            "{} in the pod is not the peer of {}",
            env.ifname, host_if.name
        ));
    }
    if !pod_link.up || !host_link.up {
        return fail(format!("{} or {} is down", env.ifname, host_if.name));
    }
    if pod_link.mtu != host_link.mtu {
        return fail(format!(
            "MTU {} in the pod but {} on {}",
            pod_link.mtu, host_link.mtu, host_if.name
        ));
    }
    if let Some(want) = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_some())
        .and_then(|i| i.mtu)
    {
        if pod_link.mtu != want {
            return fail(format!(
                "{} has MTU {}, prevResult says {want}",
                env.ifname, pod_link.mtu
            ));
        }
    }

    let addresses = pod.addresses().map_err(nl("list the pod's addresses"))?;
    let routes = host.routes().map_err(nl("list the node's routes"))?;
    for ip in &prev.ips {
        let IpNet::V4(net) = ip.address else { continue };
        let want = Ipv4Net::from(net.addr());
        if !addresses
            .iter()
            .any(|a| a.index == pod_link.index && a.net == want)
        {
            return fail(format!("{} does not hold {want}", env.ifname));
        }
        if !routes
            .iter()
            .any(|r| r.dst == want && r.oif == Some(host_link.index))
        {
            return fail(format!("the node has no route {want} dev {}", host_if.name));
        }
    }
    let pod_routes = pod.routes().map_err(nl("list the pod's routes"))?;
    let has = |dst: Ipv4Net, gw: Option<std::net::Ipv4Addr>| {
        pod_routes.iter().any(|r| {
            r.kind == RouteKind::Unicast
                && r.dst == dst
                && r.gateway == gw
                && r.oif == Some(pod_link.index)
        })
    };
    if !has(Ipv4Net::from(GATEWAY), None) {
        return fail(format!("the pod has no route {GATEWAY} dev {}", env.ifname));
    }
    if !has(Ipv4Net::default(), Some(GATEWAY)) {
        return fail(format!(
            "the pod has no default route via {GATEWAY} dev {}",
            env.ifname
        ));
    }
    Ipam::for_conf(env, conf)?.check(env)?;
    Ok(())
}
