//! The proxy's table against the real kernel, in throwaway namespaces (root only): a node
//! namespace with the table, and an "endpoints" namespace whose three addresses answer on
//! 8080 with their own address.

use podnet_netlink::netns::OwnedNetns;
use podnet_netlink::nft::Synced;
use podnet_netlink::{Netlink, RouteSpec, VethSpec};
use podnet_proxy::sync::Proxy;
use podnet_proxy::Service;
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

const ENDPOINTS: [&str; 3] = ["10.0.0.2", "10.0.0.3", "10.0.0.4"];

fn ns(tag: &str) -> OwnedNetns {
    OwnedNetns::named(&format!("podnet-proxy-{}-{tag}", std::process::id())).unwrap()
}

/// node (10.0.0.1) -- veth -- endpoints (10.0.0.2, .3, .4), each answering its address.
fn topology() -> (OwnedNetns, OwnedNetns) {
    let node = ns("node");
    let eps = ns("eps");
    let mut nl = node.run(Netlink::open).unwrap().unwrap();
    nl.add_veth(&VethSpec {
        name: "eth0",
        mac: None,
        mtu: 1500,
        alias: None,
        peer_name: "eth0",
        peer_netns: Some(eps.fd()),
    })
    .unwrap();
    let setup = |ns: &OwnedNetns, addrs: Vec<&'static str>, via: &'static str| {
        ns.run(move || {
            let mut nl = Netlink::open().unwrap();
            for l in ["lo", "eth0"] {
                let link = nl.link(l).unwrap().unwrap();
                nl.set_up(link.index).unwrap();
            }
            let eth0 = nl.link("eth0").unwrap().unwrap().index;
            for a in addrs {
                nl.add_address(eth0, format!("{a}/24").parse().unwrap())
                    .unwrap();
            }
            let gw = via.parse().unwrap();
            nl.add_route(&RouteSpec::default_via(gw, eth0, false), false)
                .unwrap();
        })
        .unwrap();
    };
    setup(&node, vec!["10.0.0.1"], "10.0.0.2");
    setup(&eps, ENDPOINTS.to_vec(), "10.0.0.1");
    for ip in ENDPOINTS {
        let l = eps
            .run(move || TcpListener::bind((ip, 8080)).unwrap())
            .unwrap();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let _ = conn.unwrap().write_all(ip.as_bytes());
            }
        });
    }
    (node, eps)
}

fn service(name: &str, ip: &str, endpoints: &[&str]) -> Service {
    let ips: Vec<Ipv4Addr> = endpoints.iter().map(|ip| ip.parse().unwrap()).collect();
    let ip = ip.parse().unwrap();
    Service::tcp(("default", name), ip, ("http", 80, 8080), &ips)
}

/// Which endpoints `n` new connections to `ip:80` reach, from the node namespace.
fn reached(node: &OwnedNetns, ip: &'static str, n: usize) -> BTreeSet<String> {
    node.run(move || {
        (0..n)
            .map(|_| {
                let addr = (ip.parse::<Ipv4Addr>().unwrap(), 80).into();
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .expect("connect to the ClusterIP");
                let mut got = String::new();
                s.read_to_string(&mut got).unwrap();
                got
            })
            .collect()
    })
    .unwrap()
}

#[test]
#[ignore = "needs root"]
fn clusterip_spreads_over_endpoints_follows_changes_and_refuses_without_any() {
    let (node, _eps) = topology();
    let web = service("web", "10.96.0.10", &ENDPOINTS);
    let empty = service("empty", "10.96.0.11", &[]);
    let services = vec![web.clone(), empty.clone()];
    // One proxy throughout (its socket stays in the node's namespace), as the lab runs it.
    let mut proxy = node.run(Proxy::open).unwrap().unwrap();
    let synced = node
        .run(|| {
            let first = proxy.sync(&services).unwrap();
            (first, proxy.verify(&services).unwrap())
        })
        .unwrap();
    assert_eq!(
        synced,
        (Synced::Replaced, Synced::Unchanged),
        "written once"
    );

    let all: BTreeSet<String> = ENDPOINTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        reached(&node, "10.96.0.10", 100),
        all,
        "100 connections reach all three"
    );

    // No endpoints: refused at once (ICMP port unreachable), as Kubernetes does.
    let refused = node
        .run(|| {
            let addr = ("10.96.0.11".parse::<Ipv4Addr>().unwrap(), 80).into();
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map(drop)
        })
        .unwrap();
    assert_eq!(
        refused.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused)
    );

    // An endpoint goes away, a Service comes, the empty one goes: written as differences,
    // and the kernel's table is then exactly what a whole write would have made.
    let fewer = vec![
        service("web", "10.96.0.10", &ENDPOINTS[..2]),
        service("new", "10.96.0.12", &ENDPOINTS[2..]),
    ];
    let (synced, back) = node
        .run(|| (proxy.sync(&fewer).unwrap(), proxy.read().unwrap()))
        .unwrap();
    assert_eq!(synced, Synced::Replaced);
    assert_eq!(
        back.map(podnet_netlink::nft::Table::sorted),
        Some(podnet_proxy::rules::desired(&fewer).sorted())
    );
    let now = reached(&node, "10.96.0.10", 60);
    assert_eq!(now, ENDPOINTS[..2].iter().map(|s| s.to_string()).collect());
    assert_eq!(
        reached(&node, "10.96.0.12", 5),
        BTreeSet::from([ENDPOINTS[2].to_string()])
    );
    let verified = node.run(|| proxy.verify(&fewer).unwrap()).unwrap();
    assert_eq!(
        verified,
        Synced::Unchanged,
        "the differences left nothing to fix"
    );

    let removed = node.run(|| proxy.remove().unwrap()).unwrap();
    assert_eq!(removed, Synced::Deleted);
}
