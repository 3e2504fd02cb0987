//! The lab end to end, as a user runs it: `up`, `test`, the views, `down`, and recovery from a
//! lab killed half-way. The host's own namespace must be exactly as before.
//! The seed lab uses fixed namespace names, so these tests run one at a time.

use podnet_netlink::Netlink;
use serial_test::serial;
use std::process::Command;
use std::time::Duration;

mod common;
use common::{lab, ok, LAB};

/// The host namespace's interfaces, addresses, routes and forwarding sysctls.
/// ubuntu-test asks the node-local DNS for web2, the Service the test applies.
const WEB2_FROM_POD: [&str; 8] = [
    "exec",
    "ubuntu-test",
    "--",
    LAB,
    "resolve",
    "web2.default.svc.cluster.local",
    "--server",
    "169.254.25.10",
];

/// An HTTP GET from ubuntu-test.
fn http_from_pod(url: &str) -> String {
    ok(&["exec", "ubuntu-test", "--", LAB, "http-get", url])
}

fn host_snapshot() -> String {
    let mut nl = Netlink::open().unwrap();
    let mut s = String::new();
    for l in nl.links().unwrap() {
        s += &format!(
            "link {} {} {} {} {}\n",
            l.index,
            l.name,
            l.mtu,
            l.mac_string(),
            l.flags & 0xffff
        );
    }
    for a in nl.addresses().unwrap() {
        s += &format!("addr {} {}\n", a.index, a.net);
    }
    for r in nl.routes().unwrap() {
        s += &format!("route {:?}\n", r);
    }
    // Pods mount their own resolv.conf and hosts: never over the host's.
    for f in ["/etc/resolv.conf", "/etc/hosts", "/proc/self/mountinfo"] {
        s += &format!("{f}:\n{}", std::fs::read_to_string(f).unwrap());
    }
    for k in [
        "net/ipv4/ip_forward",
        "net/ipv4/conf/all/forwarding",
        "net/ipv4/conf/default/forwarding",
    ] {
        s += &format!(
            "{k}={}",
            std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap()
        );
    }
    s
}

fn namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn lab_processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            std::fs::read(e.path().join("environ"))
                .ok()
                .map(|env| (e, env))
        })
        .filter(|(_, env)| env.windows(10).any(|w| w == b"PODNET_LAB"))
        .map(|(e, _)| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn assert_gone(before: &str) {
    let seed_names = [
        "sung-ubuntu01",
        "sung-ubuntu02",
        "sung-ubuntu03",
        "sung-ubuntu04",
        "sung-ubuntu05",
        "ubuntu-test",
        "multi-container",
        "seed-fabric",
    ];
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|n| seed_names.contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert!(
        !std::path::Path::new("/run/podnet-lab/seed").exists(),
        "state folder left"
    );
    // The labs' folder goes with the last lab (other tests' labs may still be up).
    let root = std::path::Path::new("/run/podnet-lab");
    assert!(
        !root.exists() || std::fs::read_dir(root).unwrap().next().is_some(),
        "an empty /run/podnet-lab left behind"
    );
    assert_eq!(host_snapshot(), before, "the host namespace changed");
}

#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn seed_lab_up_test_views_down_leaves_the_host_as_it_was() {
    let before = host_snapshot();
    ok(&["up", "--quiet"]);
    let result = std::panic::catch_unwind(|| {
        let report = ok(&["test"]);
        assert!(report.contains("0 failed"), "{report}");
        assert!(
            report.contains("PASS  sung-ubuntu04: every BGP session is Established"),
            "{report}"
        );
        assert!(report.contains("made by BIRD (proto bird)"), "{report}");
        let bgp = ok(&["bgp", "sung-ubuntu04"]);
        assert_eq!(
            bgp.matches("| node-to-node mesh | up    |").count(),
            4,
            "{bgp}"
        );
        let explain = ok(&["explain", "ubuntu-test", "multi-container"]);
        assert!(
            explain.contains("learned by BGP from sung-ubuntu05 (192.168.110.104, AS 64512), node-to-node mesh session Established"),
            "{explain}"
        );
        assert!(report.contains("PASS  trace ubuntu-test -> multi-container is 192.168.110.103, 10.233.78.0, 10.233.78.3"), "{report}");
        // The way out (natOutgoing): the seed's `ping 8.8.8.8`, on the lab's stand-in.
        assert!(report.contains("PASS  ubuntu-test pings 203.0.113.10 outside the cluster (masqueraded by its node)"), "{report}");
        assert!(
            report.contains(
                "PASS  with natOutgoing off, ubuntu-test gets no reply from 203.0.113.10"
            ),
            "{report}"
        );
        let ping = ok(&[
            "exec",
            "ubuntu-test",
            "--",
            "ping",
            "-c",
            "2",
            "203.0.113.10",
        ]);
        assert!(ping.contains("2 received"), "{ping}");
        // Eight frames: the outside host may still be retrying its answers to the test's
        // unmasqueraded tries of a moment ago (natOutgoing off), which the capture sees too.
        let seen = std::thread::spawn(|| {
            ok(&["capture", "internet", "eth0", "-c", "8", "--timeout", "10"])
        });
        std::thread::sleep(std::time::Duration::from_millis(700));
        ok(&[
            "exec",
            "ubuntu-test",
            "--",
            "ping",
            "-c",
            "6",
            "-i",
            "0.2",
            "203.0.113.10",
        ]);
        let seen = seen.join().unwrap();
        assert!(
            seen.contains("IP 192.168.110.103 > 203.0.113.10: ICMP type 8"),
            "the outside sees the node: {seen}"
        );
        let out = ok(&["explain", "ubuntu-test", "203.0.113.10"]);
        assert!(
            out.contains("nftables table ip podnet, chain nat (postrouting, srcnat) matches it"),
            "{out}"
        );
        assert!(
            out.contains("`ip saddr @nat-pools ip daddr != @all-pools counter packets"),
            "{out}"
        );
        assert!(
            out.contains(
                "On the fabric's gateway (192.168.0.1), `203.0.113.10 via 192.0.2.2 dev wan0"
            ) && out.contains("It has no route to 10.233.99.1 (nor to the pod pool 10.233.64.0/18"),
            "explain reads the fabric's and the upstream router's tables: {out}"
        );
        let tr = ok(&["trace", "ubuntu-test", "203.0.113.10"]);
        assert!(
            tr.contains("192.168.110.103  sung-ubuntu04")
                && tr.contains("fabric gateway")
                && tr.contains("192.0.2.2        upstream router")
                && tr.contains("203.0.113.10     www.example.com"),
            "{tr}"
        );
        assert!(
            report.contains(
                "PASS  ubuntu-test resolves www.example.com at the outside resolver 203.0.113.53"
            ),
            "{report}"
        );
        let dns = ok(&[
            "exec",
            "ubuntu-test",
            "--",
            LAB,
            "resolve",
            "www.example.com",
            "--server",
            "203.0.113.53",
        ]);
        assert!(dns.contains("Address: 203.0.113.10"), "{dns}");
        let nx = lab(&[
            "exec",
            "ubuntu-test",
            "--",
            LAB,
            "resolve",
            "nowhere.example.com",
            "--server",
            "203.0.113.53",
        ]);
        assert!(
            !nx.status.success() && String::from_utf8_lossy(&nx.stderr).contains("NXDOMAIN"),
            "{nx:?}"
        );
        // Services: ClusterIPs by nftables (kube-proxy's layout), on every node.
        for check in [
            "PASS  every pod reaches every Service by its ClusterIP (10 connections)",
            "PASS  100 requests from ubuntu-test to kubernetes (http://10.233.0.1:443/) reach all 3 endpoints",
            "PASS  web-0 reaches itself through Service web (hairpin, masqueraded by its node)",
            "PASS  every pod reaches every Service by name through 169.254.25.10 (10 connections)",
            "PASS  ubuntu-test asks 169.254.25.10 for kubernetes.default.svc.cluster.local: Addresses([10.233.0.1])",
            "PASS  ubuntu-test asks 169.254.25.10 for no-such-service.default.svc.cluster.local: NxDomain",
            "PASS  ubuntu-test asks 169.254.25.10 for www.example.com: Addresses([203.0.113.10])",
        ] {
            assert!(report.contains(check), "{check}:\n{report}");
        }
        let web = ok(&[
            "exec",
            "ubuntu-test",
            "--",
            LAB,
            "resolve",
            "web.default.svc.cluster.local",
            "--server",
            "169.254.25.10",
        ]);
        assert!(web.contains("Address: 10.233.0.10"), "{web}");
        let why = ok(&["explain", "ubuntu-test", "web"]);
        assert!(
            why.contains("finds `10.233.0.10 . tcp . 80 : goto service-default/web/tcp/http`")
                && why.contains("numgen random mod 2 vmap")
                && why
                    .contains("picks one of 2 endpoints at random: 10.233.78.1:80, 10.233.99.2:80")
                && why.contains("reaches 10.233.78.1 (pod web-1)"),
            "explain reads the DNAT step from the kernel, then the pod path:\n{why}"
        );
        let tour = ok(&["tour"]);
        assert!(
            tour.contains("=== Next: Services and DNS (kube-proxy and node-local DNS) ===")
                && tour.contains("Address: 10.233.0.10"),
            "{tour}"
        );
        assert!(
            tour.contains("$ podnet-lab perf ubuntu-test multi-container --seconds 1")
                && tour.contains("node -> node"),
            "the tour measures exercise 3's path: {tour}"
        );
        let no_port = lab(&["explain", "ubuntu-test", "web:81"]);
        assert!(
            String::from_utf8_lossy(&no_port.stderr).contains("Service default/web has no port 81"),
            "{no_port:?}"
        );
        // Changing the running lab: a Service applied, refused, deleted; a pod deleted.
        for check in [
            "PASS  1 s after endpoint 10.233.99.2 (web-0) leaves Service web, no new connection reaches it",
            "PASS  endpoint 10.233.99.2 (web-0) back in Service web: it serves again",
        ] {
            assert!(report.contains(check), "{check}:\n{report}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("svc.yaml");
        std::fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: web2}\nspec:\n  selector: {app: web}\n  ports: [{port: 8080, targetPort: 80}]\n").unwrap();
        let said = ok(&["apply", "-f", file.to_str().unwrap()]);
        assert!(said.contains("service/web2 created"), "{said}");
        std::thread::sleep(Duration::from_millis(1200));
        let named = ok(&WEB2_FROM_POD);
        let ip = named
            .lines()
            .find_map(|l| l.strip_prefix("Address: "))
            .unwrap_or_else(|| panic!("web2 resolves: {named}"))
            .to_string();
        let page = http_from_pod(&format!("http://{ip}:8080/"));
        assert!(
            page.contains("Welcome to nginx!"),
            "through the new ClusterIP: {page}"
        );
        std::fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: web3}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}\n").unwrap();
        let refused = lab(&["apply", "-f", file.to_str().unwrap()]);
        assert!(
            !refused.status.success()
                && String::from_utf8_lossy(&refused.stderr)
                    .contains("outside the service range 10.233.0.0/18"),
            "{refused:?}"
        );
        assert!(
            !ok(&["get", "svc"]).contains("web3"),
            "nothing half-applied"
        );
        assert!(ok(&["delete", "svc", "web2"]).contains("service \"web2\" deleted"));
        std::thread::sleep(Duration::from_millis(1200));
        let gone = lab(&WEB2_FROM_POD);
        assert!(
            String::from_utf8_lossy(&gone.stderr).contains("NXDOMAIN"),
            "{gone:?}"
        );
        // trace to a Service: TCP SYNs to its port, DNATed on the pod's node.
        let traced = ok(&["trace", "ubuntu-test", "web"]);
        assert!(
            traced.contains("to Service default/web (10.233.0.10:80), TCP SYN probes")
                && traced.contains(
                    " 1  10.233.0.10      (ICMP from 192.168.110.103  sung-ubuntu04 (ens3))"
                )
                && traced.contains("10.233.0.10:80   connected: endpoint web-"),
            "{traced}"
        );
        std::fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec:\n  selector: {app: nothing}\n  ports: [{port: 80}]\n").unwrap();
        ok(&["apply", "-f", file.to_str().unwrap()]);
        std::thread::sleep(Duration::from_millis(1200));
        let traced = ok(&["trace", "ubuntu-test", "svc/empty"]);
        assert!(
            traced.contains(
                "192.168.110.103 answered ICMP unreachable: the Service has no endpoints"
            ),
            "{traced}"
        );
        ok(&["delete", "svc", "empty"]);
        assert!(ok(&["delete", "pod", "sleeper"]).contains("pod \"sleeper\" deleted"));
        assert!(!ok(&["get", "pods"]).contains("sleeper"));
        // A pod applied to the running lab: scheduled, addressed, an endpoint of its Service.
        std::fs::write(&file, "apiVersion: v1\nkind: Pod\nmetadata: {name: web-2, labels: {app: web}}\nspec:\n  containers: [{name: nginx, image: nginx, ports: [{containerPort: 80}]}]\n").unwrap();
        let said = ok(&["apply", "-f", file.to_str().unwrap()]);
        assert!(said.contains("pod/web-2 created"), "{said}");
        let said = ok(&["apply", "-f", file.to_str().unwrap()]);
        assert!(said.contains("pod/web-2 unchanged"), "{said}");
        let pods = ok(&["get", "pods", "-o", "wide"]);
        let web2 = pods
            .lines()
            .find(|l| l.starts_with("web-2 "))
            .unwrap_or_else(|| panic!("{pods}"));
        assert!(
            web2.contains("Running") && web2.ends_with("sung-ubuntu04"),
            "the least busy worker: {web2}"
        );
        let web2_ip = web2.split_whitespace().nth(5).unwrap().to_string();
        assert!(ok(&["get", "endpoints"]).contains(&format!("{web2_ip}:80")));
        let hosts = ok(&["exec", "web-2", "--", "cat", "/etc/hosts"]);
        assert!(hosts.ends_with(&format!("\n{web2_ip}\tweb-2\n")), "{hosts}");
        // A pod that cannot start leaves nothing: no namespace, no address, no veth.
        let used = || {
            let out =
                Command::new(env!("CARGO_BIN_EXE_podnet-lab").replace("podnet-lab", "podnet-ipam"))
                    .args(["--datastore", "/run/podnet-lab/seed/store.db", "show"])
                    .output()
                    .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .unwrap_or("")
                .to_string()
        };
        let links = || ok(&["node", "sung-ubuntu05", "--", "ip", "-br", "link"]);
        let (used_before, links_before) = (used(), links());
        std::fs::write(&file, "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  nodeName: sung-ubuntu05\n  containers: [{name: app, image: busybox, command: [/no/such/program]}]\n").unwrap();
        let refused = lab(&["apply", "-f", file.to_str().unwrap()]);
        assert!(
            !refused.status.success()
                && String::from_utf8_lossy(&refused.stderr)
                    .contains("start container app of pod broken"),
            "{refused:?}"
        );
        assert!(!ok(&["get", "pods"]).contains("broken"));
        assert!(!std::path::Path::new("/run/netns/broken").exists());
        assert_eq!(used(), used_before, "the address went back");
        assert_eq!(links(), links_before, "no veth left");
        assert!(ok(&["delete", "pod", "web-2"]).contains("pod \"web-2\" deleted"));
        let svc = ok(&["get", "svc"]);
        assert!(
            svc.contains("kubernetes   ClusterIP   10.233.0.1 ")
                && svc.contains("443/TCP")
                && svc.contains("web          ClusterIP   10.233.0.10"),
            "{svc}"
        );
        let ep = ok(&["get", "endpoints"]);
        assert!(
            ep.contains("192.168.110.100:6443,192.168.110.101:6443,192.168.110.102:6443")
                && ep.contains("10.233.78.1:80,10.233.99.2:80"),
            "{ep}"
        );
        let page = http_from_pod("http://10.233.0.10/");
        assert!(page.contains("Welcome to nginx!"), "{page}");
        let pods = ok(&["get", "pods", "-o", "wide"]);
        assert!(
            pods.contains("ubuntu-test")
                && pods.contains("10.233.99.1")
                && pods.contains("sung-ubuntu04"),
            "{pods}"
        );
        assert!(pods.contains("multi-container   2/2     Running"), "{pods}");
        let nodes = ok(&["get", "nodes", "-o", "wide"]);
        assert_eq!(nodes.matches("Ready ").count(), 5, "{nodes}");
        let routes = ok(&["routes", "sung-ubuntu04"]);
        assert!(routes.contains("10.233.99.1     0.0.0.0         255.255.255.255 UH    0      0        0 calie3df4d89b13"), "{routes}");
        assert!(
            routes.contains(
                "10.233.99.0     0.0.0.0         255.255.255.0   U     0      0        0 *"
            ),
            "{routes}"
        );
        assert!(
            routes.lines().any(|l| l.starts_with("10.233.78.0     ")
                && l.contains("255.255.255.0   UG")
                && l.ends_with(" bird")),
            "{routes}"
        );
        let ifc = ok(&["ifconfig", "ubuntu-test"]);
        assert!(
            ifc.contains("inet 10.233.99.1  netmask 255.255.255.255  broadcast 0.0.0.0"),
            "{ifc}"
        );
        let hostname = ok(&["exec", "multi-container", "-c", "nginx", "--", "hostname"]);
        assert_eq!(hostname.trim(), "multi-container");
        // kubelet's resolv.conf, the seed's dnsConfig merged, and the pod's hosts file.
        assert_eq!(
            ok(&["exec", "ubuntu-test", "--", "cat", "/etc/resolv.conf"]),
            "search default.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 169.254.25.10\n\
             nameserver 8.8.8.8\n\
             options ndots:5\n"
        );
        let hosts = ok(&[
            "exec",
            "multi-container",
            "-c",
            "nginx",
            "--",
            "cat",
            "/etc/hosts",
        ]);
        assert!(
            hosts.ends_with("\n10.233.78.3\tmulti-container\n"),
            "{hosts}"
        );
        let found = ok(&["exec", "ubuntu-test", "--", LAB, "resolve", "web"]);
        assert!(
            found.contains("Name:\tweb.default.svc.cluster.local\nAddress: 10.233.0.10\n"),
            "{found}"
        );
        let out = lab(&["exec", "ubuntu-test", "--", "sh", "-c", "exit 7"]);
        assert_eq!(out.status.code(), Some(7), "exec passes the exit code on");
        let node = ok(&[
            "node",
            "sung-ubuntu04",
            "--",
            "ip",
            "-br",
            "addr",
            "show",
            "dev",
            "ens3",
        ]);
        assert!(node.contains("192.168.110.103/16"), "{node}");
        // Also reachable by name with ip netns exec.
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                "ubuntu-test",
                "ip",
                "-br",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("10.233.99.1/32"));
        assert_ne!(
            lab(&["up", "--quiet"]).status.code(),
            Some(0),
            "a second up of the same lab is refused"
        );
    });
    ok(&["down"]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert_gone(&before);
    assert!(
        lab_processes().is_empty(),
        "lab processes left: {:?}",
        lab_processes()
    );
}

#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn a_lab_killed_half_way_is_removed_by_down() {
    let before = host_snapshot();
    for delay_ms in (1..=15).map(|k| k * 10) {
        let mut child = Command::new(LAB)
            .args(["up", "--quiet"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL, mid-way
        let _ = child.wait();
        let out = lab(&["down", "--all"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_gone(&before);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            lab_processes().is_empty(),
            "after a kill at {delay_ms} ms: {:?}",
            lab_processes()
        );
    }
}

#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn generated_and_file_scenarios() {
    let before = host_snapshot();
    ok(&[
        "up",
        "--quiet",
        "--nodes",
        "3",
        "--pods-per-node",
        "2",
        "--encap",
        "none",
    ]);
    let report = lab(&["--lab", "gen3x2", "test"]);
    let text = String::from_utf8_lossy(&report.stdout).into_owned();
    ok(&["--lab", "gen3x2", "down"]);
    assert!(report.status.success(), "{text}");
    assert!(
        text.contains("a pod on every node reaches a pod on every other node (6 pairs)"),
        "{text}"
    );
    assert_eq!(host_snapshot(), before);

    let dir = tempfile::tempdir().unwrap();
    // natOutgoing off in a scenario file: pods are cut off from the outside, and `test` says why.
    let off = dir.path().join("off.yaml");
    std::fs::write(&off, "name: noout\nfabric: 10.9.0.0/16\ngateway: 10.9.0.1\nencapsulation: vxlan\npool: {cidr: 10.99.0.0/16, blockSize: 24, natOutgoing: false}\nnodes: [{name: a, ip: 10.9.0.10}, {name: b, ip: 10.9.0.11}]\npods:\n  - node: a\n    manifest: {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, image: ubuntu, command: [sleep, 3650d]}]}}\noutside:\n  router: 198.51.100.1/24\n  hosts: [{name: mirror.example.net, ip: 198.51.100.20}]\n").unwrap();
    ok(&["up", "--quiet", off.to_str().unwrap()]);
    let report = lab(&["--lab", "noout", "test"]);
    let text = String::from_utf8_lossy(&report.stdout).into_owned();
    let ping = lab(&[
        "--lab",
        "noout",
        "exec",
        "p",
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        "198.51.100.20",
    ]);
    ok(&["--lab", "noout", "down"]);
    assert!(report.status.success(), "{text}");
    assert!(
        text.contains("PASS  p does not reach 198.51.100.20: natOutgoing is off for 10.99.0.0/16"),
        "{text}"
    );
    assert!(!ping.status.success());
    assert_eq!(host_snapshot(), before);
    let public = dir.path().join("public.yaml");
    std::fs::write(&public, "name: pub\nfabric: 10.9.0.0/16\ngateway: 10.9.0.1\npool: {cidr: 10.99.0.0/16}\nnodes: [{name: a, ip: 10.9.0.10}]\noutside: {router: 8.8.8.1/24, hosts: [{name: dns.google, ip: 8.8.8.8}]}\n").unwrap();
    let out = lab(&["up", public.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a documentation address (RFC 5737"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\nfabric: 10.9.0.0/16\ngateway: 10.9.0.1\npool: {cidr: 10.99.0.0/16}\nnodes: [{name: a, ip: 10.8.0.1}]\n").unwrap();
    let out = lab(&["up", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside fabric"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The seed on etcd, with the agents writing the routes (no BIRD).
#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn seed_lab_on_etcd() {
    let before = host_snapshot();
    ok(&[
        "up",
        "--quiet",
        "--datastore",
        "etcd",
        "--routing",
        "datastore",
    ]);
    let report = lab(&["test"]);
    let text = String::from_utf8_lossy(&report.stdout).into_owned();
    assert!(text.contains("made by the agent (proto 119)"), "{text}");
    assert!(!text.contains("BGP session"), "{text}");
    let nodes = lab(&["get", "nodes", "-o", "wide"]);
    ok(&["down"]);
    assert!(
        report.status.success() && text.contains("0 failed"),
        "{text}"
    );
    assert_eq!(
        String::from_utf8_lossy(&nodes.stdout)
            .matches("Ready ")
            .count(),
        5
    );
    assert_gone(&before);
    assert!(lab_processes().is_empty(), "left: {:?}", lab_processes());
}

/// BGP routing needs BIRD: without it `up` says how to get it, and makes nothing.
#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn without_bird_up_says_how_to_get_it_and_makes_nothing() {
    let before = host_snapshot();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(LAB)
        .args(["up", "--quiet"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bird2") && err.contains("--routing datastore"),
        "{err}"
    );
    assert_gone(&before);
}

/// `scenarios/two-racks.yaml`: two racks, each a segment with its own router; nodes peer with
/// their rack's router (no mesh), the routers with each other. Unencapsulated, pods in different
/// racks talk through the routers, which learned every block; with VXLAN and cross-subnet only
/// the traffic between racks is encapsulated.
#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn two_racks_route_by_bgp_through_their_routers() {
    let _ = lab(&["down", "--all"]);
    let before = host_snapshot();
    let before_ns = namespaces();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/two-racks.yaml");
    ok(&["up", file, "--quiet"]);
    let result = std::panic::catch_unwind(|| {
        let report = ok(&["--lab", "two-racks", "test"]);
        assert!(report.contains("0 failed"), "{report}");
        assert!(
            report.contains("PASS  rack1-a: every BGP session is Established"),
            "{report}"
        );
        let trace = ok(&["--lab", "two-racks", "trace", "client", "far"]);
        for hop in [
            "rack1-a (ens3)",
            "router tor1 (eth-rack1)",
            "router tor2 (eth-fabric)",
            "rack2-b (ens3)",
            "pod far",
        ] {
            assert!(trace.contains(hop), "no hop {hop}:\n{trace}");
        }
        let routes = ok(&["--lab", "two-racks", "routes", "rack1-a"]);
        assert!(
            routes
                .lines()
                .any(|l| l.starts_with("10.244.22.0     10.10.1.1 ") && l.ends_with(" bird")),
            "another rack's block goes by the rack's router:\n{routes}"
        );
        assert!(
            routes
                .lines()
                .any(|l| l.starts_with("10.244.12.0     rack1-b ") && l.contains(" ens3 ")),
            "a block in the same rack goes straight to its node:\n{routes}"
        );
        let explain = ok(&["--lab", "two-racks", "explain", "client", "far"]);
        assert!(
            explain.contains("Router tor1") && explain.contains("Router tor2"),
            "{explain}"
        );
        assert!(
            explain.contains("learned by BGP from router tor1"),
            "{explain}"
        );
        let bgp = ok(&["--lab", "two-racks", "bgp", "rack1-a"]);
        assert!(
            bgp.contains("| 10.10.1.1    | node specific | up "),
            "{bgp}"
        );
        assert_eq!(
            bgp.matches("| up ").count(),
            1,
            "only the rack's router: {bgp}"
        );
    });
    ok(&["--lab", "two-racks", "down"]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    ok(&["up", file, "--quiet", "--encap", "vxlan", "--cross-subnet"]);
    let result = std::panic::catch_unwind(|| {
        let report = ok(&["--lab", "two-racks", "test"]);
        assert!(report.contains("0 failed"), "{report}");
        let routes = ok(&["--lab", "two-racks", "routes", "rack1-a"]);
        assert!(
            routes
                .lines()
                .any(|l| l.starts_with("10.244.12.0     rack1-b ") && l.contains(" ens3 ")),
            "same rack: no tunnel\n{routes}"
        );
        assert!(
            routes
                .lines()
                .any(|l| l.starts_with("10.244.22.0 ") && l.contains(" vxlan.calico ")),
            "other rack: VXLAN\n{routes}"
        );
    });
    ok(&["--lab", "two-racks", "down"]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert_eq!(host_snapshot(), before);
    assert_eq!(namespaces(), before_ns);
    assert!(lab_processes().is_empty(), "left: {:?}", lab_processes());
}

/// A scenario with the mesh off and one route reflector: every other node has one session,
/// with the reflector, and still every block.
#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn a_scenario_with_a_route_reflector() {
    let _ = lab(&["down", "--all"]);
    let before = host_snapshot();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rr.yaml");
    let pod = |name: &str, node: &str| {
        format!(
            "  - node: {node}\n    manifest: {{metadata: {{name: {name}}}, spec: {{containers: \
             [{{name: app, image: busybox, command: [/bin/sleep, infinity]}}]}}}}\n"
        )
    };
    let scenario = format!(
        "name: rr\nfabric: 10.20.0.0/16\ngateway: 10.20.0.1\nencapsulation: vxlan\n\
         pool: {{cidr: 10.244.0.0/16, blockSize: 24}}\n\
         bgp: {{nodeToNodeMesh: false, routeReflectors: [rr-a]}}\nnodes:\n\
         - {{name: rr-a, ip: 10.20.0.10}}\n- {{name: rr-b, ip: 10.20.0.11}}\n\
         - {{name: rr-c, ip: 10.20.0.12}}\npods:\n{}{}",
        pod("rr-pod-b", "rr-b"),
        pod("rr-pod-c", "rr-c")
    );
    std::fs::write(&file, scenario).unwrap();
    ok(&["up", file.to_str().unwrap(), "--quiet"]);
    let result = std::panic::catch_unwind(|| {
        let report = ok(&["--lab", "rr", "test"]);
        assert!(report.contains("0 failed"), "{report}");
        let client = ok(&["--lab", "rr", "bgp", "rr-c"]);
        assert_eq!(
            client.matches("| up ").count(),
            1,
            "only the reflector: {client}"
        );
        assert!(
            client.contains("| 10.20.0.10   | node specific | up "),
            "{client}"
        );
        let reflector = ok(&["--lab", "rr", "bgp", "rr-a"]);
        assert_eq!(reflector.matches("| up ").count(), 2, "{reflector}");
    });
    ok(&["--lab", "rr", "down"]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert_eq!(host_snapshot(), before);
}

/// Without a tunnel the block's first address goes to a pod: `test` expects what the IPAM hands
/// out in that mode (ubuntu-test 10.233.99.0, multi-container 10.233.78.2), and passes whole.
/// A Service whose named targetPort each pod names as a port of its own reaches both pods.
#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn seed_lab_without_encapsulation_and_a_named_port_per_pod() {
    let before = host_snapshot();
    ok(&["up", "--quiet", "--encap", "none"]);
    let report = lab(&["test"]);
    let text = String::from_utf8_lossy(&report.stdout).into_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alt.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: alt-a, labels: {app: alt}}\nspec:\n  containers: [{name: nginx, image: nginx, ports: [{containerPort: 8080, name: http-alt}]}]\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: alt-b, labels: {app: alt}}\nspec:\n  containers: [{name: nginx, image: nginx, ports: [{containerPort: 9090, name: http-alt}]}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: alt}\nspec:\n  clusterIP: 10.233.0.77\n  selector: {app: alt}\n  ports: [{port: 80, targetPort: http-alt}]\n",
    )
    .unwrap();
    ok(&["apply", "-f", file.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1200));
    let endpoints = ok(&["get", "endpoints"]);
    let answers: Vec<String> = (0..10)
        .map(|_| {
            let out = lab(&[
                "exec",
                "ubuntu-test",
                "--",
                LAB,
                "http-get",
                "http://10.233.0.77/",
            ]);
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    ok(&["down"]);
    assert!(report.status.success(), "{text}");
    for want in [
        "PASS  ubuntu-test has 10.233.99.0/32",
        "PASS  multi-container has 10.233.78.2/32",
        "0 failed",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    assert!(
        endpoints.contains(":8080") && endpoints.contains(":9090"),
        "{endpoints}"
    );
    let served = answers.iter().filter(|a| a.contains("200 OK")).count();
    assert_eq!(served, 10, "{answers:?}");
    assert_gone(&before);
}

/// `--timeout` is how long `up` waits without progress; giving up says what it waited for
/// and removes everything it made.
#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn up_gives_up_after_its_timeout_and_says_what_was_missing() {
    let before = host_snapshot();
    let out = lab(&["up", "--quiet", "--timeout", "0"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("(--timeout)"), "{said}");
    assert!(said.contains("sung-ubuntu0"), "names the nodes: {said}");
    assert_gone(&before);
}

/// A generated lab above 50 nodes peers through node1 and node2 as route reflectors (up says
/// so; a client has just the two sessions, a reflector one to every other node) and still
/// routes every block; `--mesh` needs `--nodes`.
#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn a_generated_lab_above_50_nodes_peers_through_two_reflectors() {
    let _ = lab(&["down", "--all"]);
    let before = host_snapshot();
    let up = lab(&["up", "--nodes", "51", "--pods-per-node", "1"]);
    let said = String::from_utf8_lossy(&up.stderr).into_owned();
    let result = std::panic::catch_unwind(|| {
        assert!(up.status.success(), "{said}");
        assert!(
            said.contains("51 nodes: BGP through route reflectors node1 and node2"),
            "{said}"
        );
        let client = ok(&["--lab", "gen51x1", "bgp", "node3"]);
        assert_eq!(client.matches("| up ").count(), 2, "{client}");
        let reflector = ok(&["--lab", "gen51x1", "bgp", "node1"]);
        assert_eq!(reflector.matches("| up ").count(), 50, "{reflector}");
        let report = ok(&["--lab", "gen51x1", "test"]);
        assert!(report.contains(" 0 failed"), "{report}");
    });
    let _ = lab(&["--lab", "gen51x1", "down"]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert_eq!(host_snapshot(), before);
    let mesh = lab(&["up", "--mesh"]);
    assert!(!mesh.status.success());
    assert!(
        String::from_utf8_lossy(&mesh.stderr).contains("--nodes"),
        "{}",
        String::from_utf8_lossy(&mesh.stderr)
    );
}

/// `perf` measures real traffic: pod -> pod on another node beside node -> node, on the same
/// node beside a bare veth pair (whose namespaces it removes), full-size segments of the
/// pods' MTU crossing without a fragment, and a request rate; a pod it does not know is an
/// error naming it.
#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn perf_measures_pod_to_pod_beside_its_references() {
    let _ = lab(&["down", "--all"]);
    let before = host_snapshot();
    ok(&["up", "--quiet"]);
    let result = std::panic::catch_unwind(|| {
        let json = |to: &str| -> serde_json::Value {
            let out = ok(&["perf", "ubuntu-test", to, "--seconds", "1", "--json"]);
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
        };
        let cross = json("web-1");
        assert_eq!(cross["reference"], "node -> node", "{cross}");
        assert_eq!(cross["to_node"], "sung-ubuntu05", "{cross}");
        let same = json("web-0");
        assert_eq!(same["reference"], "bare veth pair", "{same}");
        for r in [&cross, &same] {
            for k in ["pod_gbits", "reference_gbits", "requests_per_second"] {
                assert!(r[k].as_f64().unwrap() > 0.0, "{k}: {r}");
            }
            assert_eq!(r["fragments"], 0, "{r}");
            let (mss, mtu) = (r["mss"].as_u64().unwrap(), r["mtu"].as_u64().unwrap());
            assert!(
                mss + 52 >= mtu && mss + 40 <= mtu,
                "a full-size segment: {r}"
            );
        }
        assert!(!namespaces().iter().any(|n| n.contains("perf")));
        let text = ok(&["perf", "ubuntu-test", "web-1", "--seconds", "1"]);
        assert!(text.contains("node -> node"), "{text}");
        assert!(
            text.contains("vxlan: ") || text.contains("ipip: "),
            "{text}"
        );
        let bad = lab(&["perf", "ubuntu-test", "nosuch"]);
        assert!(!bad.status.success());
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("nosuch"),
            "{}",
            String::from_utf8_lossy(&bad.stderr)
        );
    });
    ok(&["down"]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert_eq!(host_snapshot(), before);
}

/// A pod's mount namespace is copied from the lab's template, which holds no mount of a
/// network namespace: it does not grow with the lab (nor hold other pods' namespaces), and
/// the pod still has its own resolv.conf and hostname. `down` stops the template.
#[test]
#[serial(seed_lab)]
#[ignore = "needs root"]
fn pods_mount_namespaces_hold_no_network_namespace() {
    let _ = lab(&["down", "--all"]);
    ok(&["up", "--quiet"]);
    let result = std::panic::catch_unwind(|| {
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string("/run/podnet-lab/seed/state.json").unwrap(),
        )
        .unwrap();
        let template = state["mount_template"]["pid"].as_u64().expect("a template");
        for pod in state["pods"].as_array().unwrap() {
            let pid = pod["containers"][0]["process"]["pid"].as_u64().unwrap();
            let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
            assert!(
                !mounts.contains(" /run/netns/"),
                "{}: {mounts}",
                pod["name"]
            );
            assert!(
                mounts.contains(" /etc/resolv.conf "),
                "{}: {mounts}",
                pod["name"]
            );
        }
        assert!(
            !std::fs::read_to_string(format!("/proc/{template}/mountinfo"))
                .unwrap()
                .contains(" /run/netns/")
        );
        assert_eq!(
            ok(&["exec", "multi-container", "--", "hostname"]).trim(),
            "multi-container"
        );
        template
    });
    ok(&["down"]);
    let template = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert!(
        !std::path::Path::new(&format!("/proc/{template}")).exists()
            || std::fs::read_to_string(format!("/proc/{template}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "down stops the mount template"
    );
}
