//! A pod recreated under the same name (a new UID and container) while its old sandbox still
//! exists: ADD frees the host-side name by deleting the old attachment's veth, leaves its
//! address held, and the old container's DEL later releases that address without touching
//! the new pod. A device podnet did not make for another container is still refused.

mod common;

use common::{ping, Node, NODE_IP};
use podnet_netlink::{Netlink, Netns};
use serde_json::json;
use std::process::Command;

/// What containerd sends for a pod sandbox.
fn args(pod: &str, uid: &str, container: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};\
         K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID={uid}"
    )
}

fn with_prev(conf: &str, prev: &serde_json::Value) -> String {
    let mut c: serde_json::Value = serde_json::from_str(conf).unwrap();
    c["prevResult"] = prev.clone();
    c.to_string()
}

fn has_eth0(pod: &Netns) -> bool {
    let mut nl = pod.run(Netlink::open).unwrap().unwrap();
    nl.link("eth0").unwrap().is_some()
}

fn a_recreated_pod_replaces_the_old_veth_and_the_old_del_spares_it(node: Node) {
    let conf = node.conf("1.0.0", json!({}));
    let old_ns = node.pod("old");
    let new_ns = node.pod("new");
    let old_args = args("web-0", "uid-1", "ctr-old");
    let new_args = args("web-0", "uid-2", "ctr-new");
    let old = node
        .cni(
            "ADD",
            "ctr-old",
            Some(&old_ns),
            &[("CNI_ARGS", &old_args)],
            &conf,
        )
        .ok();
    let old_ip = old["ips"][0]["address"].as_str().unwrap().to_string();
    let host_name = old["interfaces"][0]["name"].as_str().unwrap().to_string();

    let added = node.cni(
        "ADD",
        "ctr-new",
        Some(&new_ns),
        &[("CNI_ARGS", &new_args)],
        &conf,
    );
    let new = added.ok();
    let new_ip = new["ips"][0]["address"].as_str().unwrap().to_string();
    assert_ne!(new_ip, old_ip, "the old sandbox's address is not reused");
    assert_eq!(new["interfaces"][0]["name"], host_name.as_str());
    let mut handles = node.handles();
    handles.sort();
    assert_eq!(
        handles,
        ["podnet.ctr-new.eth0", "podnet.ctr-old.eth0"],
        "the old attachment's address stays held by its own handle"
    );
    let links = node.cali_links();
    assert_eq!(links.len(), 1, "{links:?}");
    let cali = &links[0];
    assert_eq!(
        (cali.name.as_str(), cali.alias.as_deref()),
        (host_name.as_str(), Some("podnet:ctr-new:eth0"))
    );
    assert!(!has_eth0(&old_ns), "the old pair went with its host end");
    let routes = node.pod_routes();
    assert_eq!(
        routes.len(),
        1,
        "the old /32 went with its veth: {routes:?}"
    );
    assert_eq!(
        (routes[0].dst.to_string(), routes[0].oif),
        (new_ip.clone(), Some(cali.index))
    );
    let log = std::fs::read_to_string(node.log()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("ctr-old") && l.contains(&host_name)),
        "no warning naming the old container:\n{log}"
    );
    assert!(ping(&new_ns, NODE_IP), "the new pod works");

    // The old sandbox goes: its DEL (prevResult names the same host-side name) releases its
    // address and leaves the new pod's veth and route alone. Twice, as runtimes retry.
    let old_conf = with_prev(&conf, &old);
    for _ in 0..2 {
        node.cni(
            "DEL",
            "ctr-old",
            Some(&old_ns),
            &[("CNI_ARGS", &old_args)],
            &old_conf,
        )
        .ok();
    }
    assert_eq!(node.handles(), ["podnet.ctr-new.eth0"]);
    let after = node.cali_links();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].index, after[0].alias.as_deref()),
        (cali.index, Some("podnet:ctr-new:eth0"))
    );
    assert_eq!(node.pod_routes().len(), 1);
    assert!(ping(&new_ns, NODE_IP), "the new pod still works");
    let new_conf = with_prev(&conf, &new);
    node.cni(
        "CHECK",
        "ctr-new",
        Some(&new_ns),
        &[("CNI_ARGS", &new_args)],
        &new_conf,
    )
    .ok();
    node.cni(
        "DEL",
        "ctr-new",
        Some(&new_ns),
        &[("CNI_ARGS", &new_args)],
        &new_conf,
    )
    .ok();
    assert!(node.handles().is_empty() && node.cali_links().is_empty());
    assert!(node.pod_routes().is_empty());
}

/// Runs `ip` inside the node.
fn ip(node: &Node, args: &[&str]) {
    let ok = Command::new("nsenter")
        .arg(format!("--net={}", node.path()))
        .arg("ip")
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip {args:?}");
}

fn a_device_podnet_did_not_make_for_another_container_is_refused(node: Node) {
    let conf = node.conf("1.0.0", json!({}));
    let pod = node.pod("p");
    let name = "calie3df4d89b13"; // sha1(default.ubuntu-test)
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "a veth without a label",
            &["type", "veth", "peer", "name", "foreign0"],
            "",
        ),
        (
            "a veth labelled by someone else",
            &["type", "veth", "peer", "name", "foreign0"],
            "web frontend",
        ),
        (
            "a bridge with podnet's label",
            &["type", "bridge"],
            "podnet:ctr-gone:eth0",
        ),
        (
            "a veth of another interface of this container",
            &["type", "veth", "peer", "name", "foreign0"],
            "podnet:ctr-x:eth1",
        ),
    ];
    for (what, kind, alias) in cases {
        let mut add = vec!["link", "add", "name", name];
        add.extend(kind);
        ip(&node, &add);
        if !alias.is_empty() {
            ip(&node, &["link", "set", "dev", name, "alias", alias]);
        }
        let r = node.cni(
            "ADD",
            "ctr-x",
            Some(&pod),
            &[("CNI_ARGS", &args("ubuntu-test", "uid-x", "ctr-x"))],
            &conf,
        );
        assert_eq!(r.error_code(), 103, "{what}: {}", r.stdout);
        let msg = r.json()["msg"].as_str().unwrap().to_string();
        assert!(msg.contains(name), "{what}: {msg}");
        let mut n = node.netlink();
        let left = n.link(name).unwrap().expect("the device is left alone");
        assert_eq!(left.alias.as_deref().unwrap_or(""), alias, "{what}");
        assert!(node.handles().is_empty() && !has_eth0(&pod), "{what}");
        n.delete_link(left.index).unwrap();
    }
}

backends!(
    a_recreated_pod_replaces_the_old_veth_and_the_old_del_spares_it,
    a_device_podnet_did_not_make_for_another_container_is_refused,
);
