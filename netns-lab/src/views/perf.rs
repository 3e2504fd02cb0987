//! `podnet-lab perf FROM TO`: what the network gives a pod. TCP throughput (iperf3, from
//! Debian) and HTTP requests a second (a new connection each) from pod FROM to pod TO, beside
//! the same throughput without podnet in the way: between their two nodes over the fabric
//! (pods on two nodes), or over a bare veth pair of the pods' MTU in two namespaces made for
//! it (pods on one node). It also says whether any packet was fragmented on the way (the
//! kernel's IP fragment counters of the four namespaces, before and after) and what the
//! encapsulation costs.

use crate::procs::{self, Placement, PodNs};
use crate::state::{LabState, PodState};
use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use podnet_netlink::netns::OwnedNetns;
use podnet_netlink::{Netlink, Netns, VethSpec};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The port iperf3's server listens on (its own default).
const IPERF_PORT: u16 = 5201;
/// The port of the HTTP server the request rate is measured against.
const HTTP_PORT: u16 = 18080;
/// Connections under way at once while the request rate is measured.
const PARALLEL: usize = 4;

/// What `perf` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub from_node: String,
    pub to_node: String,
    pub encapsulation: String,
    /// The pods' MTU (their `eth0`).
    pub mtu: u32,
    /// pod -> pod, Gbit/s.
    pub pod_gbits: f64,
    /// What the reference is: "node -> node" or "bare veth pair".
    pub reference: String,
    /// The reference's throughput, Gbit/s.
    pub reference_gbits: f64,
    /// HTTP GETs a second, each on a new TCP connection, pod -> pod.
    pub requests_per_second: f64,
    /// The TCP maximum segment size of the pod's iperf3 connection.
    pub mss: u64,
    /// IP fragments made or reassembled in the four namespaces during the pod's run.
    pub fragments: u64,
}

/// Measures pod `from` to pod `to` for `seconds` each way of measuring.
pub fn perf(lab: &LabState, from: &str, to: &str, seconds: u64) -> Result<Report> {
    if !crate::runtime::on_path("iperf3") {
        bail!("perf measures with iperf3: install it (`apt-get install iperf3`)");
    }
    let (a, b) = (lab.pod(from)?, lab.pod(to)?);
    let ip = |p: &PodState| -> Result<Ipv4Addr> {
        p.ip()
            .with_context(|| format!("pod {} has no address", p.name))?
            .parse()
            .context("a pod address")
    };
    ip(a)?;
    let b_ip = ip(b)?;
    let mtu = pod_mtu(a).with_context(|| format!("pod {from} has no eth0 in its CNI result"))?;
    let (a_ns, b_ns) = (LabState::netns_path(&a.name), LabState::netns_path(&b.name));
    let (a_node, b_node) = (LabState::netns_path(&a.node), LabState::netns_path(&b.node));
    let watched = [&a_ns, &b_ns, &a_node, &b_node];
    let before = fragments(&watched)?;
    let pod = iperf(&b_ns, &a_ns, b_ip, seconds)?;
    let fragments = fragments(&watched)? - before;
    let (reference, reference_gbits) = if a.node == b.node {
        ("bare veth pair", bare_veth(lab, mtu, seconds)?)
    } else {
        let node_ip = |n: &str| -> Result<Ipv4Addr> {
            let node = lab.scenario.nodes.iter().find(|x| x.name == n);
            Ok(node.with_context(|| format!("node {n} of the lab"))?.ip)
        };
        let to_node = node_ip(&b.node)?;
        (
            "node -> node",
            iperf(&b_node, &a_node, to_node, seconds)?.gbits,
        )
    };
    let requests_per_second = requests(&a_ns, &b_ns, b_ip, seconds)?;
    Ok(Report {
        from: from.into(),
        to: to.into(),
        from_node: a.node.clone(),
        to_node: b.node.clone(),
        encapsulation: lab.encapsulation.clone(),
        mtu,
        pod_gbits: pod.gbits,
        reference: reference.into(),
        reference_gbits,
        requests_per_second,
        mss: pod.mss,
        fragments,
    })
}

/// The report as people read it.
pub fn render(r: &Report) -> String {
    let mut out = format!(
        "{} ({}) -> {} ({}), encapsulation {}, pod MTU {}\n",
        r.from, r.from_node, r.to, r.to_node, r.encapsulation, r.mtu
    );
    out += &format!(
        "  TCP throughput  pod -> pod      {:6.2} Gbit/s (iperf3, MSS {})\n",
        r.pod_gbits, r.mss
    );
    out += &format!(
        "                  {:<15} {:6.2} Gbit/s\n",
        r.reference, r.reference_gbits
    );
    out += &format!(
        "  requests        pod -> pod      {:6.0} a second (HTTP GET, a new TCP connection each, {PARALLEL} at once)\n",
        r.requests_per_second
    );
    out += &match r.fragments {
        0 => "  fragments       none: full-size segments crossed whole\n".to_string(),
        n => format!("  fragments       {n}: packets were too big for a link on the way (MTU)\n"),
    };
    out += &format!("  {}\n", cost(r));
    out
}

/// One line on what the way between the pods costs against the reference.
fn cost(r: &Report) -> String {
    let ratio = r.pod_gbits / r.reference_gbits.max(f64::MIN_POSITIVE);
    let share = format!("{ratio:.2}x {}", r.reference);
    if r.from_node == r.to_node {
        return format!("same node: {share} (the pods' two veths and the node's routing between them; no encapsulation)");
    }
    let overhead = match r.encapsulation.as_str() {
        "vxlan" => "50 bytes of every packet (outer IP, UDP, VXLAN, Ethernet) and the tunnel's work",
        "ipip" => "20 bytes of every packet (outer IP header) and the tunnel's work",
        _ => "no tunnel: the pods' packets cross the fabric as they are, through a veth and one more route on each node",
    };
    format!("{}: {share}; it costs {overhead}", r.encapsulation)
}

/// The MTU of the pod's `eth0` as its CNI result gives it.
fn pod_mtu(p: &PodState) -> Option<u32> {
    let ifs = p.result.as_ref()?["interfaces"].as_array()?;
    let eth0 = ifs.iter().find(|i| i["name"] == "eth0")?;
    u32::try_from(eth0["mtu"].as_u64()?).ok()
}

/// One iperf3 run.
struct Iperf {
    gbits: f64,
    mss: u64,
}

/// iperf3 from namespace `client` to its one-off server in namespace `server` on `addr`.
fn iperf(server: &str, client: &str, addr: Ipv4Addr, seconds: u64) -> Result<Iperf> {
    let mut srv = Command::new("iperf3");
    srv.args(["-s", "-1", "-B", &addr.to_string(), "-p"])
        .arg(IPERF_PORT.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut srv = spawn_in(srv, server)?;
    let result = (|| {
        wait_listening(server, IPERF_PORT)?;
        let mut cli = Command::new("iperf3");
        cli.args(["-J", "-c", &addr.to_string(), "-p"])
            .arg(IPERF_PORT.to_string())
            .args(["-t", &seconds.max(1).to_string()]);
        procs::place(&mut cli, &placement(client))?;
        let out = cli.output().context("run iperf3")?;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "iperf3's JSON report: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        if let Some(e) = report["error"].as_str() {
            bail!("iperf3 to {addr} in {server}: {e}");
        }
        let bits = report["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .context("iperf3's report has no end.sum_received.bits_per_second")?;
        Ok(Iperf {
            gbits: bits / 1e9,
            mss: report["start"]["tcp_mss_default"].as_u64().unwrap_or(0),
        })
    })();
    let _ = srv.kill();
    let _ = srv.wait();
    result
}

/// HTTP GETs a second from namespace `client` to a server in namespace `server`.
fn requests(client: &str, server: &str, addr: Ipv4Addr, seconds: u64) -> Result<f64> {
    let me = std::env::current_exe().context("find podnet-lab itself")?;
    let mut srv = Command::new(me);
    srv.args(["serve-http", "--port", &HTTP_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut srv = spawn_in(srv, server)?;
    let result = (|| {
        wait_listening(server, HTTP_PORT)?;
        let to = SocketAddr::from((addr, HTTP_PORT));
        let for_how_long = Duration::from_secs(seconds.max(1));
        Netns::open(client)?.run(|| burst(to, for_how_long))?
    })();
    let _ = srv.kill();
    let _ = srv.wait();
    result
}

/// [`PARALLEL`] clients each GET `to` on a new connection, again and again for `how_long`.
fn burst(to: SocketAddr, how_long: Duration) -> Result<f64> {
    let start = Instant::now();
    let done: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|_| {
                s.spawn(move || -> Result<usize> {
                    let mut n = 0;
                    while start.elapsed() < how_long {
                        get(to)?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a client panicked"))
            .sum::<Result<usize>>()
    })?;
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// One request: connect, `GET /`, the answer read to the end.
fn get(to: SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))
        .with_context(|| format!("connect to {to}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: perf\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!("no HTTP answer from {to}");
    }
    Ok(())
}

/// iperf3 between two namespaces made for it, joined by a veth pair of `mtu`: the most a
/// pair of namespaces on this machine can give, with nothing of podnet in the way.
fn bare_veth(lab: &LabState, mtu: u32, seconds: u64) -> Result<f64> {
    let names = [
        format!("{}-perf-a", lab.name),
        format!("{}-perf-b", lab.name),
    ];
    let a = OwnedNetns::named(&names[0])?;
    let b = OwnedNetns::named(&names[1])?;
    let (a_net, b_net): (Ipv4Net, Ipv4Net) =
        ("10.255.255.1/30".parse()?, "10.255.255.2/30".parse()?);
    a.run(|| -> Result<()> {
        let mut nl = Netlink::open()?;
        nl.add_veth(&VethSpec {
            name: "veth0",
            mac: None,
            mtu,
            alias: None,
            peer_name: "veth0",
            peer_netns: Some(b.fd()),
        })?;
        let l = nl.link("veth0")?.context("the veth just made")?;
        nl.add_address(l.index, a_net)?;
        nl.set_up(l.index)?;
        Ok(())
    })??;
    b.run(|| -> Result<()> {
        let mut nl = Netlink::open()?;
        let l = nl.link("veth0")?.context("the veth's peer")?;
        nl.add_address(l.index, b_net)?;
        nl.set_up(l.index)?;
        Ok(())
    })??;
    Ok(iperf(b.path(), a.path(), b_net.addr(), seconds)?.gbits)
}

/// Starts `cmd` in network namespace `ns` (only that one), not detached.
fn spawn_in(mut cmd: Command, ns: &str) -> Result<std::process::Child> {
    procs::place(&mut cmd, &placement(ns))?;
    cmd.spawn()
        .with_context(|| format!("start {:?} in {ns}", cmd.get_program()))
}

fn placement(ns: &str) -> Placement<'_> {
    Placement {
        netns: ns,
        pod: PodNs::NONE,
        detach: false,
    }
}

/// Waits (up to 5 s) until something in namespace `ns` listens on TCP `port`.
fn wait_listening(ns: &str, port: u16) -> Result<()> {
    let netns = Netns::open(ns)?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let tcp = netns.run(|| std::fs::read_to_string("/proc/thread-self/net/tcp"))??;
        if listens(&tcp, port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("nothing listened on port {port} in {ns} within 5 s")
}

/// True if `/proc/net/tcp` text has a socket in state LISTEN (0A) on `port`.
fn listens(tcp: &str, port: u16) -> bool {
    let want = format!(":{port:04X}");
    tcp.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
    })
}

/// The IP fragments made and reassembled so far in each namespace of `namespaces`, summed.
fn fragments(namespaces: &[&String]) -> Result<u64> {
    let mut sum = 0;
    for ns in namespaces {
        let snmp =
            Netns::open(ns)?.run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
        sum += ["FragCreates", "ReasmReqds"]
            .iter()
            .map(|k| ip_counter(&snmp, k).unwrap_or(0))
            .sum::<u64>();
    }
    Ok(sum)
}

/// Counter `name` of the `Ip:` lines of `/proc/net/snmp` (a header line, then the values).
fn ip_counter(snmp: &str, name: &str) -> Option<u64> {
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (heads, values) = (ip.next()?, ip.next()?);
    let at = heads.split_whitespace().position(|h| h == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_their_heading() {
        let snmp = "Ip: Forwarding DefaultTTL ReasmReqds FragCreates\nIp: 1 64 3 7\nIcmp: InMsgs\nIcmp: 5\n";
        assert_eq!(ip_counter(snmp, "FragCreates"), Some(7));
        assert_eq!(ip_counter(snmp, "ReasmReqds"), Some(3));
        assert_eq!(ip_counter(snmp, "InMsgs"), None);
    }

    #[test]
    fn a_listening_socket_is_found_by_port_and_state() {
        let tcp = "  sl  local_address rem_address   st\n   0: 00000000:1451 00000000:0000 0A 0\n   1: 0100007F:4E20 0100007F:1451 01 0\n";
        assert!(listens(tcp, 5201));
        assert!(!listens(tcp, 20000), "established, not listening");
        assert!(!listens(tcp, 80));
    }
}
