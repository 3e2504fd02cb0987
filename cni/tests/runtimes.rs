//! What real runtimes do: many ADDs at once, delegation to another IPAM plugin, chaining with
//! another plugin that reads our prevResult, and podman's CNI_ARGS.

mod common;

use common::{ping, Node};
use serde_json::json;
use std::collections::HashSet;

const PODS: usize = 50;

/// 50 ADDs at once (separate processes, as runtimes run them) in one node: 50 distinct
/// addresses, every pod reachable from the node; then 50 DELs at once leave nothing.
#[test]
#[ignore = "needs root"]
fn fifty_pods_at_once() {
    let node = Node::new("fifty");
    let conf = node.conf("1.0.0", json!({}));
    let pods: Vec<_> = (0..PODS).map(|i| node.pod(&format!("p{i}"))).collect();
    let addresses: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    node.cni("ADD", &format!("ctr-{i}"), Some(p), &[], conf)
                        .address()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let distinct: HashSet<_> = addresses.iter().collect();
    assert_eq!(distinct.len(), PODS);
    assert_eq!(node.cali_links().len(), PODS);
    assert_eq!(node.pod_routes().len(), PODS);
    for a in &addresses {
        assert!(ping(&node.ns, a), "node -> pod {a}");
    }
    std::thread::scope(|s| {
        for (i, p) in pods.iter().enumerate() {
            let (node, conf) = (&node, &conf);
            s.spawn(move || {
                node.cni("DEL", &format!("ctr-{i}"), Some(p), &[], conf)
                    .ok()
            });
        }
    });
    assert!(node.cali_links().is_empty());
    assert!(node.pod_routes().is_empty());
    assert!(node.handles().is_empty());
}

#[test]
#[ignore = "needs root"]
fn delegates_to_host_local_and_releases_with_it() {
    let node = Node::new("hostlocal");
    let data = node.dir.path().join("host-local");
    let conf = node.conf(
        "1.0.0",
        json!({"ipam": {"type": "host-local", "ranges": [[{"subnet": "10.250.0.0/24"}]], "dataDir": data}}),
    );
    let pod = node.pod("p");
    let ip = node.cni("ADD", "ctr-hl", Some(&pod), &[], &conf).address();
    assert!(ip.starts_with("10.250.0."), "{ip}");
    assert!(
        data.join("k8s-pod-network").join(&ip).exists(),
        "host-local recorded it"
    );
    assert!(ping(&pod, common::NODE_IP));
    node.cni("DEL", "ctr-hl", Some(&pod), &[], &conf).ok();
    assert!(
        !data.join("k8s-pod-network").join(&ip).exists(),
        "host-local released it"
    );
    assert!(node.cali_links().is_empty());
}

/// A conflist of podnet then Debian's `tuning`: tuning gets podnet's result as prevResult,
/// sets a sysctl on the pod interface, and passes the result on.
#[test]
#[ignore = "needs root"]
fn chains_with_tuning() {
    let node = Node::new("chain");
    let pod = node.pod("p");
    let ours = node
        .cni(
            "ADD",
            "ctr-t",
            Some(&pod),
            &[],
            &node.conf("1.0.0", json!({})),
        )
        .ok();
    let tuning = json!({
        "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "tuning",
        "sysctl": {"net.ipv4.conf.eth0.arp_announce": "2"},
        "prevResult": ours,
    });
    let mut c = std::process::Command::new("nsenter");
    c.arg(format!("--net={}", node.path()))
        .arg("/usr/lib/cni/tuning")
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "ctr-t")
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tuning.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let passed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(passed["ips"], ours["ips"]);
    assert_eq!(passed["interfaces"][1]["name"], "eth0");
    let set = pod
        .run(|| podnet_netlink::sysctl::read_conf("ipv4", "eth0", "arp_announce"))
        .unwrap()
        .unwrap();
    assert_eq!(set, "2");
}

/// podman 4 (CNI backend): VERSION first, CNI_ARGS with only K8S_POD_NAME, DEL without
/// prevResult after a failed ADD, DEL on stop.
#[test]
#[ignore = "needs root"]
fn podman_style_calls() {
    let node = Node::new("podman");
    let conf = node.conf("1.0.0", json!({}));
    node.cni("VERSION", "", None, &[("CNI_NETNS", "dummy")], &conf)
        .ok();
    let pod = node.pod("p");
    let args = [("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web")];
    node.cni("ADD", "4c0ffee", Some(&pod), &args, &conf).ok();
    let host = node.cali_links();
    assert_eq!(host.len(), 1);
    assert_eq!(host[0].alias.as_deref(), Some("podnet:4c0ffee:eth0"));
    // A failed ADD (second one) followed by DEL without prevResult, as podman does.
    assert_ne!(node.cni("ADD", "4c0ffee", Some(&pod), &args, &conf).code, 0);
    node.cni("DEL", "4c0ffee", Some(&pod), &args, &conf).ok();
    assert!(node.cali_links().is_empty() && node.handles().is_empty());
}
