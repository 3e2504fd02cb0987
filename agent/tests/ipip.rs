//! The agent with real IPIP (`tunl0`). Needs a kernel with IPIP: `cargo xtask test` runs these
//! natively where the kernel has it and otherwise inside `cargo xtask vm`.

mod common;

use common::{add_pod, ping, wait_for, Cluster};
use podnet_netlink::AGENT_ROUTE_PROTOCOL;
use std::time::Duration;

/// Node 1's route to node 2's block is `via 192.168.110.102 dev tunl0 onlink`.
fn assert_via_tunl0_to_node2(routes: &[podnet_netlink::Route], tunl0: u32) {
    let to2 = routes
        .iter()
        .find(|r| r.dst.to_string() == "10.233.92.0/24")
        .expect("a route to node2's block");
    assert_eq!(
        (to2.gateway, to2.oif, to2.onlink),
        (Some("192.168.110.102".parse().unwrap()), Some(tunl0), true)
    );
}

#[test]
#[ignore = "needs root and a kernel with IPIP (cargo xtask test runs it in the VM)"]
fn ipip_cluster_routes_through_tunl0_and_pods_reach_across() {
    let mut c = Cluster::new("ipip", 3);
    c.start_all("ipip");
    c.wait_converged(Duration::from_secs(30));
    let mut nl = c.netlink(0);
    let tunl = nl.link("tunl0").unwrap().expect("tunl0");
    assert_eq!((tunl.kind.as_deref(), tunl.mtu), (Some("ipip"), 1480));
    let addrs: Vec<String> = nl
        .addresses()
        .unwrap()
        .into_iter()
        .filter(|a| a.index == tunl.index)
        .map(|a| a.net.to_string())
        .collect();
    assert_eq!(addrs, ["10.233.91.0/32"], "the block's first address");
    assert_via_tunl0_to_node2(&c.owned_routes(0), tunl.index);
    assert_eq!(
        std::fs::read_to_string(c.nodes[0].state.join("mtu"))
            .unwrap()
            .trim(),
        "1480"
    );
    let (a, _) = add_pod(&c, 0, "pod-a");
    let (_b, ip_b) = add_pod(&c, 1, "pod-b");
    assert!(
        ping(&a, &ip_b),
        "pod on node1 -> pod on node2 through tunl0"
    );
    // The CNI plugin took the MTU the agent published.
    let mut p = a.run(podnet_netlink::Netlink::open).unwrap().unwrap();
    assert_eq!(p.link("eth0").unwrap().unwrap().mtu, 1480);
    nl.delete_route("10.233.93.0/24".parse().unwrap(), AGENT_ROUTE_PROTOCOL)
        .unwrap();
    let took = wait_for(Duration::from_secs(10), "the route is back", || {
        c.owned_routes(0)
            .iter()
            .any(|r| r.dst.to_string() == "10.233.93.0/24")
    });
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// BGP routing with IPIP, as the seed's cluster runs: BIRD installs `via <node> dev tunl0
/// onlink` (stock BIRD's ifname/onlink/gw attributes), and pods reach across.
#[test]
#[ignore = "needs root and a kernel with IPIP (cargo xtask test runs it in the VM)"]
fn ipip_bgp_routes_are_birds_via_tunl0_onlink() {
    let mut c = Cluster::new("ipipbgp", 3);
    c.agent_flags = vec!["--routing".into(), "bgp".into()];
    c.start_all("ipip");
    wait_for(
        Duration::from_secs(60),
        "BIRD routes to every block",
        || (0..3).all(|i| c.bird_routes(i).len() == 3),
    );
    let tunl = c.netlink(0).link("tunl0").unwrap().expect("tunl0");
    let r = c.bird_routes(0);
    assert_via_tunl0_to_node2(&r, tunl.index);
    assert!(r
        .iter()
        .any(|r| r.dst.to_string() == "10.233.91.0/24"
            && r.kind == podnet_netlink::RouteKind::Blackhole));
    assert!(c.owned_routes(0).is_empty(), "no agent routes in BGP mode");
    let (a, _) = add_pod(&c, 0, "pod-a");
    let (_b, ip_b) = add_pod(&c, 2, "pod-b");
    assert!(ping(&a, &ip_b), "through tunl0 on BIRD's route");
}

/// True inside `cargo xtask vm` (its kernel command line names the repository).
fn in_podnet_vm() -> bool {
    std::fs::read_to_string("/proc/cmdline").is_ok_and(|c| c.contains("podnet.repo="))
}

/// `name`'s file in the VM's kernel tree (the repository is mounted in the VM).
fn vm_module(name: &str) -> std::path::PathBuf {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let release = release.trim();
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../target/vm/kernel-{release}/lib/modules/{release}/kernel/net/netfilter/{name}.ko"
    ))
}

/// A busybox applet (the VM's `cargo xtask vm` needs busybox; kmod may be missing).
fn busybox(args: &[&str]) -> bool {
    match std::process::Command::new("/bin/busybox")
        .args(args)
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!("busybox {args:?}: {}", String::from_utf8_lossy(&o.stderr));
            false
        }
        Err(e) => {
            eprintln!("busybox {args:?}: {e}");
            false
        }
    }
}

/// A kernel without nf_tables masquerade: the agent stops at start-up naming the modules
/// while a pool has natOutgoing, and runs (without its table) once none has. It unloads
/// `nft_masq`, which no test may do to the host's kernel, so it runs only in the VM (named
/// `ipip_vm_`: `cargo xtask test` sends these there even where the host has IPIP).
#[test]
#[ignore = "unloads a kernel module: runs only in the VM (cargo xtask test puts it there)"]
fn ipip_vm_without_nat_modules_the_agent_stops_unless_natoutgoing_is_off() {
    assert!(
        in_podnet_vm(),
        "this test unloads nft_masq: it runs only inside `cargo xtask vm`"
    );
    let ko = vm_module("nft_masq");
    assert!(ko.exists(), "{} is missing", ko.display());
    // Namespaces of earlier tests may still hold masquerade rules for a moment.
    wait_for(Duration::from_secs(20), "rmmod nft_masq", || {
        busybox(&["rmmod", "nft_masq"])
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut c = Cluster::new("nonat", 1);
        let pool = common::POOL.parse().unwrap();
        c.with_store(|s| {
            let spec = podnet_ipam::PoolSpec::new(pool, 24, false, Default::default()).unwrap();
            podnet_ipam::pools::create(s, &spec).unwrap()
        });
        let mut agent = c
            .agent_command(0, "ipip", &[])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(30), "the agent to stop", || {
            agent.try_wait().unwrap().is_some()
        });
        let out = agent.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the agent must stop: {said}");
        assert!(
            said.contains("this kernel cannot masquerade pod traffic") && said.contains("nft_masq"),
            "a start-up error naming the modules: {said}"
        );
        c.with_store(|s| podnet_ipam::pools::set_nat_outgoing(s, pool, false).unwrap());
        c.start(0, "ipip");
        wait_for(
            Duration::from_secs(30),
            "the agent to run without its table",
            || {
                c.log(0).contains(
                    "no pool has natOutgoing, so the agent runs without its nftables table",
                )
            },
        );
        assert!(
            c.nodes[0]
                .agent
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
                .is_none(),
            "the agent keeps running: {}",
            c.log(0)
        );
        c.kill(0);
    }));
    assert!(
        busybox(&["insmod", ko.to_str().unwrap()]),
        "insmod {} back",
        ko.display()
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
