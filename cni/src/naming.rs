//! Names and labels of a pod's interfaces, as Calico makes them.

use podnet_cni_types::CniArgs;
use podnet_netlink::Link;
use sha1::{Digest, Sha1};

/// The MAC of every host-side veth (Calico's): the node answers for the pod's gateway.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The pod's gateway, answered by proxy ARP on the host-side veth.
pub const GATEWAY: std::net::Ipv4Addr = podnet_netlink::POD_GATEWAY;

/// `cali` + the first 11 hex digits of sha1("<namespace>.<pod>") when the runtime names the
/// pod (Kubernetes), else of the container ID (podman sends only `K8S_POD_NAME`).
pub fn host_veth_name(args: &CniArgs, container_id: &str) -> String {
    let key = match (args.get("K8S_POD_NAMESPACE"), args.get("K8S_POD_NAME")) {
        (Some(ns), Some(pod)) if !ns.is_empty() && !pod.is_empty() => format!("{ns}.{pod}"),
        _ => container_id.to_string(),
    };
    let digest = Sha1::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("cali{}", &hex[..11])
}

/// The label (`ifalias`) on a host-side veth, naming the attachment it serves, so DEL and GC
/// never touch a `cali*` device that is not this attachment's.
pub fn attachment_alias(container_id: &str, ifname: &str) -> String {
    format!("podnet:{container_id}:{ifname}")
}

/// The attachment a host-side veth's label names.
pub fn parse_alias(alias: &str) -> Option<(&str, &str)> {
    let rest = alias.strip_prefix("podnet:")?;
    rest.rsplit_once(':')
}

/// The attachment (container, ifname) a node device serves, if podnet made it: a `cali*` veth
/// with podnet's label. Anything else is never touched.
pub fn podnet_attachment(link: &Link) -> Option<(&str, &str)> {
    let veth = link.kind.as_deref() == Some("veth") && link.name.starts_with("cali");
    veth.then(|| link.alias.as_deref().and_then(parse_alias))
        .flatten()
}

/// Who holds the host-side name an ADD wants.
#[derive(Debug, PartialEq, Eq)]
pub enum Holder<'a> {
    /// This very attachment (same container and ifname): a repeated ADD.
    This,
    /// A veth podnet made for another container of the same pod name: a pod the cluster has
    /// replaced (Kubernetes keeps namespace/name unique among live pods), whose sandbox is not
    /// gone yet. Its veth may go; its address stays held until its own DEL or GC.
    Replaced { container: &'a str },
    /// Anything else: not ours to remove.
    Foreign,
}

/// Decides who holds `link`, the device already named as the attachment `container`/`ifname`
/// wants its host end named.
pub fn holder<'a>(link: &'a Link, container: &str, ifname: &str) -> Holder<'a> {
    match podnet_attachment(link) {
        Some((c, i)) if c == container && i == ifname => Holder::This,
        Some((c, _)) if c != container => Holder::Replaced { container: c },
        _ => Holder::Foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_names() {
        let k8s = |ns: &str, pod: &str| {
            CniArgs::parse(&format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod}"
            ))
            .unwrap()
        };
        assert_eq!(
            host_veth_name(&k8s("default", "ubuntu-test"), "x"),
            "calie3df4d89b13"
        );
        assert_eq!(
            host_veth_name(&k8s("default", "multi-container"), "x"),
            "calib4cfe5eb958"
        );
    }

    #[test]
    fn without_a_namespace_the_container_id_names_it() {
        let podman = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web").unwrap();
        let a = host_veth_name(&podman, "abc");
        assert_eq!(a, host_veth_name(&CniArgs::default(), "abc"));
        assert_ne!(a, host_veth_name(&podman, "abd"));
        assert_eq!(a.len(), 15, "fits IFNAMSIZ");
    }

    fn link(name: &str, kind: Option<&str>, alias: Option<&str>) -> Link {
        Link {
            index: 7,
            name: name.into(),
            mac: vec![0xee; 6],
            mtu: 1480,
            up: true,
            flags: 0,
            kind: kind.map(Into::into),
            alias: alias.map(Into::into),
            peer_index: None,
        }
    }

    #[test]
    fn who_holds_the_name() {
        let veth = |alias| link("calie3df4d89b13", Some("veth"), alias);
        let ours = veth(Some("podnet:new:eth0"));
        assert_eq!(holder(&ours, "new", "eth0"), Holder::This);
        let old = veth(Some("podnet:old:eth0"));
        assert_eq!(
            holder(&old, "new", "eth0"),
            Holder::Replaced { container: "old" }
        );
        for (what, l) in [
            ("no label", veth(None)),
            ("someone else's label", veth(Some("web frontend"))),
            (
                "another interface of this container",
                veth(Some("podnet:new:eth1")),
            ),
            (
                "not a veth",
                link("calie3df4d89b13", Some("bridge"), Some("podnet:old:eth0")),
            ),
            (
                "a physical device",
                link("calie3df4d89b13", None, Some("podnet:old:eth0")),
            ),
            (
                "not a cali* name",
                link("eth7", Some("veth"), Some("podnet:old:eth0")),
            ),
        ] {
            assert_eq!(holder(&l, "new", "eth0"), Holder::Foreign, "{what}");
        }
    }

    #[test]
    fn alias_round_trip() {
        let a = attachment_alias("c0ffee.1", "eth0");
        assert_eq!(parse_alias(&a), Some(("c0ffee.1", "eth0")));
        assert_eq!(parse_alias("something else"), None);
    }
}
