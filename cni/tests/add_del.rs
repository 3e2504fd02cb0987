//! ADD builds Calico's dataplane (checked in the kernel, not in our own answer), DEL removes
//! it whatever state it finds, CHECK notices differences, and packets flow.

mod common;

use common::{k8s, ping, Node, NODE_IP};
use podnet_netlink::{sysctl, RouteKind};
use serde_json::json;

fn add_builds_the_seed_pod_and_it_reaches_its_node(node: Node) {
    let pod = node.pod("ubuntu-test");
    let conf = node.conf("1.0.0", json!({}));
    let result = node
        .cni(
            "ADD",
            "ctr-ubuntu",
            Some(&pod),
            &[("CNI_ARGS", &k8s("default", "ubuntu-test"))],
            &conf,
        )
        .ok();

    // Pod side, read from the kernel.
    let mut p = pod.run(podnet_netlink::Netlink::open).unwrap().unwrap();
    let eth0 = p.link("eth0").unwrap().expect("eth0 in the pod");
    assert!(eth0.up);
    assert_eq!(eth0.mtu, 1480, "IPIP by default: uplink 1500 - 20");
    let addrs = p.addresses().unwrap();
    let mine: Vec<_> = addrs
        .iter()
        .filter(|a| a.index == eth0.index)
        .map(|a| a.net.to_string())
        .collect();
    assert_eq!(
        mine,
        ["10.233.99.0/32"],
        "first address of the pinned block, as a /32"
    );
    assert!(p.link("lo").unwrap().unwrap().up);
    let routes = p.routes().unwrap();
    let gw = routes
        .iter()
        .find(|r| r.dst.to_string() == "169.254.1.1/32")
        .expect("169.254.1.1 route");
    assert!(gw.scope_link && gw.oif == Some(eth0.index) && gw.gateway.is_none());
    let default = routes
        .iter()
        .find(|r| r.dst.prefix_len() == 0)
        .expect("default route");
    assert_eq!(
        (default.gateway, default.oif),
        (Some("169.254.1.1".parse().unwrap()), Some(eth0.index))
    );
    assert_eq!(
        pod.run(|| sysctl::read("net.ipv4.ip_forward"))
            .unwrap()
            .unwrap(),
        "0"
    );

    // Node side.
    let host = node.cali_links();
    assert_eq!(host.len(), 1);
    let cali = &host[0];
    assert_eq!(
        cali.name, "calie3df4d89b13",
        "sha1(default.ubuntu-test), as in the seed"
    );
    assert_eq!(
        (cali.mac_string().as_str(), cali.mtu, cali.up),
        ("ee:ee:ee:ee:ee:ee", 1480, true)
    );
    for (setting, want) in [
        ("proxy_arp", "1"),
        ("forwarding", "1"),
        ("route_localnet", "1"),
    ] {
        let got = node
            .ns
            .run(|| sysctl::read_conf("ipv4", &cali.name, setting))
            .unwrap()
            .unwrap();
        assert_eq!(got, want, "{setting}");
    }
    let delay = node
        .ns
        .run(|| sysctl::read(&format!("net.ipv4.neigh.{}.proxy_delay", cali.name)))
        .unwrap()
        .unwrap();
    assert_eq!(delay, "0");
    let r = node.pod_routes();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].dst.to_string().as_str(), r[0].oif, r[0].scope_link),
        ("10.233.99.0/32", Some(cali.index), true)
    );

    // The result names both interfaces and points the IP at the pod's.
    assert_eq!(result["interfaces"][0]["name"], "calie3df4d89b13");
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(result["interfaces"][1]["sandbox"], pod.path());
    assert_eq!(result["interfaces"][1]["mac"], eth0.mac_string());
    assert_eq!(
        result["ips"][0],
        json!({"address": "10.233.99.0/32", "interface": 1})
    );

    assert!(
        ping(&pod, NODE_IP),
        "the pod reaches its node through proxy ARP for 169.254.1.1"
    );

    // Nothing but the reply on stdout; the log file has the story.
    let log = std::fs::read_to_string(node.log()).unwrap();
    assert!(log.contains("pod attached"), "{log}");
}

fn two_pods_on_one_node_reach_each_other(node: Node) {
    let a = node.pod("a");
    let b = node.pod("b");
    let conf = node.conf("1.0.0", json!({}));
    let ip_a = node.cni("ADD", "ctr-a", Some(&a), &[], &conf).address();
    let ip_b = node.cni("ADD", "ctr-b", Some(&b), &[], &conf).address();
    assert_ne!(ip_a, ip_b);
    assert!(ping(&a, &ip_b), "{ip_a} -> {ip_b}");
    assert!(ping(&b, &ip_a), "{ip_b} -> {ip_a}");
}

fn results_come_in_the_version_asked_for(node: Node) {
    for (i, v) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .enumerate()
    {
        let pod = node.pod(&format!("v{i}"));
        let r = node
            .cni(
                "ADD",
                &format!("ctr-v{i}"),
                Some(&pod),
                &[],
                &node.conf(v, json!({})),
            )
            .ok();
        assert_eq!(r["cniVersion"], *v);
        assert_eq!(r["ips"][0]["interface"], 1);
        assert_eq!(
            r["ips"][0].get("version").is_some(),
            v.starts_with('0'),
            "{v}: {r}"
        );
        assert_eq!(
            r["interfaces"][1].get("mtu").is_some(),
            *v == "1.1.0",
            "{v}: {r}"
        );
    }
}

fn del_cleans_up_whatever_state_it_finds(node: Node) {
    let conf = node.conf("1.0.0", json!({}));
    let with_prev = |prev: &serde_json::Value| {
        let mut c: serde_json::Value = serde_json::from_str(&conf).unwrap();
        c["prevResult"] = prev.clone();
        c.to_string()
    };
    // Normal DEL with prevResult, then a repeat, then a repeat without netns.
    let pod = node.pod("one");
    let prev = node.cni("ADD", "ctr-1", Some(&pod), &[], &conf).ok();
    assert_eq!(
        node.cni("DEL", "ctr-1", Some(&pod), &[], &with_prev(&prev))
            .ok(),
        serde_json::Value::Null
    );
    assert!(
        node.cali_links().is_empty() && node.pod_routes().is_empty() && node.handles().is_empty()
    );
    node.cni("DEL", "ctr-1", Some(&pod), &[], &with_prev(&prev))
        .ok();
    node.cni("DEL", "ctr-1", None, &[], &conf).ok();

    // The pod's namespace is already gone: the host end went with it; the address is freed.
    let pod = node.pod("gone");
    node.cni("ADD", "ctr-2", Some(&pod), &[], &conf).ok();
    let path = pod.path().to_string();
    drop(pod);
    node.cni("DEL", "ctr-2", None, &[("CNI_NETNS", &path)], &conf)
        .ok();
    assert!(node.handles().is_empty());
    assert!(node.cali_links().is_empty());

    // Empty prevResult and no netns at all.
    let pod = node.pod("three");
    node.cni("ADD", "ctr-3", Some(&pod), &[], &conf).ok();
    node.cni(
        "DEL",
        "ctr-3",
        None,
        &[],
        &with_prev(&serde_json::json!({})),
    )
    .ok();
    assert!(
        node.cali_links().is_empty(),
        "the host end is found by its name and label"
    );
    assert!(node.pod_routes().is_empty() && node.handles().is_empty());

    // A crashed ADD left an address but no interfaces.
    node.with_store(|s| {
        let pool = podnet_ipam::PoolSpec::new(
            "10.233.64.0/18".parse().unwrap(),
            24,
            false,
            Default::default(),
        )
        .unwrap();
        podnet_ipam::Ipam::new(s, pool)
            .allocate("sung-ubuntu04", "podnet.ctr-4.eth0")
            .unwrap();
    });
    let pod = node.pod("four");
    node.cni("DEL", "ctr-4", Some(&pod), &[], &conf).ok();
    assert!(node.handles().is_empty());
}

fn check_passes_on_a_fresh_pod_and_names_what_changed(node: Node) {
    let pod = node.pod("p");
    let conf = node.conf("1.0.0", json!({}));
    let prev = node.cni("ADD", "ctr-c", Some(&pod), &[], &conf).ok();
    let mut c: serde_json::Value = serde_json::from_str(&conf).unwrap();
    c["prevResult"] = prev.clone();
    let checked = c.to_string();
    node.cni("CHECK", "ctr-c", Some(&pod), &[], &checked).ok();

    // Someone deletes the pod's default route.
    let mut p = pod.run(podnet_netlink::Netlink::open).unwrap().unwrap();
    p.delete_route("0.0.0.0/0".parse().unwrap(), podnet_netlink::ROUTE_PROTOCOL)
        .unwrap();
    let r = node.cni("CHECK", "ctr-c", Some(&pod), &[], &checked);
    assert_eq!(r.error_code(), 102);
    assert!(
        r.json()["msg"].as_str().unwrap().contains("default route"),
        "{}",
        r.stdout
    );

    // The node route to the pod is gone.
    let pod2 = node.pod("p2");
    let prev2 = node.cni("ADD", "ctr-d", Some(&pod2), &[], &conf).ok();
    let addr: ipnet::Ipv4Net = prev2["ips"][0]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    node.netlink()
        .delete_route(addr, podnet_netlink::ROUTE_PROTOCOL)
        .unwrap();
    c["prevResult"] = prev2;
    let r = node.cni("CHECK", "ctr-d", Some(&pod2), &[], &c.to_string());
    assert_eq!(r.error_code(), 102);
    assert!(
        r.json()["msg"]
            .as_str()
            .unwrap()
            .contains(&addr.to_string()),
        "{}",
        r.stdout
    );
    let none = node.cni("CHECK", "ctr-c", Some(&pod), &[], &conf);
    assert_eq!(none.error_code(), 102, "CHECK without prevResult");
    let node_default = node.netlink().routes().unwrap();
    assert!(
        node_default
            .iter()
            .any(|r| r.dst.prefix_len() == 0 && r.kind == RouteKind::Unicast),
        "the node's own default route is untouched"
    );
}

fn mtu_comes_from_config_then_the_agent_then_the_uplink(node: Node) {
    let a = node.pod("a");
    let r = node
        .cni(
            "ADD",
            "ctr-a",
            Some(&a),
            &[],
            &node.conf("1.1.0", json!({"mtu": 1400})),
        )
        .ok();
    assert_eq!(r["interfaces"][1]["mtu"], 1400);
    std::fs::create_dir_all(node.dir.path().join("state")).unwrap();
    std::fs::write(node.dir.path().join("state/mtu"), "1430\n").unwrap();
    let b = node.pod("b");
    let r = node
        .cni(
            "ADD",
            "ctr-b",
            Some(&b),
            &[],
            &node.conf("1.1.0", json!({})),
        )
        .ok();
    assert_eq!(
        r["interfaces"][1]["mtu"], 1430,
        "the agent's published MTU wins over the uplink"
    );
    std::fs::remove_file(node.dir.path().join("state/mtu")).unwrap();
    let c = node.pod("c");
    let r = node
        .cni(
            "ADD",
            "ctr-c",
            Some(&c),
            &[],
            &node.conf("1.1.0", json!({"encapsulation": "vxlan"})),
        )
        .ok();
    assert_eq!(r["interfaces"][1]["mtu"], 1450);
    let d = node.pod("d");
    let r = node
        .cni(
            "ADD",
            "ctr-d",
            Some(&d),
            &[],
            &node.conf("1.1.0", json!({"encapsulation": "none"})),
        )
        .ok();
    assert_eq!(r["interfaces"][1]["mtu"], 1500);
}

backends!(
    add_builds_the_seed_pod_and_it_reaches_its_node,
    two_pods_on_one_node_reach_each_other,
    results_come_in_the_version_asked_for,
    del_cleans_up_whatever_state_it_finds,
    check_passes_on_a_fresh_pod_and_names_what_changed,
    mtu_comes_from_config_then_the_agent_then_the_uplink,
);
