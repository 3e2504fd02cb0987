//! The netlink layer against the kernel, in namespaces made for each test.

use ipnet::Ipv4Net;
use podnet_netlink::netns::OwnedNetns;
use podnet_netlink::{Error, Netlink, Netns, RouteKind, RouteSpec, VethSpec, ROUTE_PROTOCOL};

fn ns(tag: &str) -> OwnedNetns {
    OwnedNetns::named(&format!("podnet-nl-{}-{tag}", std::process::id())).unwrap()
}

#[test]
#[ignore = "needs root"]
fn veth_address_route_lifecycle_across_namespaces() {
    let a = ns("a");
    let b = ns("b");
    let mut nl_a = a.run(Netlink::open).unwrap().unwrap();
    let mut nl_b = b.run(Netlink::open).unwrap().unwrap();
    nl_a.add_veth(&VethSpec {
        name: "vhost",
        mac: Some([0xee; 6]),
        mtu: 1480,
        alias: Some("podnet:test"),
        peer_name: "eth0",
        peer_netns: Some(b.fd()),
    })
    .unwrap();
    let host = nl_a.link("vhost").unwrap().unwrap();
    assert_eq!(
        (host.mtu, host.mac_string().as_str(), host.kind.as_deref()),
        (1480, "ee:ee:ee:ee:ee:ee", Some("veth"))
    );
    assert_eq!(host.alias.as_deref(), Some("podnet:test"));
    let pod = nl_b.link("eth0").unwrap().unwrap();
    assert_eq!(pod.mtu, 1480);
    assert!(
        nl_a.link("eth0").unwrap().is_none(),
        "the peer lives in the other namespace"
    );
    assert_eq!(pod.peer_index, Some(host.index));

    // Same name again: EEXIST, kept as an errno.
    let again = nl_a.add_veth(&VethSpec {
        name: "vhost",
        mac: None,
        mtu: 1500,
        alias: None,
        peer_name: "x0",
        peer_netns: None,
    });
    assert!(again.unwrap_err().is_exists());

    nl_b.set_up(pod.index).unwrap();
    nl_a.set_up(host.index).unwrap();
    let addr: Ipv4Net = "10.233.99.1/32".parse().unwrap();
    nl_b.add_address(pod.index, addr).unwrap();
    assert!(nl_b
        .addresses()
        .unwrap()
        .iter()
        .any(|a| a.index == pod.index && a.net == addr));
    let gw = RouteSpec {
        dst: "169.254.1.1/32".parse().unwrap(),
        kind: RouteKind::Unicast,
        gateway: None,
        oif: Some(pod.index),
        scope_link: true,
        onlink: false,
        protocol: ROUTE_PROTOCOL,
    };
    nl_b.add_route(&gw, false).unwrap();
    let default = RouteSpec {
        dst: "0.0.0.0/0".parse().unwrap(),
        gateway: Some("169.254.1.1".parse().unwrap()),
        scope_link: false,
        ..gw.clone()
    };
    nl_b.add_route(&default, false).unwrap();
    let routes = nl_b.routes().unwrap();
    let d = routes
        .iter()
        .find(|r| r.dst.prefix_len() == 0)
        .expect("default route");
    assert_eq!(
        (d.gateway, d.oif, d.protocol),
        (
            Some("169.254.1.1".parse().unwrap()),
            Some(pod.index),
            ROUTE_PROTOCOL
        )
    );
    assert!(routes.iter().any(|r| r.dst == gw.dst && r.scope_link));
    assert!(nl_b.add_route(&default, false).unwrap_err().is_exists());
    let looked_up = nl_b
        .route_to("8.8.8.8".parse().unwrap())
        .unwrap()
        .expect("the default route answers");
    assert_eq!(
        (looked_up.oif, looked_up.gateway),
        (Some(pod.index), Some("169.254.1.1".parse().unwrap()))
    );
    assert!(
        nl_a.route_to("8.8.8.8".parse().unwrap()).unwrap().is_none(),
        "no route in a: unreachable"
    );
    nl_b.add_route(&default, true).unwrap();

    let hole = RouteSpec {
        dst: "10.233.99.0/24".parse().unwrap(),
        kind: RouteKind::Blackhole,
        gateway: None,
        oif: None,
        scope_link: false,
        onlink: false,
        protocol: ROUTE_PROTOCOL,
    };
    nl_a.add_route(&hole, false).unwrap();
    assert!(nl_a
        .routes()
        .unwrap()
        .iter()
        .any(|r| r.kind == RouteKind::Blackhole && r.dst == hole.dst));
    nl_a.delete_route(hole.dst, ROUTE_PROTOCOL).unwrap();
    assert!(nl_a
        .delete_route(hole.dst, ROUTE_PROTOCOL)
        .unwrap_err()
        .is_not_found());

    // Sysctls apply to the namespace of the thread.
    a.run(|| podnet_netlink::sysctl::write_conf("ipv4", "vhost", "proxy_arp", "1"))
        .unwrap()
        .unwrap();
    let here = podnet_netlink::sysctl::read_conf("ipv4", "lo", "proxy_arp").unwrap();
    let there = a
        .run(|| podnet_netlink::sysctl::read_conf("ipv4", "vhost", "proxy_arp"))
        .unwrap()
        .unwrap();
    assert_eq!((here.as_str(), there.as_str()), ("0", "1"));

    nl_a.delete_link(host.index).unwrap();
    assert!(
        nl_b.link("eth0").unwrap().is_none(),
        "deleting one end removes the pair"
    );
}

#[test]
#[ignore = "needs root"]
fn namespaces_are_checked_and_removed() {
    let path =
        std::path::PathBuf::from(format!("/run/netns/podnet-nl-{}-gone", std::process::id()));
    {
        let owned = OwnedNetns::create(&path).unwrap();
        assert!(Netns::open(&path).unwrap().same_as(&owned).unwrap());
        assert!(!Netns::current().unwrap().same_as(&owned).unwrap());
    }
    assert!(!path.exists());
    assert!(matches!(Netns::open(&path), Err(Error::NetnsMissing(_))));
    assert!(matches!(
        Netns::open("/etc/hostname"),
        Err(Error::NotNetns(_))
    ));
    assert!(matches!(
        Netns::open("/proc/self/ns/uts"),
        Err(Error::NotNetns(_))
    ));
    assert!(Netns::open("/proc/self/ns/net").is_ok());
}
