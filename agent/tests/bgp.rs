//! BGP mode with real BIRD 2 in node namespaces: a mesh, route reflectors, a rack's router,
//! and the faults (BIRD killed, agent restarted, a node stopped, a route deleted by hand, a
//! bad setting written by hand). Times that the issue asks to report are printed.

mod common;

use common::{add_pod, ping, wait_for, wait_for_quietly, Backend, Cluster, BIRD_ROUTE_PROTOCOL};
use podnet_netlink::{Netlink, RouteKind, AGENT_ROUTE_PROTOCOL};
use std::time::{Duration, Instant};

/// A cluster of `n` nodes whose agents route by BGP.
fn bgp_cluster(tag: &str, n: usize) -> Cluster {
    let mut c = Cluster::new(tag, n);
    c.agent_flags = vec!["--routing".into(), "bgp".into()];
    c
}

/// The `(destination, gateway, device name, onlink)` of node `i`'s BIRD routes, sorted.
fn bird_table(c: &Cluster, i: usize) -> Vec<String> {
    let mut nl = c.netlink(i);
    let mut out: Vec<String> = c
        .bird_routes(i)
        .iter()
        .map(|r| match r.kind {
            RouteKind::Blackhole => format!("blackhole {}", r.dst),
            RouteKind::Unicast => {
                let dev = r
                    .oif
                    .and_then(|i| nl.link_by_index(i).ok().flatten())
                    .map(|l| l.name)
                    .unwrap_or_default();
                format!(
                    "{} via {} dev {dev}{}",
                    r.dst,
                    r.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    if r.onlink { " onlink" } else { "" }
                )
            }
        })
        .collect();
    out.sort();
    out
}

/// Waits until every node has BIRD routes to every block (its own as a blackhole).
fn wait_bgp_converged(c: &Cluster, timeout: Duration) -> Duration {
    let blocks: Vec<String> = c.nodes.iter().map(|n| n.block.clone()).collect();
    wait_for(
        timeout,
        "every node has a BIRD route to every block",
        || {
            (0..c.nodes.len()).all(|i| {
                let have: Vec<String> =
                    c.bird_routes(i).iter().map(|r| r.dst.to_string()).collect();
                blocks.iter().all(|b| have.contains(b))
            })
        },
    )
}

/// `podnet-agent LINE` (words split on spaces) in node `i`, with the cluster's datastore flags.
fn cli(c: &Cluster, i: usize, line: &str) -> (bool, String, String) {
    let args: Vec<&str> = line.split(' ').collect();
    c.agent_cli(i, &args, true)
}

fn bgp_status(c: &Cluster, i: usize) -> String {
    let state = c.nodes[i].state.display().to_string();
    let (ok, out, err) = c.agent_cli(i, &["bgp", "status", "--state-dir", &state], false);
    assert!(ok, "{out} {err}");
    out
}

fn established(c: &Cluster, i: usize) -> usize {
    bgp_status(c, i).matches("| Established |").count()
}

fn http_get(c: &Cluster, i: usize, path: &str) -> String {
    c.http_get(i, path).unwrap_or_default()
}

#[test]
#[ignore = "needs root"]
fn a_vxlan_mesh_learns_every_block_by_bgp_and_pods_talk() {
    let mut c = bgp_cluster("bgpvx", 3);
    c.start_all("vxlan");
    let took = wait_bgp_converged(&c, Duration::from_secs(30));
    eprintln!("3-node mesh: every block in every kernel {took:?} after start");
    assert_eq!(
        bird_table(&c, 0),
        [
            "10.233.92.0/24 via 10.233.92.0 dev vxlan.calico onlink",
            "10.233.93.0/24 via 10.233.93.0 dev vxlan.calico onlink",
            "blackhole 10.233.91.0/24",
        ]
    );
    for i in 0..3 {
        assert!(c.owned_routes(i).is_empty(), "the agent made routes itself");
    }
    wait_for(Duration::from_secs(20), "every session Established", || {
        (0..3).all(|i| established(&c, i) == 2)
    });
    let status = bgp_status(&c, 0);
    assert!(status.starts_with("BIRD is running (BIRD 2."), "{status}");
    assert!(
        status.contains("| 192.168.110.102 | node-to-node mesh | up "),
        "{status}"
    );
    if !wait_for_quietly(Duration::from_secs(5), || {
        http_get(&c, 0, "/readyz").contains(" 200 OK")
    }) {
        panic!("not ready: {}", http_get(&c, 0, "/readyz"));
    }
    let want = [
        "podnet_agent_bgp_sessions{state=\"Established\"} 2",
        "podnet_agent_bgp_routes_learned 2",
        "podnet_agent_bird_up 1",
    ];
    if !wait_for_quietly(Duration::from_secs(5), || {
        let m = http_get(&c, 0, "/metrics");
        want.iter().all(|w| m.contains(w))
    }) {
        panic!("{want:?} not in {}", http_get(&c, 0, "/metrics"));
    }

    let (a, _) = add_pod(&c, 0, "a");
    let (_b, b_ip) = add_pod(&c, 2, "b");
    assert!(ping(&a, &b_ip), "a pod on node1 reaches a pod on node3");

    let (ok, out, _) = cli(&c, 0, "status --node-name node1");
    assert!(ok, "{out}");
    assert!(out.contains("routing:       bgp"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("10.233.92.0/24 via 10.233.92.0 dev vxlan.calico onlink"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(" yes ") && row.ends_with(" bird"), "{row}");
}

#[test]
#[ignore = "needs root"]
fn unencapsulated_bgp_routes_are_plain_routes_via_the_nodes() {
    let mut c = bgp_cluster("bgpnone", 2);
    c.start_all("none");
    wait_bgp_converged(&c, Duration::from_secs(30));
    assert_eq!(
        bird_table(&c, 0),
        [
            "10.233.92.0/24 via 192.168.110.102 dev ens3",
            "blackhole 10.233.91.0/24"
        ]
    );
    let (a, _) = add_pod(&c, 0, "a");
    let (_b, b_ip) = add_pod(&c, 1, "b");
    assert!(ping(&a, &b_ip));
}

#[test]
#[ignore = "needs root"]
fn with_the_mesh_off_nodes_learn_through_a_route_reflector() {
    let mut c = bgp_cluster("bgprr", 4);
    for (line, want) in [
        ("bgp config --mesh off", "node-to-node mesh:  off"),
        (
            "bgp config --node node1 --rr-cluster-id 224.0.0.1",
            "route reflector (cluster id 224.0.0.1)",
        ),
    ] {
        let (ok, out, err) = cli(&c, 0, line);
        assert!(ok && out.contains(want), "{out} {err}");
    }
    c.start_all("vxlan");
    let took = wait_bgp_converged(&c, Duration::from_secs(30));
    eprintln!("4 nodes through one reflector: converged {took:?} after start");
    wait_for(Duration::from_secs(20), "sessions up", || {
        established(&c, 0) == 3 && (1..4).all(|i| established(&c, i) == 1)
    });
    let client = bgp_status(&c, 3);
    assert!(
        client.contains("| 192.168.110.101 | node specific | up "),
        "{client}"
    );
    assert!(!client.contains("node-to-node mesh"), "{client}");
    // A route between two clients went through the reflector, next hop kept.
    assert!(bird_table(&c, 3)
        .contains(&"10.233.92.0/24 via 10.233.92.0 dev vxlan.calico onlink".to_string()));
}

/// A rack's router: BIRD in the fabric namespace (AS 65001) as a global peer, mesh off, each
/// node in an AS of its own (so a route through the router carries no loop). Nodes learn each
/// other's blocks from it (next hop: the router), and pods talk through it.
#[test]
#[ignore = "needs root"]
fn nodes_peer_with_an_external_router() {
    let mut c = bgp_cluster("bgptor", 2);
    let router = RouterBird::start(
        &c,
        "192.168.0.1",
        65001,
        &[("192.168.110.101", 64601), ("192.168.110.102", 64602)],
    );
    for (node, asn) in [("node1", "64601"), ("node2", "64602")] {
        let (ok, out, err) = cli(&c, 0, &format!("bgp config --node {node} --as {asn}"));
        assert!(
            ok && out.contains(&format!("node {node}:  AS {asn}")),
            "{out} {err}"
        );
    }
    let (ok, out, err) = cli(&c, 0, "bgp peer add tor --peer-ip 192.168.0.1 --as 65001");
    assert!(ok, "{out} {err}");
    let (ok, _, err) = cli(&c, 0, "bgp config --mesh off");
    assert!(ok, "{err}");
    c.start_all("none");
    if !wait_for_quietly(Duration::from_secs(40), || c.bird_routes(0).len() == 2) {
        panic!("{} {:?}", bgp_status(&c, 0), bird_table(&c, 0));
    }
    wait_bgp_converged(&c, Duration::from_secs(10));
    // The router passes node2's own address on as the next hop: it shares the segment.
    assert_eq!(
        bird_table(&c, 0),
        [
            "10.233.92.0/24 via 192.168.110.102 dev ens3",
            "blackhole 10.233.91.0/24"
        ]
    );
    let status = bgp_status(&c, 0);
    assert!(
        status.contains("| 192.168.0.1  | global    | up "),
        "{status}"
    );
    assert_eq!(
        status.matches("| up ").count(),
        1,
        "the router is the only peer: {status}"
    );
    let (a, _) = add_pod(&c, 0, "a");
    let (_b, b_ip) = add_pod(&c, 1, "b");
    assert!(ping(&a, &b_ip), "by the route learned from the router");
    drop(router);
}

#[test]
#[ignore = "needs root"]
fn a_killed_bird_is_restarted_and_no_route_is_lost_meanwhile() {
    let mut c = bgp_cluster("bgpkill", 3);
    c.start_all("vxlan");
    wait_bgp_converged(&c, Duration::from_secs(30));
    wait_for(Duration::from_secs(20), "sessions up", || {
        (0..3).all(|i| established(&c, i) == 2)
    });
    let before: Vec<Vec<String>> = (0..3).map(|i| bird_table(&c, i)).collect();
    let old = c.bird_pid(1).unwrap();
    let killed = Instant::now();
    unsafe { libc::kill(old, libc::SIGKILL) };
    let mut restarted = None;
    let mut lost = Vec::new();
    while killed.elapsed() < Duration::from_secs(20) {
        for (i, want) in before.iter().enumerate() {
            let now = bird_table(&c, i);
            if &now != want {
                lost.push(format!("{:?}: node{} {now:?}", killed.elapsed(), i + 1));
            }
        }
        if restarted.is_none() && c.bird_pid(1).is_some_and(|p| p != old) {
            restarted = Some(killed.elapsed());
        }
        if restarted.is_some() && (0..3).all(|i| established(&c, i) == 2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let restarted = restarted.expect("BIRD was not restarted");
    eprintln!(
        "BIRD SIGKILLed: restarted after {restarted:?}, sessions back after {:?}",
        killed.elapsed()
    );
    assert!(
        restarted < Duration::from_secs(1),
        "restart took {restarted:?}"
    );
    assert!(
        lost.is_empty(),
        "routes changed while BIRD was down: {lost:?}"
    );
    assert!(
        (0..3).all(|i| established(&c, i) == 2),
        "sessions came back"
    );
    let m = http_get(&c, 1, "/metrics");
    assert!(m.contains("podnet_agent_bird_restarts_total 1"), "{m}");
}

#[test]
#[ignore = "needs root"]
fn a_restarted_agent_adopts_the_running_bird() {
    let mut c = bgp_cluster("bgpadopt", 2);
    c.start_all("vxlan");
    wait_bgp_converged(&c, Duration::from_secs(30));
    let pid = c.bird_pid(0).unwrap();
    let before = bird_table(&c, 0);
    c.kill(0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.bird_pid(0), Some(pid), "BIRD outlives the agent");
    assert_eq!(bird_table(&c, 0), before, "routes stay while no agent runs");
    c.start(0, "vxlan");
    wait_for(Duration::from_secs(10), "the new agent is ready", || {
        http_get(&c, 0, "/readyz").contains(" 200 OK")
    });
    assert_eq!(c.bird_pid(0), Some(pid), "adopted, not started again");
    assert!(
        c.log(0).contains("adopted the running BIRD"),
        "{}",
        c.log(0)
    );
    let count = count_birds_with(&c.nodes[0].state.join("bird/bird.ctl"));
    assert_eq!(count, 1, "one BIRD for the node");
    assert_eq!(bird_table(&c, 0), before);
}

#[test]
#[ignore = "needs root"]
fn stopping_the_node_service_leaves_bgp_routes_in_the_kernel() {
    // What `systemctl stop podnet-agent` (the package's prerm) does: SIGTERM to the agent
    // and to BIRD in its control group. Traffic must keep flowing: BIRD's kernel protocol
    // persists.
    let mut c = bgp_cluster("bgpterm", 2);
    c.start_all("vxlan");
    wait_bgp_converged(&c, Duration::from_secs(30));
    let before = bird_table(&c, 0);
    let (status, took) = c.terminate(0);
    assert!(
        status.success() && took < Duration::from_secs(2),
        "{status:?} after {took:?}"
    );
    c.terminate_bird(0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bird_table(&c, 0), before, "routes stay after the stop");
}

/// How many processes were started with this control socket.
fn count_birds_with(socket: &std::path::Path) -> usize {
    let needle = socket.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .count()
}

/// A node stopped (agent and BIRD killed, nothing restarts them): the others keep its routes
/// for the graceful-restart time, then drop them; they come back when it returns.
#[test]
#[ignore = "needs root"]
fn a_stopped_nodes_routes_go_after_graceful_restart_and_return_with_it() {
    let mut c = bgp_cluster("bgpstop", 3);
    let (ok, _, err) = cli(&c, 0, "bgp config --graceful-restart-seconds 3");
    assert!(ok, "{err}");
    c.start_all("vxlan");
    wait_bgp_converged(&c, Duration::from_secs(30));
    wait_for(Duration::from_secs(20), "sessions up", || {
        (0..3).all(|i| established(&c, i) == 2)
    });
    c.kill(2);
    let stopped = Instant::now();
    c.kill_bird(2);
    let gone = "10.233.93.0/24";
    let has = |c: &Cluster, i: usize| c.bird_routes(i).iter().any(|r| r.dst.to_string() == gone);
    assert!(has(&c, 0) && has(&c, 1), "kept at first (graceful restart)");
    wait_for(
        Duration::from_secs(30),
        "node3's block leaves node1 and node2",
        || !has(&c, 0) && !has(&c, 1),
    );
    let dropped = stopped.elapsed();
    eprintln!(
        "node stopped: its block dropped by the others after {dropped:?} (graceful restart 3 s)"
    );
    assert!(
        dropped >= Duration::from_secs(2),
        "dropped before graceful restart ran out: {dropped:?}"
    );
    c.start(2, "vxlan");
    let back = wait_for(Duration::from_secs(30), "its block returns", || {
        has(&c, 0) && has(&c, 1)
    });
    eprintln!("node back: its block in the others' kernels {back:?} after its agent started");
}

#[test]
#[ignore = "needs root"]
fn a_route_deleted_by_hand_comes_back_within_the_kernel_scan() {
    let mut c = bgp_cluster("bgpdel", 2);
    c.start_all("vxlan");
    wait_bgp_converged(&c, Duration::from_secs(30));
    let mut nl: Netlink = c.netlink(0);
    let dst = "10.233.92.0/24".parse().unwrap();
    nl.delete_route(dst, BIRD_ROUTE_PROTOCOL).unwrap();
    let deleted = Instant::now();
    let back = wait_for(Duration::from_secs(5), "the route returns", || {
        c.bird_routes(0).iter().any(|r| r.dst == dst)
    });
    eprintln!("route deleted by hand: back after {:?}", deleted.elapsed());
    assert!(back <= Duration::from_secs(2), "took {back:?}");
    assert!(c
        .owned_routes(0)
        .iter()
        .all(|r| r.protocol != AGENT_ROUTE_PROTOCOL || r.dst != dst));
}

/// A bad peer written into the datastore by hand: BIRD keeps the config it runs (sessions stay
/// up), status and metrics say why; removing the record heals it.
#[test]
#[ignore = "needs root"]
fn a_bad_setting_written_by_hand_is_refused_and_the_old_config_keeps_running() {
    let mut c = bgp_cluster("bgpbad", 2);
    c.start_all("vxlan");
    wait_bgp_converged(&c, Duration::from_secs(30));
    wait_for(Duration::from_secs(20), "sessions up", || {
        established(&c, 0) == 1
    });
    let conf = std::fs::read_to_string(c.nodes[0].state.join("bird/bird.conf")).unwrap();
    let store =
        podnet_ipam::store::sqlite::SqliteStore::open(c.store(), Default::default()).unwrap();
    let mut txn = podnet_ipam::store::Txn::default();
    txn.put(
        "/podnet/v1/bgp/peers/broken",
        r#"{"name":"broken","peerIp":"192.168.0.9","asNumber":0}"#,
    );
    podnet_ipam::Datastore::txn(&store, &txn).unwrap();
    wait_for(Duration::from_secs(5), "the agent refuses it", || {
        c.log(0)
            .contains("/podnet/v1/bgp/peers/broken: AS 0 is reserved")
    });
    let m = http_get(&c, 0, "/metrics");
    assert!(
        !m.contains("podnet_agent_bird_configs_refused_total 0"),
        "{m}"
    );
    assert_eq!(
        std::fs::read_to_string(c.nodes[0].state.join("bird/bird.conf")).unwrap(),
        conf,
        "the running config is untouched"
    );
    std::thread::sleep(Duration::from_secs(1));
    let status = bgp_status(&c, 0);
    assert_eq!(
        status.matches("| Established |").count(),
        1,
        "the session stays up: {status}"
    );
    assert!(
        status.contains("WARNING: the newest config was refused")
            && status.contains("AS 0 is reserved"),
        "{status}"
    );
    // A restart with the bad value still stored: the agent runs on, BIRD keeps its config.
    c.kill(0);
    c.start(0, "vxlan");
    wait_for(
        Duration::from_secs(10),
        "the restarted agent keeps the old config",
        || c.log(0).contains("BIRD keeps its previous config"),
    );
    assert!(
        c.nodes[0]
            .agent
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none(),
        "the agent runs"
    );
    assert_eq!(
        established(&c, 0),
        1,
        "the session stays up: {}",
        bgp_status(&c, 0)
    );
    let (ok, _, err) = cli(&c, 0, "bgp peer remove broken");
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&c, 0, "bgp peer list");
    assert!(ok && !out.contains("broken"), "{out} {err}");
    wait_for(Duration::from_secs(5), "the warning goes", || {
        !bgp_status(&c, 0).contains("WARNING")
    });
}

#[test]
#[ignore = "needs root"]
fn bad_bgp_flags_change_nothing() {
    let c = Cluster::new("bgpflags", 1);
    for (line, want) in [
        (
            "bgp peer add p --peer-ip 300.1.1.1 --as 65001",
            "invalid IPv4",
        ),
        ("bgp peer add p --peer-ip 10.0.0.1 --as 0", "1..4294967295"),
        (
            "bgp peer add p --peer-ip 10.0.0.1 --as 4294967296",
            "1..4294967295",
        ),
        ("bgp config --as 0", "1..4294967295"),
        ("bgp peer remove nobody", "no BGP peer named nobody"),
    ] {
        let (ok, out, err) = cli(&c, 0, line);
        assert!(!ok, "{line} succeeded: {out}");
        assert!(err.contains(want), "{line}: {err}");
    }
    // A peer that is a registered node itself.
    let mut c = c;
    c.start(0, "none");
    wait_for(Duration::from_secs(10), "node registered", || {
        cli(&c, 0, "node list").1.contains("node1")
    });
    let (ok, _, err) = cli(
        &c,
        0,
        "bgp peer add me --peer-ip 192.168.110.101 --as 65001",
    );
    assert!(!ok && err.contains("cannot peer with itself"), "{err}");
    let (_, list, _) = cli(&c, 0, "bgp peer list");
    assert!(!list.contains("me "), "{list}");
}

#[test]
#[ignore = "needs root"]
fn an_old_bird_is_refused_at_start_and_nothing_is_changed() {
    let mut c = Cluster::new("bgpold", 1);
    let fake = c.dir.path().join("old-bird");
    std::fs::write(&fake, "#!/bin/sh\necho 'BIRD version 2.0.8' >&2\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    c.agent_flags = vec![
        "--routing".into(),
        "bgp".into(),
        "--bird".into(),
        fake.display().to_string(),
    ];
    let out = c.agent_command(0, "vxlan", &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("BIRD 2.0.8") && err.contains("2.0.12 or newer"),
        "{err}"
    );
    assert!(
        c.netlink(0).link("vxlan.calico").unwrap().is_none(),
        "nothing made"
    );
    assert!(!c.nodes[0].state.join("mtu").exists());
}

/// A BIRD in the fabric namespace playing a rack's router: address `ip` on the bridge, eBGP
/// with every node, forwarding on, routes installed in the fabric's kernel.
struct RouterBird {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl RouterBird {
    fn start(c: &Cluster, ip: &str, asn: u32, nodes: &[(&str, u32)]) -> RouterBird {
        let mut f = c.fabric.run(Netlink::open).unwrap().unwrap();
        let br = f.link("br0").unwrap().unwrap();
        f.add_address(br.index, format!("{ip}/16").parse().unwrap())
            .unwrap();
        c.fabric
            .run(|| podnet_netlink::sysctl::write("net.ipv4.ip_forward", "1"))
            .unwrap()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut conf = format!(
            "router id {ip};\nprotocol device {{}}\nprotocol direct {{ ipv4; }}\n\
             protocol kernel {{ ipv4 {{ export all; }}; }}\n"
        );
        for (i, (n, node_as)) in nodes.iter().enumerate() {
            conf.push_str(&format!(
                "protocol bgp node{i} {{ local {ip} as {asn}; neighbor {n} as {node_as}; \
                 ipv4 {{ import all; export all; }}; }}\n"
            ));
        }
        let path = dir.path().join("bird.conf");
        std::fs::write(&path, conf).unwrap();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net={}", c.fabric.path()))
            .args(["bird", "-f", "-c"])
            .arg(&path)
            .arg("-s")
            .arg(dir.path().join("bird.ctl"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        assert!(wait_for_quietly(Duration::from_secs(5), || dir
            .path()
            .join("bird.ctl")
            .exists()));
        RouterBird { child, _dir: dir }
    }
}

impl Drop for RouterBird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// On etcd: the mesh converges, and a peer added with `podnet-agent bgp peer add` reaches every
/// node's BIRD through the agents' etcd watch, without a restart.
#[test]
#[ignore = "needs root"]
fn on_etcd_bgp_settings_reach_every_bird_through_the_watch() {
    let mut c = Cluster::with_backend("bgpetcd", 2, Backend::Etcd);
    c.agent_flags = vec!["--routing".into(), "bgp".into()];
    c.start_all("vxlan");
    wait_bgp_converged(&c, Duration::from_secs(30));
    let (ok, out, err) = cli(&c, 0, "bgp peer add tor --peer-ip 192.168.0.250 --as 65001");
    assert!(ok, "{out} {err}");
    let took = wait_for(
        Duration::from_secs(5),
        "every BIRD has the new peer",
        || (0..2).all(|i| bgp_status(&c, i).contains("| 192.168.0.250   | global ")),
    );
    eprintln!("a new BGP peer on etcd: in every BIRD after {took:?}");
    assert_eq!(established(&c, 0), 1, "the mesh session stays up");
}
