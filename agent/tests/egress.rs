//! The agent's nftables table `ip podnet` against the real kernel: pods reach an outside host
//! masqueraded behind their node, pods on other nodes see each other's real addresses, the
//! table comes back after a flush or delete by hand within a second, follows natOutgoing
//! live, survives the agent, and leaves every other table alone. `nft` is used to look.

mod common;

use common::{add_pod, wait_for, Cluster};
use podnet_netlink::netns::OwnedNetns;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

/// The stand-in for the internet: an address on the fabric namespace's loopback, a
/// documentation address (RFC 5737). The fabric routes nothing to the pod pool.
const OUTSIDE: &str = "198.51.100.7";

fn cluster(tag: &str) -> Cluster {
    let mut c = Cluster::new(tag, 2);
    c.fabric
        .run(|| -> podnet_netlink::Result<()> {
            let mut nl = podnet_netlink::Netlink::open()?;
            let br = nl.link("br0")?.expect("br0");
            nl.add_address(br.index, "192.168.0.1/16".parse().unwrap())?;
            let lo = nl.link("lo")?.expect("lo");
            nl.set_up(lo.index)?;
            nl.add_address(lo.index, format!("{OUTSIDE}/32").parse().unwrap())?;
            Ok(())
        })
        .unwrap()
        .unwrap();
    c.start_all("vxlan");
    c.wait_converged(Duration::from_secs(10));
    c
}

/// A running two-node cluster and a server on the outside host at `port`.
fn cluster_with_server(
    tag: &str,
    port: u16,
) -> (Cluster, String, std::sync::mpsc::Receiver<SocketAddr>) {
    let c = cluster(tag);
    let outside = format!("{OUTSIDE}:{port}");
    let server = serve(&c.fabric, &outside);
    (c, outside, server)
}

fn nft(ns: &OwnedNetns, args: &[&str]) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .arg("nft")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn podnet_table(c: &Cluster, i: usize) -> String {
    nft(&c.nodes[i].ns, &["list", "table", "ip", "podnet"]).1
}

/// A TCP server in `ns`; each connection's peer address is sent back on the channel.
fn serve(ns: &OwnedNetns, addr: &str) -> std::sync::mpsc::Receiver<SocketAddr> {
    let addr: SocketAddr = addr.parse().unwrap();
    let listener = ns.run(move || TcpListener::bind(addr)).unwrap().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let peer = s.peer_addr().unwrap();
            let _ = s.write_all(peer.ip().to_string().as_bytes());
            if tx.send(peer).is_err() {
                return;
            }
        }
    });
    rx
}

/// Connects from `ns` to `to`; the address the server saw, or `None` if unreachable.
fn seen_from(ns: &OwnedNetns, to: &str) -> Option<String> {
    let to: SocketAddr = to.parse().unwrap();
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(800)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut seen = String::new();
        s.read_to_string(&mut seen).ok()?;
        Some(seen)
    })
    .unwrap()
}

#[test]
#[ignore = "needs root"]
fn pods_go_out_as_their_node_and_reach_each_other_as_themselves() {
    let (c, outside, _server) = cluster_with_server("egress", 8080);
    let (a, ip_a) = add_pod(&c, 0, "pod-a");
    let (b, ip_b) = add_pod(&c, 1, "pod-b");
    wait_for(Duration::from_secs(5), "table ip podnet on node1", || {
        podnet_table(&c, 0).contains("masquerade fully-random")
    });
    // Outside sees the node, not the pod (the fabric has no route back to the pool).
    assert_eq!(
        seen_from(&a, &outside).as_deref(),
        Some(c.nodes[0].ip.as_str())
    );
    assert_eq!(
        seen_from(&b, &outside).as_deref(),
        Some(c.nodes[1].ip.as_str())
    );
    // Pod to pod across nodes: the real source.
    let _pod_server = serve(&b, &format!("{ip_b}:8081"));
    assert_eq!(
        seen_from(&a, &format!("{ip_b}:8081")).as_deref(),
        Some(ip_a.as_str())
    );
    // The node's own traffic out is its own.
    assert_eq!(
        seen_from(&c.nodes[0].ns, &outside).as_deref(),
        Some(c.nodes[0].ip.as_str())
    );
    let listed = podnet_table(&c, 0);
    assert!(
        listed.contains("oifname \"vxlan.calico\" fib saddr type local ip saddr != 10.233.91.0"),
        "{listed}"
    );
    let (ok, status, err) = c.agent_cli(0, &["status", "--node-name", "node1"], true);
    assert!(ok, "{err}");
    assert!(
        status.contains("egress: nftables table ip podnet\n"),
        "{status}"
    );
    assert!(
        status.contains("masquerade traffic from pods of 10.233.64.0/18"),
        "{status}"
    );
    let metrics = c.http_get(0, "/metrics").unwrap_or_default();
    assert!(
        metrics.contains("podnet_agent_nftables_syncs_total 1"),
        "{metrics}"
    );
}

#[test]
#[ignore = "needs root"]
fn the_table_comes_back_after_a_flush_or_delete_and_others_are_untouched() {
    // Someone else's table, there before the agents start.
    let mut c = Cluster::new("eg-hand", 1);
    let ns = &c.nodes[0].ns;
    assert!(nft(ns, &["add", "table", "ip", "theirs"]).0);
    assert!(
        nft(
            ns,
            &[
                "add",
                "chain",
                "ip",
                "theirs",
                "post",
                "{ type nat hook postrouting priority 50; }"
            ]
        )
        .0
    );
    assert!(
        nft(
            ns,
            &[
                "add",
                "rule",
                "ip",
                "theirs",
                "post",
                "ip daddr 192.0.2.0/24 counter accept"
            ]
        )
        .0
    );
    let theirs = nft(ns, &["-j", "list", "table", "ip", "theirs"]).1;
    c.start_all("vxlan");
    wait_for(Duration::from_secs(10), "table ip podnet", || {
        podnet_table(&c, 0).contains("masquerade fully-random")
    });
    let want = podnet_table(&c, 0);
    let ns = &c.nodes[0].ns;
    assert!(nft(ns, &["flush", "table", "ip", "podnet"]).0);
    let took = wait_for(
        Duration::from_secs(1),
        "the flushed table is rewritten",
        || podnet_table(&c, 0) == want,
    );
    eprintln!("flush undone in {took:?}");
    assert!(nft(ns, &["delete", "table", "ip", "podnet"]).0);
    let took = wait_for(
        Duration::from_secs(1),
        "the deleted table is rewritten",
        || podnet_table(&c, 0) == want,
    );
    eprintln!("delete undone in {took:?}");
    assert!(
        nft(
            ns,
            &[
                "add",
                "rule",
                "ip",
                "podnet",
                "nat",
                "ip saddr 10.0.0.0/8 accept"
            ]
        )
        .0
    );
    wait_for(
        Duration::from_secs(1),
        "a rule added by hand is removed",
        || podnet_table(&c, 0) == want,
    );
    assert_eq!(nft(ns, &["-j", "list", "table", "ip", "theirs"]).1, theirs);

    // Killed: the table stays. Restarted: it is not written again (it is already right).
    let writes = |c: &Cluster| c.log(0).matches("nftables table ip podnet written").count();
    let before = writes(&c);
    c.kill(0);
    assert_eq!(podnet_table(&c, 0), want);
    c.start(0, "vxlan");
    wait_for(Duration::from_secs(10), "the agent is back", || {
        c.log(0).matches("node registered").count() == 2
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(podnet_table(&c, 0), want);
    assert_eq!(
        writes(&c),
        before,
        "a restart does not rewrite a right table"
    );
    assert_eq!(
        nft(&c.nodes[0].ns, &["-j", "list", "table", "ip", "theirs"]).1,
        theirs
    );
}

#[test]
#[ignore = "needs root"]
fn nat_outgoing_follows_the_pool_live() {
    let (c, outside, _server) = cluster_with_server("eg-live", 8082);
    let (a, pod_ip) = add_pod(&c, 0, "pod-live");
    wait_for(Duration::from_secs(5), "masquerade on", || {
        seen_from(&a, &outside).as_deref() == Some(c.nodes[0].ip.as_str())
    });
    let pool = common::POOL.parse().unwrap();
    c.with_store(|s| podnet_ipam::pools::set_nat_outgoing(s, pool, false).unwrap());
    let took = wait_for(
        Duration::from_secs(1),
        "the masquerade rule is gone",
        || !podnet_table(&c, 0).contains("masquerade fully-random"),
    );
    eprintln!("natOutgoing off applied in {took:?}");
    // No masquerade: the outside cannot answer a pod address.
    assert_eq!(seen_from(&a, &outside), None);
    assert!(
        podnet_table(&c, 0).contains("oifname \"vxlan.calico\""),
        "the tunnel rule stays"
    );
    c.with_store(|s| podnet_ipam::pools::set_nat_outgoing(s, pool, true).unwrap());
    wait_for(Duration::from_secs(1), "masquerade back on", || {
        podnet_table(&c, 0).contains("masquerade fully-random")
    });
    assert_eq!(
        seen_from(&a, &outside).as_deref(),
        Some(c.nodes[0].ip.as_str())
    );

    // natOutgoingExclusions: IPPoolsAndHostIPs leaves traffic to other nodes alone.
    let node2 = format!("{}:8083", c.nodes[1].ip);
    let _node2_server = serve(&c.nodes[1].ns, &node2);
    assert_eq!(
        seen_from(&a, &node2).as_deref(),
        Some(c.nodes[0].ip.as_str())
    );
    c.with_store(|s| {
        podnet_ipam::pools::set_egress(
            s,
            podnet_ipam::pools::EgressConfig {
                nat_outgoing_exclusions: podnet_ipam::pools::NatExclusions::IPPoolsAndHostIPs,
            },
        )
        .unwrap()
    });
    wait_for(Duration::from_secs(1), "node addresses excluded", || {
        podnet_table(&c, 0).contains("ip daddr != @node-addresses")
    });
    assert_eq!(seen_from(&a, &node2).as_deref(), Some(pod_ip.as_str()));
}
