//! The table a node's proxy wants, as plain data: kube-proxy's nftables layout for ClusterIP
//! Services (`pkg/proxy/nftables/proxier.go`), reduced to what ClusterIPs need.
//!
//! ```text
//! nat-prerouting, nat-output (dstnat)  jump services
//! services                             ip daddr . meta l4proto . th dport vmap @services
//! service-NS/NAME/PROTO/PORT           numgen random mod N vmap @service-...-endpoints
//! endpoint-NS/NAME/PROTO/PORT__IP/TP   ip saddr IP jump mark-for-masquerade   (hairpin)
//!                                      meta l4proto PROTO dnat to IP:TP
//! nat-postrouting (srcnat)             jump masquerading
//! masquerading                         meta mark & 0x4000 == 0 return; clear it; masquerade
//! filter-output, filter-forward        ... vmap @no-endpoint-services -> reject
//! ```

use crate::model::{Service, ServicePort};
use podnet_netlink::nft::{
    BaseChain, Chain, ChainKind, Expr, Field, HookPoint, Map, MapKey, Rule, Table, Verdict,
};

pub const TABLE: &str = "podnet-proxy";
/// kube-proxy's masquerade mark (bit 14).
pub const MASQUERADE_MARK: u32 = 0x4000;
const DSTNAT: i32 = -100;
const SRCNAT: i32 = 100;
/// Before DNAT, as kube-proxy's filter chains.
const FILTER: i32 = -110;

fn base(name: &str, kind: ChainKind, hook: HookPoint, priority: i32, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.into(),
        base: Some(BaseChain {
            kind,
            hook,
            priority,
        }),
        rules,
    }
}

fn chain(name: impl Into<String>, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.into(),
        base: None,
        rules,
    }
}

fn rule(exprs: impl IntoIterator<Item = Expr>) -> Rule {
    Rule {
        exprs: exprs.into_iter().collect(),
    }
}

fn jump(to: &str) -> Rule {
    rule([Expr::Verdict(Verdict::Jump(to.into()))])
}

/// A port's name, or its number when it has none.
fn port_label(p: &ServicePort) -> String {
    if p.name.is_empty() {
        p.port.to_string()
    } else {
        p.name.clone()
    }
}

/// `service-NS/NAME/PROTO/PORT` (kube-proxy's chain name, without its hash prefix).
pub fn service_chain(s: &Service, p: &ServicePort) -> String {
    format!("service-{}/{}/{}", s.id(), p.protocol, port_label(p))
}

/// The table for `services`: every ClusterIP port with endpoints goes to one of them at
/// random; one without endpoints is refused.
pub fn desired(services: &[Service]) -> Table {
    let mut services: Vec<&Service> = services.iter().collect();
    services.sort_by_key(|s| s.id());
    let dispatch = |map: &str| rule(Expr::service_dispatch(map));
    let mut chains = vec![
        base(
            "filter-output",
            ChainKind::Filter,
            HookPoint::Output,
            FILTER,
            vec![dispatch("no-endpoint-services")],
        ),
        base(
            "filter-forward",
            ChainKind::Filter,
            HookPoint::Forward,
            FILTER,
            vec![dispatch("no-endpoint-services")],
        ),
        base(
            "nat-prerouting",
            ChainKind::Nat,
            HookPoint::Prerouting,
            DSTNAT,
            vec![jump("services")],
        ),
        base(
            "nat-output",
            ChainKind::Nat,
            HookPoint::Output,
            DSTNAT,
            vec![jump("services")],
        ),
        base(
            "nat-postrouting",
            ChainKind::Nat,
            HookPoint::Postrouting,
            SRCNAT,
            vec![jump("masquerading")],
        ),
        chain("services", vec![dispatch("services")]),
        chain("reject-chain", vec![rule([Expr::Reject])]),
        chain(
            "mark-for-masquerade",
            vec![rule(Expr::mark_set(MASQUERADE_MARK))],
        ),
        chain(
            "masquerading",
            vec![
                rule(
                    Expr::mark_has(MASQUERADE_MARK, false)
                        .into_iter()
                        .chain([Expr::Verdict(Verdict::Return)]),
                ),
                rule(Expr::mark_flip(MASQUERADE_MARK)),
                rule([Expr::Masquerade { fully_random: true }]),
            ],
        ),
    ];
    let mut maps = Vec::new();
    let mut to_service = Vec::new();
    let mut refused = Vec::new();
    for s in services {
        let mut endpoints = s.endpoints.clone();
        endpoints.sort();
        endpoints.dedup();
        for p in &s.ports {
            let key = Map::service_key(s.cluster_ip, p.protocol.number(), p.port);
            if endpoints.is_empty() {
                refused.push((key, Verdict::Goto("reject-chain".into())));
                continue;
            }
            let name = service_chain(s, p);
            let picks = format!("{name}-endpoints");
            let mut targets = Vec::new();
            for (i, e) in endpoints.iter().enumerate() {
                let ep = format!(
                    "endpoint-{}/{}/{}__{}/{}",
                    s.id(),
                    p.protocol,
                    port_label(p),
                    e.ip,
                    p.target_port_of(e.ip)
                );
                // Hairpin: a pod reaching itself through its Service leaves masqueraded, or
                // its own reply would bypass the DNAT's reverse translation.
                let hairpin = Expr::addr_is(Field::IpSaddr, e.ip, true)
                    .into_iter()
                    .chain([Expr::Verdict(Verdict::Jump("mark-for-masquerade".into()))]);
                chains.push(chain(
                    ep.clone(),
                    vec![
                        rule(hairpin),
                        rule(Expr::dnat_to(
                            p.protocol.number(),
                            e.ip,
                            p.target_port_of(e.ip),
                        )),
                    ],
                ));
                targets.push((Map::index_key(i as u32), Verdict::Goto(ep)));
            }
            chains.push(chain(
                name.clone(),
                vec![rule(Expr::pick_random(endpoints.len() as u32, &picks))],
            ));
            maps.push(Map::new(picks, MapKey::Index, targets));
            to_service.push((key, Verdict::Goto(name)));
        }
    }
    maps.push(Map::new("services", MapKey::AddrProtoPort, to_service));
    maps.push(Map::new(
        "no-endpoint-services",
        MapKey::AddrProtoPort,
        refused,
    ));
    Table {
        name: TABLE.into(),
        sets: Vec::new(),
        maps,
        chains,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn web(endpoints: &[&str]) -> Service {
        let ips: Vec<_> = endpoints.iter().map(|ip| ip.parse().unwrap()).collect();
        let ip = "10.233.0.20".parse().unwrap();
        Service::tcp(("default", "web"), ip, ("http", 80, 8080), &ips)
    }

    #[test]
    fn a_service_with_endpoints_renders_as_kube_proxy_writes_it() {
        let mut dns = web(&[]);
        dns.name = "dns".into();
        dns.cluster_ip = "10.233.0.3".parse().unwrap();
        dns.ports = vec![ServicePort {
            name: String::new(),
            protocol: Protocol::Udp,
            port: 53,
            target_port: 53,
            endpoint_ports: Default::default(),
        }];
        let t = desired(&[web(&["10.233.78.2", "10.233.99.2"]), dns]);
        insta::assert_snapshot!(t.to_string());
    }

    #[test]
    fn same_input_same_table_whatever_the_order() {
        let a = desired(&[web(&["10.0.0.2", "10.0.0.1", "10.0.0.2"])]);
        let b = desired(&[web(&["10.0.0.1", "10.0.0.2"])]);
        assert_eq!(a, b);
        let picks = a.map("service-default/web/tcp/http-endpoints").unwrap();
        assert_eq!(picks.elements().len(), 2, "duplicates count once");
    }

    #[test]
    fn each_endpoint_is_translated_to_its_own_port() {
        let mut s = web(&["10.233.78.2", "10.233.99.2"]);
        s.ports[0]
            .endpoint_ports
            .insert("10.233.99.2".parse().unwrap(), 9090);
        let text = desired(&[s]).to_string();
        assert!(text.contains("dnat to 10.233.78.2:8080"), "{text}");
        assert!(text.contains("dnat to 10.233.99.2:9090"), "{text}");
        assert!(!text.contains("10.233.99.2:8080"), "{text}");
    }

    #[test]
    fn no_endpoints_means_refused_not_routed_away() {
        let t = desired(&[web(&[])]);
        assert!(t.map("services").unwrap().elements().is_empty());
        let refused = t.map("no-endpoint-services").unwrap();
        assert_eq!(
            refused.elements(),
            &[(
                Map::service_key("10.233.0.20".parse().unwrap(), 6, 80),
                Verdict::Goto("reject-chain".into())
            )]
        );
    }
}
