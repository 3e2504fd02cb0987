//! Making the kernel match a [`Desired`]: add what is missing, replace what differs, delete
//! stale entries, touching only routes tagged [`AGENT_ROUTE_PROTOCOL`] and permanent
//! neighbour/FDB entries on the tunnel device. Equal routes are left alone, so a restart or a
//! resync changes nothing that is already right.

use crate::desired::{Desired, Dev, Want};
use podnet_netlink::{Neighbour, Netlink, Route, RouteKind, RouteSpec, AGENT_ROUTE_PROTOCOL};
use std::collections::BTreeSet;

/// The devices routes leave by.
#[derive(Debug, Clone, Copy)]
pub struct Devices {
    pub tunnel: Option<u32>,
    pub uplink: u32,
}

/// What one pass changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    pub replaced: usize,
    pub deleted: usize,
    /// Owned routes after the pass.
    pub owned: usize,
}

/// The netlink route for a wanted one; `None` if its device does not exist.
pub fn route_spec(dst: ipnet::Ipv4Net, want: &Want, devs: &Devices) -> Option<RouteSpec> {
    let base = RouteSpec {
        dst,
        kind: RouteKind::Blackhole,
        gateway: None,
        oif: None,
        scope_link: false,
        onlink: false,
        protocol: AGENT_ROUTE_PROTOCOL,
    };
    match want {
        Want::Blackhole => Some(base),
        Want::Via {
            gateway,
            dev,
            onlink,
        } => Some(RouteSpec {
            kind: RouteKind::Unicast,
            gateway: Some(*gateway),
            oif: Some(match dev {
                Dev::Tunnel => devs.tunnel?,
                Dev::Uplink => devs.uplink,
            }),
            onlink: *onlink,
            ..base
        }),
    }
}

/// True if the kernel's route is exactly the wanted one.
pub fn matches(have: &Route, want: &RouteSpec) -> bool {
    have.dst == want.dst
        && have.kind == want.kind
        && have.gateway == want.gateway
        && have.oif == want.oif
        && have.onlink == want.onlink
        && have.protocol == want.protocol
}

/// One reconcile pass over routes, neighbours and FDB entries.
pub fn apply(
    nl: &mut Netlink,
    desired: &Desired,
    devs: &Devices,
) -> podnet_netlink::Result<Changes> {
    let mut changes = Changes::default();
    let owned: Vec<Route> = nl
        .routes()?
        .into_iter()
        .filter(|r| r.protocol == AGENT_ROUTE_PROTOCOL)
        .collect();
    let mut keep = BTreeSet::new();
    for (dst, want) in &desired.routes {
        let Some(spec) = route_spec(*dst, want, devs) else {
            continue;
        };
        keep.insert(*dst);
        match owned.iter().find(|r| r.dst == *dst) {
            Some(have) if matches(have, &spec) => {}
            Some(_) => {
                nl.add_route(&spec, true)?;
                changes.replaced += 1;
            }
            None => {
                nl.add_route(&spec, true)?;
                changes.added += 1;
            }
        }
    }
    for r in owned.iter().filter(|r| !keep.contains(&r.dst)) {
        match nl.delete_route(r.dst, AGENT_ROUTE_PROTOCOL) {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => changes.deleted += 1,
        }
    }
    changes.owned = keep.len();
    if let Some(tunnel) = devs.tunnel {
        sync_neighbours(nl, tunnel, desired)?;
    }
    Ok(changes)
}

fn sync_neighbours(nl: &mut Netlink, tunnel: u32, desired: &Desired) -> podnet_netlink::Result<()> {
    let want_arp: BTreeSet<Neighbour> = desired
        .neighbours
        .iter()
        .map(|(ip, mac)| Neighbour {
            index: tunnel,
            ip: *ip,
            mac: *mac,
        })
        .collect();
    let want_fdb: BTreeSet<Neighbour> = desired
        .fdb
        .iter()
        .map(|(mac, ip)| Neighbour {
            index: tunnel,
            ip: *ip,
            mac: *mac,
        })
        .collect();
    let have_arp: BTreeSet<Neighbour> = nl.neighbours(tunnel)?.into_iter().collect();
    let have_fdb: BTreeSet<Neighbour> = nl.fdb(tunnel)?.into_iter().collect();
    for n in want_arp.difference(&have_arp) {
        nl.set_neighbour(n)?;
    }
    for n in want_fdb.difference(&have_fdb) {
        nl.set_fdb(n)?;
    }
    for n in have_arp.difference(&want_arp) {
        let _ = nl.delete_neighbour(n);
    }
    for n in have_fdb.difference(&want_fdb) {
        let _ = nl.delete_fdb(n);
    }
    Ok(())
}
