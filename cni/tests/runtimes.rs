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
    fifty(Node::new("fifty"));
}

#[test]
#[ignore = "needs root"]
fn fifty_pods_at_once_on_etcd() {
    fifty(Node::with_etcd("fiftyetcd"));
}

fn fifty(node: Node) {
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
fn chains_with_tuning(node: Node) {
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
fn podman_style_calls(node: Node) {
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

/// etcd dies in the middle of a burst of ADDs: each ADD either succeeds fully or fails with
/// code 11 and leaves no veth, route or pod interface; after the runtime's DEL of the failed
/// ones (as libcni does after a failed ADD), no handle is left for them either.
#[test]
#[ignore = "needs root"]
fn etcd_stopped_during_a_burst_of_adds() {
    let mut node = Node::with_etcd("burst");
    let conf = node.conf("1.0.0", json!({}));
    let pods: Vec<_> = (0..24).map(|i| node.pod(&format!("b{i}"))).collect();
    let etcd_pid = node.etcd.as_ref().unwrap().id() as i32;
    let results: Vec<(usize, i32, serde_json::Value)> = std::thread::scope(|s| {
        let runs: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(10 * i as u64));
                    let r = node.cni("ADD", &format!("ctr-{i}"), Some(p), &[], conf);
                    let j = if r.stdout.is_empty() {
                        serde_json::Value::Null
                    } else {
                        r.json()
                    };
                    (i, r.code, j)
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(80));
        // SAFETY: kill(2) on the etcd this test started (reaped by stop_etcd below).
        unsafe {
            libc::kill(etcd_pid, libc::SIGKILL);
        }
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let ok: Vec<usize> = results
        .iter()
        .filter(|(_, c, _)| *c == 0)
        .map(|(i, _, _)| *i)
        .collect();
    let failed: Vec<usize> = results
        .iter()
        .filter(|(_, c, _)| *c != 0)
        .map(|(i, _, _)| *i)
        .collect();
    assert!(
        !failed.is_empty(),
        "etcd went down after every ADD: the test proved nothing"
    );
    for (i, code, j) in &results {
        if *code != 0 {
            assert_eq!(j["code"], 11, "pod {i}: {j}");
            let mut p = pods[*i]
                .run(podnet_netlink::Netlink::open)
                .unwrap()
                .unwrap();
            assert!(
                p.link("eth0").unwrap().is_none(),
                "pod {i} kept an interface"
            );
        }
    }
    assert_eq!(
        node.cali_links().len(),
        ok.len(),
        "only the successful ADDs have veths"
    );
    assert_eq!(node.pod_routes().len(), ok.len());
    node.stop_etcd();
    node.start_etcd();
    for i in &failed {
        node.cni("DEL", &format!("ctr-{i}"), Some(&pods[*i]), &[], &conf)
            .ok();
    }
    let mut left = node.handles();
    left.sort();
    let mut want: Vec<String> = ok.iter().map(|i| format!("podnet.ctr-{i}.eth0")).collect();
    want.sort();
    assert_eq!(left, want);
}

backends!(chains_with_tuning, podman_style_calls);
