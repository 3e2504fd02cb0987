//! podnet's promise as checks over one snapshot of the lab: no address twice, no address or
//! veth without a live attachment, no stale route, every node's kernel as desired. A pure
//! function of what was read ([`World`]) and what the runtimes know ([`Expect`]), so each rule
//! is unit-tested without a lab.

use podnet_netlink::nft::Table;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// What one node's kernel holds.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub name: String,
    /// Host-side `cali*` veths: name and label (`podnet:<container>:<ifname>`).
    pub veths: Vec<(String, Option<String>)>,
    /// The CNI plugin's /32 routes: address and device.
    pub pod_routes: Vec<(Ipv4Addr, String)>,
    /// Block routes it has and should have (`block_routes`), sorted.
    pub block_routes: Vec<String>,
    pub want_block_routes: Vec<String>,
    /// Table `ip podnet` (egress) as read.
    pub nft: Option<Table>,
}

/// What was read from the lab.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub nodes: Vec<NodeView>,
    /// The IPAM's own consistency check (`podnet-ipam check`): an address held twice, an
    /// allocation without its handle...
    pub ipam_problems: Vec<String>,
    /// Container IDs with a pod handle in the IPAM.
    pub handles: Vec<String>,
}

/// What the runtimes know.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// ADD succeeded and no DEL since: container -> (node, address).
    pub attached: BTreeMap<String, (String, Ipv4Addr)>,
    /// ADD failed or was killed and its DEL has not completed: anything of it may remain.
    /// Container -> node.
    pub limbo: BTreeMap<String, String>,
    /// Attached, then replaced by a recreated pod of the same name, its DEL not completed: its
    /// veth may be gone (the new pod's ADD deletes it), its address must still be held, so it
    /// is not reused while the old sandbox may still send. Container -> node.
    pub replaced: BTreeMap<String, String>,
    /// Table `ip podnet` of every node before the run.
    pub nft_before: BTreeMap<String, Option<Table>>,
}

impl Expect {
    fn live(&self, id: &str) -> bool {
        self.attached.contains_key(id)
            || self.limbo.contains_key(id)
            || self.replaced.contains_key(id)
    }
}

/// The container ID a veth's label names.
fn labelled(alias: &Option<String>) -> Option<&str> {
    let rest = alias.as_deref()?.strip_prefix("podnet:")?;
    Some(rest.rsplit_once(':')?.0)
}

/// Every rule broken, each a sentence naming the object.
pub fn violations(w: &World, e: &Expect) -> Vec<String> {
    let mut v: Vec<String> = w
        .ipam_problems
        .iter()
        .map(|p| format!("IPAM: {p}"))
        .collect();
    let handles: BTreeSet<&str> = w.handles.iter().map(String::as_str).collect();
    for h in &handles {
        if !e.live(h) {
            v.push(format!(
                "address held for {h}, which has no live attachment"
            ));
        }
    }
    for id in e.attached.keys() {
        if !handles.contains(id.as_str()) {
            v.push(format!("attachment {id} has no address in the IPAM"));
        }
    }
    for id in e.replaced.keys() {
        if !handles.contains(id.as_str()) {
            v.push(format!(
                "replaced attachment {id} lost its address before its DEL"
            ));
        }
    }
    for n in &w.nodes {
        let mut veth_of: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, alias) in &n.veths {
            match labelled(alias) {
                Some(id) if e.live(id) => {
                    veth_of.insert(id, name);
                }
                Some(id) => v.push(format!(
                    "{}: veth {name} of {id}, which has no live attachment",
                    n.name
                )),
                // An ADD killed between making the veth and labelling it; its DEL (pending)
                // removes the pair through the pod's end.
                None if e.limbo.values().any(|node| *node == n.name) => {}
                None => v.push(format!(
                    "{}: veth {name} carries no attachment label",
                    n.name
                )),
            }
        }
        for (id, (node, ip)) in &e.attached {
            if *node != n.name {
                continue;
            }
            match veth_of.get(id.as_str()) {
                None => v.push(format!("{}: attachment {id} ({ip}) has no veth", n.name)),
                Some(dev) if !n.pod_routes.contains(&(*ip, dev.to_string())) => v.push(format!(
                    "{}: no route {ip} dev {dev} for attachment {id}",
                    n.name
                )),
                Some(_) => {}
            }
        }
        let devs: BTreeSet<&str> = veth_of.values().copied().collect();
        for (ip, dev) in &n.pod_routes {
            if !devs.contains(dev.as_str()) {
                v.push(format!("{}: stale route {ip} dev {dev}", n.name));
            }
        }
        if n.block_routes != n.want_block_routes {
            let missing: Vec<_> = n
                .want_block_routes
                .iter()
                .filter(|r| !n.block_routes.contains(r))
                .collect();
            let extra: Vec<_> = n
                .block_routes
                .iter()
                .filter(|r| !n.want_block_routes.contains(r))
                .collect();
            v.push(format!(
                "{}: block routes differ: missing {missing:?}, extra {extra:?}",
                n.name
            ));
        }
        if let Some(before) = e.nft_before.get(&n.name) {
            if *before != n.nft {
                v.push(format!(
                    "{}: table ip podnet is not what it was before the run",
                    n.name
                ));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// One node with one attachment, all in order.
    fn healthy() -> (World, Expect) {
        let node = NodeView {
            name: "node1".into(),
            veths: vec![("cali1".into(), Some("podnet:c1:eth0".into()))],
            pod_routes: vec![(ip("10.64.0.1"), "cali1".into())],
            block_routes: vec!["blackhole 10.64.0.0/26".into()],
            want_block_routes: vec!["blackhole 10.64.0.0/26".into()],
            nft: None,
        };
        let w = World {
            nodes: vec![node],
            ipam_problems: vec![],
            handles: vec!["c1".into()],
        };
        let mut e = Expect::default();
        e.attached
            .insert("c1".into(), ("node1".into(), ip("10.64.0.1")));
        e.nft_before.insert("node1".into(), None);
        (w, e)
    }

    #[test]
    fn a_healthy_lab_breaks_no_rule() {
        let (w, e) = healthy();
        assert_eq!(violations(&w, &e), Vec::<String>::new());
    }

    #[test]
    fn leaks_are_found() {
        let (mut w, mut e) = healthy();
        e.attached.clear(); // DEL completed, yet everything stayed
        let v = violations(&w, &e);
        assert!(v.iter().any(|m| m.contains("address held for c1")), "{v:?}");
        assert!(v.iter().any(|m| m.contains("veth cali1 of c1")), "{v:?}");
        assert!(
            v.iter()
                .any(|m| m.contains("stale route 10.64.0.1 dev cali1")),
            "{v:?}"
        );
        // In limbo (ADD killed, DEL pending) the same leftovers are allowed.
        e.limbo.insert("c1".into(), "node1".into());
        assert_eq!(violations(&w, &e), Vec::<String>::new());
        w.ipam_problems
            .push("10.64.0.1 is held by c1 and c2".into());
        assert_eq!(violations(&w, &e).len(), 1);
    }

    #[test]
    fn a_replaced_attachment_keeps_its_address_and_may_lose_its_veth() {
        let (mut w, mut e) = healthy();
        // c2, the same pod recreated, took cali1 (the old veth went) and a new address.
        w.nodes[0].veths = vec![("cali1".into(), Some("podnet:c2:eth0".into()))];
        w.nodes[0].pod_routes = vec![(ip("10.64.0.2"), "cali1".into())];
        w.handles.push("c2".into());
        e.attached.clear();
        e.attached
            .insert("c2".into(), ("node1".into(), ip("10.64.0.2")));
        e.replaced.insert("c1".into(), "node1".into());
        assert_eq!(violations(&w, &e), Vec::<String>::new());
        // Before the new ADD removed it, the old veth (and route) may still be there.
        let mut before = w.clone();
        before.nodes[0].veths = vec![("cali1".into(), Some("podnet:c1:eth0".into()))];
        before.nodes[0].pod_routes = vec![(ip("10.64.0.1"), "cali1".into())];
        e.attached.clear();
        e.limbo.insert("c2".into(), "node1".into());
        assert_eq!(violations(&before, &e), Vec::<String>::new());
        // Its address freed before its DEL (by the new ADD, or by a GC that forgot it).
        w.handles.retain(|h| h != "c1");
        let v = violations(&w, &e);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("replaced attachment c1 lost its address"));
        // Its DEL done, nothing of it may remain.
        e.replaced.clear();
        w.handles.push("c1".into());
        assert!(violations(&w, &e)
            .iter()
            .any(|m| m.contains("address held for c1")));
    }

    #[test]
    fn missing_pieces_and_drift_are_found() {
        let (mut w, mut e) = healthy();
        w.handles.clear();
        w.nodes[0].pod_routes.clear();
        w.nodes[0].block_routes.clear();
        e.nft_before.insert("node1".into(), Some(Table::default()));
        let v = violations(&w, &e);
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[0].contains("has no address"));
        assert!(v[1].contains("no route 10.64.0.1 dev cali1"));
        assert!(v[2].contains("missing [\"blackhole 10.64.0.0/26\"]"));
        assert!(v[3].contains("table ip podnet"));
        w.nodes[0].veths[0].1 = None;
        assert!(violations(&w, &e)
            .iter()
            .any(|m| m.contains("no attachment label")));
        e.limbo.insert("c2".into(), "node1".into());
        assert!(!violations(&w, &e)
            .iter()
            .any(|m| m.contains("no attachment label")));
    }
}
