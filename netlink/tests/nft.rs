//! nftables over netlink against the real kernel, in throwaway namespaces (root only). `nft`
//! is used here to look, never by the product.

use podnet_netlink::netns::OwnedNetns;
use podnet_netlink::nft::{
    BaseChain, Chain, ChainKind, Expr, Field, HookPoint, NftEvent, NftMonitor, Nftables, Rule, Set,
    Table,
};
use std::process::Command;

fn ns(tag: &str) -> OwnedNetns {
    OwnedNetns::named(&format!("podnet-nft-{}-{tag}", std::process::id())).unwrap()
}

fn nft(ns: &OwnedNetns, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .arg("nft")
        .args(args)
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn egress_like(pools: &[&str]) -> Table {
    let pools: Vec<ipnet::Ipv4Net> = pools.iter().map(|p| p.parse().unwrap()).collect();
    let mut masq = Vec::new();
    masq.extend(Expr::in_set(Field::IpSaddr, "nat-pools", true));
    masq.extend(Expr::in_set(Field::IpDaddr, "all-pools", false));
    masq.push(Expr::counter());
    masq.push(Expr::Masquerade { fully_random: true });
    let mut fix = Vec::new();
    fix.extend(Expr::oifname_is("tunl0"));
    fix.extend(Expr::saddr_is_local());
    fix.extend(Expr::addr_is(
        Field::IpSaddr,
        "10.233.90.0".parse().unwrap(),
        false,
    ));
    fix.push(Expr::Masquerade {
        fully_random: false,
    });
    Table {
        name: "podnet".into(),
        sets: vec![
            Set::new("all-pools", pools.clone()),
            Set::new("nat-pools", pools),
        ],
        maps: Vec::new(),
        chains: vec![Chain {
            name: "nat".into(),
            base: Some(BaseChain {
                kind: ChainKind::Nat,
                hook: HookPoint::Postrouting,
                priority: 100,
            }),
            rules: vec![Rule { exprs: fix }, Rule { exprs: masq }],
        }],
    }
}

#[test]
#[ignore = "needs root"]
fn a_table_is_replaced_whole_read_back_and_others_are_left_alone() {
    let n = ns("replace");
    // Someone else's table, made first: it must come out byte-identical.
    nft(&n, &["add", "table", "ip", "theirs"]);
    nft(
        &n,
        &[
            "add",
            "chain",
            "ip",
            "theirs",
            "c",
            "{ type filter hook forward priority 0; }",
        ],
    );
    nft(
        &n,
        &[
            "add",
            "rule",
            "ip",
            "theirs",
            "c",
            "ip saddr 192.0.2.1 counter drop",
        ],
    );
    let theirs = nft(&n, &["-j", "list", "table", "ip", "theirs"]);

    let want = egress_like(&["10.233.64.0/18"]);
    let got = n
        .run(move || -> podnet_netlink::Result<_> {
            let mut nf = Nftables::open()?;
            assert_eq!(nf.read("podnet")?, None);
            nf.check(&want)?;
            assert_eq!(nf.read("podnet")?, None, "a check commits nothing");
            nf.replace(&want)?;
            let first = nf.read("podnet")?;
            // Again with other pools: replaced, not added to.
            let want2 = egress_like(&["10.233.64.0/18", "172.16.0.0/16"]);
            nf.replace(&want2)?;
            let second = nf.read("podnet")?;
            // A big set, whose element dump spans several datagrams, reads back whole.
            let many: Vec<String> = (0..2000)
                .map(|i| format!("10.{}.{}.0/24", i / 100, i % 100 * 2))
                .collect();
            let many: Vec<&str> = many.iter().map(String::as_str).collect();
            let big = egress_like(&many);
            nf.replace(&big)?;
            assert_eq!(big.sets[0].elements().len(), 2000);
            assert_eq!(nf.read("podnet")?.map(Table::sorted), Some(big.sorted()));
            nf.replace(&want2)?;
            Ok((want, first, want2, second))
        })
        .unwrap()
        .unwrap();
    let (want, first, want2, second) = got;
    assert_eq!(first.map(Table::sorted), Some(want.sorted()));
    assert_eq!(
        second.clone().map(Table::sorted),
        Some(want2.clone().sorted())
    );

    let listed = nft(&n, &["list", "table", "ip", "podnet"]);
    assert!(
        listed.contains("type nat hook postrouting priority srcnat"),
        "{listed}"
    );
    assert!(listed.contains("ip saddr @nat-pools ip daddr != @all-pools counter packets 0 bytes 0 masquerade fully-random"), "{listed}");
    assert!(
        listed
            .contains("oifname \"tunl0\" fib saddr type local ip saddr != 10.233.90.0 masquerade"),
        "{listed}"
    );
    assert!(listed.contains("10.233.64.0/18"), "{listed}");
    assert!(listed.contains("172.16.0.0/16"), "{listed}");
    assert_eq!(listed.matches("chain nat").count(), 1, "{listed}");
    assert_eq!(nft(&n, &["-j", "list", "table", "ip", "theirs"]), theirs);

    // A rule changed by hand reads back different.
    nft(&n, &["flush", "chain", "ip", "podnet", "nat"]);
    let after_flush = n
        .run(|| Nftables::open().and_then(|mut nf| nf.read("podnet")))
        .unwrap()
        .unwrap()
        .unwrap();
    assert_ne!(after_flush.sorted(), want2.sorted());
    nft(
        &n,
        &[
            "add",
            "rule",
            "ip",
            "podnet",
            "nat",
            "ip saddr 10.0.0.0/8 notrack",
        ],
    );
    let with_foreign = n
        .run(|| Nftables::open().and_then(|mut nf| nf.read("podnet")))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(with_foreign.chains[0].rules[0]
        .exprs
        .iter()
        .any(|e| matches!(e, Expr::Unknown(_))));
    let deleted = n
        .run(|| Nftables::open().and_then(|mut nf| nf.delete("podnet")))
        .unwrap()
        .unwrap();
    assert!(deleted);
    assert_eq!(nft(&n, &["-j", "list", "table", "ip", "theirs"]), theirs);
}

#[test]
#[ignore = "needs root"]
fn a_refused_batch_changes_nothing_and_says_which_part() {
    let n = ns("refused");
    let good = egress_like(&["10.233.64.0/18"]);
    let mut bad = good.clone();
    // A lookup in a set that does not exist: the kernel refuses that rule.
    bad.chains[0].rules[1].exprs[1] = Expr::Lookup {
        set: "missing".into(),
        invert: false,
    };
    let (err, after) = n
        .run(move || -> podnet_netlink::Result<_> {
            let mut nf = Nftables::open()?;
            nf.replace(&good)?;
            let err = nf.replace(&bad).unwrap_err();
            Ok((
                err.to_string(),
                nf.read("podnet")?.map(|t| (t.sorted(), good.sorted())),
            ))
        })
        .unwrap()
        .unwrap();
    assert!(err.contains("replace nftables table ip podnet"), "{err}");
    assert!(err.contains("@missing"), "names the rule: {err}");
    let (after, good) = after.expect("the old table stays");
    assert_eq!(after, good);
}

#[test]
#[ignore = "needs root"]
fn changes_by_hand_are_seen_by_the_monitor() {
    let n = ns("monitor");
    let mut monitor = n.run(NftMonitor::open).unwrap().unwrap();
    nft(&n, &["add", "table", "ip", "podnet"]);
    let events = monitor.wait().unwrap();
    assert!(
        events.contains(&NftEvent::Table("podnet".into())),
        "{events:?}"
    );
    nft(&n, &["delete", "table", "ip", "podnet"]);
    let events = monitor.wait().unwrap();
    assert!(
        events.contains(&NftEvent::Table("podnet".into())),
        "{events:?}"
    );
}

/// kube-proxy's shape (a `services` map by address, protocol and port, a chain per Service
/// picking an endpoint at random, a chain per endpoint doing DNAT), with real connections: a
/// client namespace reaches 10.96.0.1:80 and lands on each of three servers, and the table
/// reads back equal to what was written.
#[test]
#[ignore = "needs root"]
fn a_service_map_dnats_to_every_endpoint_and_reads_back() {
    use podnet_netlink::nft::{Map, MapKey, Verdict};
    use podnet_netlink::{Netlink, RouteSpec, VethSpec};
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    let client = ns("svc-client");
    let server = ns("svc-server");
    let mut nl = client.run(Netlink::open).unwrap().unwrap();
    nl.add_veth(&VethSpec {
        name: "eth0",
        mac: None,
        mtu: 1500,
        alias: None,
        peer_name: "eth0",
        peer_netns: Some(server.fd()),
    })
    .unwrap();
    for (ns, ip) in [(&client, "10.0.0.1/24"), (&server, "10.0.0.2/24")] {
        ns.run(move || {
            let mut nl = Netlink::open().unwrap();
            for l in ["lo", "eth0"] {
                let link = nl.link(l).unwrap().unwrap();
                nl.set_up(link.index).unwrap();
            }
            let eth0 = nl.link("eth0").unwrap().unwrap();
            nl.add_address(eth0.index, ip.parse().unwrap()).unwrap();
        })
        .unwrap();
    }
    // The ClusterIP is nobody's address: the client only needs a route that leaves.
    client
        .run(|| {
            let mut nl = Netlink::open().unwrap();
            let eth0 = nl.link("eth0").unwrap().unwrap();
            nl.add_route(
                &RouteSpec::default_via("10.0.0.2".parse().unwrap(), eth0.index, false),
                false,
            )
            .unwrap();
        })
        .unwrap();
    let ports = [8001u16, 8002, 8003];
    let listeners: Vec<TcpListener> = ports
        .iter()
        .map(|p| {
            server
                .run(move || TcpListener::bind(("10.0.0.2", *p)).unwrap())
                .unwrap()
        })
        .collect();
    for l in listeners {
        std::thread::spawn(move || {
            let port = l.local_addr().unwrap().port();
            for conn in l.incoming() {
                let _ = conn.unwrap().write_all(port.to_string().as_bytes());
            }
        });
    }

    let server_ip: Ipv4Addr = "10.0.0.2".parse().unwrap();
    let mut chains = vec![Chain {
        name: "nat-output".into(),
        base: Some(BaseChain {
            kind: ChainKind::Nat,
            hook: HookPoint::Output,
            priority: -100,
        }),
        rules: vec![Rule {
            exprs: Expr::service_dispatch("services").to_vec(),
        }],
    }];
    chains.push(Chain {
        name: "svc-web".into(),
        base: None,
        rules: vec![Rule {
            exprs: Expr::pick_random(3, "svc-web-eps").to_vec(),
        }],
    });
    for (i, p) in ports.iter().enumerate() {
        let mut hairpin = Expr::addr_is(Field::IpSaddr, server_ip, true).to_vec();
        hairpin.push(Expr::Verdict(Verdict::Jump("mark-for-masquerade".into())));
        chains.push(Chain {
            name: format!("ep-web-{i}"),
            base: None,
            rules: vec![
                Rule { exprs: hairpin },
                Rule {
                    exprs: Expr::dnat_to(6, server_ip, *p).to_vec(),
                },
            ],
        });
    }
    chains.push(Chain {
        name: "mark-for-masquerade".into(),
        base: None,
        rules: vec![Rule {
            exprs: Expr::mark_set(0x4000).to_vec(),
        }],
    });
    let want = Table {
        name: "services".into(),
        sets: vec![],
        maps: vec![
            Map::new(
                "services",
                MapKey::AddrProtoPort,
                [(
                    Map::service_key("10.96.0.1".parse().unwrap(), 6, 80),
                    Verdict::Goto("svc-web".into()),
                )],
            ),
            Map::new(
                "svc-web-eps",
                MapKey::Index,
                (0..3).map(|i| (Map::index_key(i), Verdict::Goto(format!("ep-web-{i}")))),
            ),
        ],
        chains,
    };
    let wanted = want.clone();
    let back = client
        .run(move || -> podnet_netlink::Result<_> {
            let mut nf = Nftables::open()?;
            nf.replace(&wanted)?;
            nf.read("services")
        })
        .unwrap()
        .unwrap();
    assert_eq!(back.map(Table::sorted), Some(want.clone().sorted()));

    // Only the differences: endpoint 2 goes (its chain, its map element), the pick is mod 2,
    // a second Service comes; the result is exactly the new table.
    let mut fewer = want.clone();
    fewer.chains.retain(|c| c.name != "ep-web-2");
    let pick = fewer
        .chains
        .iter_mut()
        .find(|c| c.name == "svc-web")
        .unwrap();
    pick.rules = vec![Rule {
        exprs: Expr::pick_random(2, "svc-web-eps").to_vec(),
    }];
    fewer.maps[1] = Map::new(
        "svc-web-eps",
        MapKey::Index,
        (0..2).map(|i| (Map::index_key(i), Verdict::Goto(format!("ep-web-{i}")))),
    );
    fewer.maps[0] = Map::new(
        "services",
        MapKey::AddrProtoPort,
        [80u16, 8080].map(|p| {
            (
                Map::service_key("10.96.0.1".parse().unwrap(), 6, p),
                Verdict::Goto("svc-web".into()),
            )
        }),
    );
    let (old, new) = (want.clone(), fewer.clone());
    let (synced, back) = client
        .run(move || -> podnet_netlink::Result<_> {
            let mut nf = Nftables::open()?;
            Ok((nf.update(&old, &new)?, nf.read("services")?))
        })
        .unwrap()
        .unwrap();
    assert_eq!(synced, podnet_netlink::nft::Synced::Replaced);
    assert_eq!(back.map(Table::sorted), Some(fewer.clone().sorted()));
    // Back to the first table the same way, for the traffic below.
    let (old, new) = (fewer, want.clone());
    client
        .run(move || Nftables::open()?.update(&old, &new))
        .unwrap()
        .unwrap();
    let listed = nft(&client, &["list", "table", "ip", "services"]);
    for words in [
        "ip daddr . meta l4proto . th dport vmap @services",
        "numgen random mod 3 vmap @svc-web-eps",
        "dnat to 10.0.0.2:8001",
        "10.96.0.1 . tcp . 80 : goto svc-web",
    ] {
        assert!(listed.contains(words), "{words}:\n{listed}");
    }

    let reached: std::collections::BTreeSet<String> = client
        .run(|| {
            (0..60)
                .map(|_| {
                    let mut s =
                        TcpStream::connect(("10.96.0.1", 80)).expect("connect to the ClusterIP");
                    let mut got = String::new();
                    s.read_to_string(&mut got).unwrap();
                    got
                })
                .collect()
        })
        .unwrap();
    assert_eq!(
        reached,
        ports.iter().map(|p| p.to_string()).collect(),
        "60 connections to 10.96.0.1:80 reach every endpoint"
    );
}
