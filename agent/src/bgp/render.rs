//! BIRD 2's configuration for one node, rendered from a datastore snapshot: a pure function,
//! as Calico's confd templates (`bird.cfg`, `bird_aggr.cfg`, `bird_ipam.cfg`) are.
//!
//! - `router id` = the node's address; `device` and `direct` (ignoring `cali*`) so BGP next hops
//!   resolve; the kernel protocol learns the node's own routes outside the pools (to resolve next
//!   hops beyond the subnet) and exports only pool routes: the node's blackholes and the BGP
//!   routes to other nodes' blocks, scanned every second so a route deleted by hand returns;
//! - `protocol static` with a `blackhole` per block the node owns;
//! - one `protocol bgp` per peer (see [`super::peers`]), all from one template with graceful
//!   restart, exporting the pools' blocks and nothing beneath the node's own;
//! - the kernel filter picks the device: IPIP `ifname = "tunl0"; onlink = true; gw =
//!   bgp_next_hop;` (in that order: setting `ifname` clears `gw`); VXLAN maps each node's address
//!   to its tunnel address on `vxlan.calico`; cross-subnet peers and `none` get plain routes.

use super::peers::{peers, BgpPeer};
use crate::desired::{Me, Mode};
use crate::tunnel;
use ipnet::Ipv4Net;
use podnet_ipam::bgp::BgpSettings;
use podnet_ipam::nodes::NodeRecord;
use std::fmt::Write;

/// Everything the config is made of.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    pub me: &'a Me,
    pub nodes: &'a [NodeRecord],
    /// The blocks this node owns.
    pub blocks: &'a [Ipv4Net],
    pub pools: &'a [Ipv4Net],
    pub bgp: &'a BgpSettings,
}

/// BIRD's kernel-table scan period: a route deleted by hand is back within it.
pub const KERNEL_SCAN_SECONDS: u32 = 1;

/// The whole `bird.conf`.
pub fn render(s: &Snapshot<'_>) -> String {
    let me = s.me;
    let my_ip = me.ip.addr();
    let peers = peers(&me.name, s.nodes, s.bgp);
    let pools = prefix_set(s.pools);
    let mut c = String::new();
    let w = &mut c;
    line(
        w,
        &format!(
            "# BIRD 2 configuration of node {}, rendered by podnet-agent from the datastore.",
            me.name
        ),
    );
    line(
        w,
        "# Do not edit: the agent rewrites it whenever nodes, blocks or BGP settings change.",
    );
    line(
        w,
        "log stderr { info, remote, warning, error, auth, fatal, bug };",
    );
    line(w, &format!("router id {my_ip};"));
    line(w, "");
    line(
        w,
        "# Interfaces and their subnets, so BGP next hops resolve (pods' veths left out).",
    );
    line(w, "protocol device {");
    line(w, "  scan time 2;");
    line(w, "}");
    line(w, "protocol direct {");
    line(w, "  ipv4;");
    line(w, "  interface -\"cali*\", -\"kube-ipvs*\", \"*\";");
    line(w, "}");
    line(w, "");
    line(
        w,
        "# The blocks of this node: blackholes (its pods have /32 routes of their own).",
    );
    line(w, "protocol static podnet_blocks {");
    line(w, "  ipv4;");
    for b in s.blocks {
        line(w, &format!("  route {b} blackhole;"));
    }
    line(w, "}");
    line(w, "");
    line(
        w,
        "# Export to peers: the pools' blocks, none of the routes beneath this node's own.",
    );
    line(w, "filter podnet_export_to_peers {");
    for b in s.blocks {
        line(w, &format!("  if ( net = {b} ) then accept;"));
        line(w, &format!("  if ( net ~ {b} ) then reject;"));
    }
    if let Some(pools) = &pools {
        line(w, &format!("  if ( net ~ {pools} ) then accept;"));
    }
    line(w, "  reject;");
    line(w, "}");
    line(w, "");
    line(w, "# Learn the node's own routes outside the pools (the default route resolves far next hops).");
    line(w, "filter podnet_learn_from_kernel {");
    if let Some(pools) = &pools {
        line(w, &format!("  if ( net ~ {pools} ) then reject;"));
    }
    line(w, "  accept;");
    line(w, "}");
    line(w, "");
    kernel_filter(w, s, pools.as_deref());
    line(w, "");
    line(w, "protocol kernel {");
    line(w, "  ipv4 {");
    line(w, "    import filter podnet_learn_from_kernel;");
    line(w, "    export filter podnet_kernel_programming;");
    line(w, "  };");
    line(
        w,
        "  learn;             # routes others made, to resolve next hops",
    );
    line(
        w,
        "  persist;           # keep the routes in the kernel when BIRD stops",
    );
    line(
        w,
        &format!("  scan time {KERNEL_SCAN_SECONDS};       # put back a route deleted by hand"),
    );
    line(
        w,
        "  graceful restart;  # after a restart, keep routes until BGP has converged again",
    );
    line(w, "  merge paths on;");
    line(w, "  metric 0;");
    line(w, "}");
    line(w, "");
    let my_as = s.bgp.node_as(&me.name);
    line(w, "template bgp podnet_peer {");
    line(w, &format!("  local {my_ip} as {my_as};"));
    line(w, "  multihop;");
    line(w, "  graceful restart on;");
    line(
        w,
        &format!(
            "  graceful restart time {};",
            s.bgp.cluster.graceful_restart_seconds
        ),
    );
    // BIRD's floor (it waits at least 1 s, minus up to a quarter at random: RFC 4271 §10);
    // Calico writes 2. Only the first connect after a session starts waits for it: no timer
    // that keeps a session up (hold, keepalive) is shorter than BIRD's defaults.
    line(w, "  connect delay time 1;");
    line(w, "  connect retry time 5;");
    line(w, "  error wait time 5, 30;");
    line(w, "  ipv4 {");
    line(w, "    import all;");
    line(w, "    export filter podnet_export_to_peers;");
    line(w, "    gateway recursive;");
    line(w, "    add paths on;");
    line(w, "  };");
    line(w, "}");
    if !s.bgp.cluster.node_to_node_mesh {
        line(w, "");
        line(w, "# Node-to-node mesh disabled.");
    }
    for p in &peers {
        line(w, "");
        peer(w, p, my_ip);
    }
    c
}

fn line(w: &mut String, s: &str) {
    w.push_str(s);
    w.push('\n');
}

/// `[ 10.233.64.0/18+ ]`: the pools and everything inside them; `None` without pools.
fn prefix_set(pools: &[Ipv4Net]) -> Option<String> {
    if pools.is_empty() {
        return None;
    }
    let items: Vec<String> = pools.iter().map(|p| format!("{p}+")).collect();
    Some(format!("[ {} ]", items.join(", ")))
}

/// Which kernel route a BGP route becomes, by encapsulation.
fn kernel_filter(w: &mut String, s: &Snapshot<'_>, pools: Option<&str>) {
    let me = s.me;
    line(
        w,
        "# Program the kernel: own blackholes, and other nodes' blocks by encapsulation.",
    );
    line(w, "filter podnet_kernel_programming {");
    if let Some(pools) = pools {
        line(w, &format!("  if ( net ~ {pools} ) then {{"));
        line(w, "    if ( source = RTS_STATIC ) then accept;");
        line(w, "    if ( source != RTS_BGP ) then reject;");
        let plain_in_subnet = me.cross_subnet && me.mode != Mode::None;
        if plain_in_subnet {
            line(
                w,
                &format!(
                    "    # cross-subnet: no tunnel to peers in {}",
                    me.ip.trunc()
                ),
            );
            line(
                w,
                &format!("    if ( bgp_next_hop ~ {} ) then accept;", me.ip.trunc()),
            );
        }
        match me.mode {
            Mode::Ipip => {
                let dev = tunnel::IPIP_DEVICE;
                line(
                    w,
                    &format!("    ifname = \"{dev}\"; onlink = true; gw = bgp_next_hop;"),
                );
            }
            Mode::Vxlan => {
                let dev = tunnel::VXLAN_DEVICE;
                for n in s.nodes.iter().filter(|n| n.name != me.name) {
                    let Some(tip) = n.tunnel_ip else { continue };
                    if plain_in_subnet && me.ip.contains(&n.ip) {
                        continue;
                    }
                    line(w, &format!("    if ( bgp_next_hop = {} ) then {{ ifname = \"{dev}\"; onlink = true; gw = {tip}; }}  # {}", n.ip, n.name));
                }
            }
            Mode::None => {}
        }
        line(w, "    accept;");
        line(w, "  }");
    }
    line(w, "  reject;");
    line(w, "}");
}

fn peer(w: &mut String, p: &BgpPeer, my_ip: std::net::Ipv4Addr) {
    let _ = writeln!(w, "# {} ({})", p.kind.as_str(), p.from);
    let _ = writeln!(w, "protocol bgp {} from podnet_peer {{", p.protocol());
    let _ = writeln!(w, "  neighbor {} as {};", p.ip, p.as_number);
    let _ = writeln!(w, "  source address {my_ip};");
    if p.passive {
        line(
            w,
            "  passive on;        # the peer with the higher address connects",
        );
    }
    if let Some(id) = p.rr_client_of {
        line(w, "  rr client;");
        let _ = writeln!(w, "  rr cluster id {id};");
    }
    line(w, "}");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use podnet_ipam::bgp::{NodeBgp, Peer};

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    /// The seed's five nodes (blocks' .0 as tunnel addresses, VXLAN MACs when asked).
    pub fn seed_nodes(mode: Mode) -> Vec<NodeRecord> {
        [
            ("sung-ubuntu01", "192.168.110.100", "10.233.95.0"),
            ("sung-ubuntu02", "192.168.110.101", "10.233.91.0"),
            ("sung-ubuntu03", "192.168.110.102", "10.233.112.0"),
            ("sung-ubuntu04", "192.168.110.103", "10.233.99.0"),
            ("sung-ubuntu05", "192.168.110.104", "10.233.78.0"),
        ]
        .iter()
        .map(|(n, ip, t)| NodeRecord {
            name: n.to_string(),
            ip: ip.parse().unwrap(),
            prefix_len: 16,
            tunnel_ip: (mode != Mode::None).then(|| t.parse().unwrap()),
            tunnel_mac: (mode == Mode::Vxlan).then(|| "66:00:00:00:00:01".into()),
            encapsulation: mode.as_str().into(),
            routing: "datastore".into(),
        })
        .collect()
    }

    pub fn me(mode: Mode, cross_subnet: bool) -> Me {
        Me {
            name: "sung-ubuntu04".into(),
            ip: net("192.168.110.103/16"),
            mode,
            cross_subnet,
        }
    }

    pub fn render_seed(mode: Mode, cross_subnet: bool, bgp: &BgpSettings) -> String {
        render(&Snapshot {
            me: &me(mode, cross_subnet),
            nodes: &seed_nodes(mode),
            blocks: &[net("10.233.99.0/24")],
            pools: &[net("10.233.64.0/18")],
            bgp,
        })
    }

    pub fn reflectors() -> BgpSettings {
        let mut b = BgpSettings::default();
        b.cluster.node_to_node_mesh = false;
        for rr in ["sung-ubuntu01", "sung-ubuntu02"] {
            b.nodes.insert(
                rr.into(),
                NodeBgp {
                    as_number: None,
                    route_reflector_cluster_id: Some("224.0.0.1".parse().unwrap()),
                },
            );
        }
        b
    }

    pub fn with_peers() -> BgpSettings {
        BgpSettings {
            peers: vec![
                Peer {
                    name: "tor".into(),
                    peer_ip: "192.168.0.254".parse().unwrap(),
                    as_number: 65001,
                    node: None,
                },
                Peer {
                    name: "edge".into(),
                    peer_ip: "192.168.0.253".parse().unwrap(),
                    as_number: 65002,
                    node: Some("sung-ubuntu04".into()),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn the_seed_mesh_in_ipip() {
        insta::assert_snapshot!(render_seed(Mode::Ipip, false, &BgpSettings::default()));
    }

    #[test]
    fn the_seed_mesh_in_vxlan_maps_node_addresses_to_tunnel_addresses() {
        let c = render_seed(Mode::Vxlan, false, &BgpSettings::default());
        insta::assert_snapshot!(c);
        assert!(c.contains("if ( bgp_next_hop = 192.168.110.104 ) then { ifname = \"vxlan.calico\"; onlink = true; gw = 10.233.78.0; }"));
        assert!(!c.contains("gw = 10.233.99.0"), "no mapping to itself");
    }

    #[test]
    fn unencapsulated_and_cross_subnet_routes_are_plain() {
        let none = render_seed(Mode::None, false, &BgpSettings::default());
        assert!(!none.contains("ifname"), "{none}");
        let cross = render_seed(Mode::Ipip, true, &BgpSettings::default());
        let plain = cross
            .find("if ( bgp_next_hop ~ 192.168.0.0/16 ) then accept;")
            .unwrap();
        let tunnel = cross.find("ifname = \"tunl0\"").unwrap();
        assert!(plain < tunnel, "the subnet check comes first:\n{cross}");
    }

    #[test]
    fn two_reflectors_without_the_mesh() {
        insta::assert_snapshot!(render_seed(Mode::Ipip, false, &reflectors()));
    }

    /// The config of reflector sung-ubuntu01 with `blocks`.
    fn reflector_config(blocks: &[Ipv4Net]) -> String {
        render(&Snapshot {
            me: &Me {
                name: "sung-ubuntu01".into(),
                ip: net("192.168.110.100/16"),
                mode: Mode::Ipip,
                cross_subnet: false,
            },
            nodes: &seed_nodes(Mode::Ipip),
            blocks,
            pools: &[net("10.233.64.0/18")],
            bgp: &reflectors(),
        })
    }

    #[test]
    fn a_reflector_reflects_to_its_clients() {
        let c = reflector_config(&[net("10.233.95.0/24")]);
        assert_eq!(c.matches("rr client;").count(), 3, "{c}");
        assert_eq!(c.matches("rr cluster id 224.0.0.1;").count(), 3);
    }

    #[test]
    fn a_global_and_a_node_specific_peer() {
        insta::assert_snapshot!(render_seed(Mode::Ipip, false, &with_peers()));
    }

    /// Every variant parses with the real BIRD (`bird -p`), which `cargo xtask test` installs.
    #[test]
    fn every_variant_is_accepted_by_bird_itself() {
        let variants = [
            render_seed(Mode::Ipip, false, &BgpSettings::default()),
            render_seed(Mode::Ipip, true, &BgpSettings::default()),
            render_seed(Mode::Vxlan, false, &BgpSettings::default()),
            render_seed(Mode::Vxlan, true, &reflectors()),
            render_seed(Mode::None, false, &with_peers()),
            render(&Snapshot {
                me: &me(Mode::Ipip, false),
                nodes: &seed_nodes(Mode::Ipip)[3..4],
                blocks: &[],
                pools: &[],
                bgp: &BgpSettings::default(),
            }),
        ];
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::bgp::daemon::Paths::new(dir.path());
        for v in &variants {
            if let Err(e) = crate::bgp::daemon::check_config("bird", &paths, v) {
                panic!("{e} (is bird2 installed? `cargo xtask test` installs it)\n{v}");
            }
        }
    }

    /// The sessions of a config, as (protocol, neighbor, AS, passive, rr client, cluster id).
    pub fn sessions(conf: &str) -> Vec<(String, String, u32, bool, bool, Option<String>)> {
        let mut out = Vec::new();
        for block in conf.split("protocol bgp ").skip(1) {
            let body = &block[..block.find("\n}").unwrap()];
            let name = body.split_whitespace().next().unwrap().to_string();
            let words = |after: &str| -> Vec<String> {
                body.lines()
                    .map(str::trim)
                    .find_map(|l| l.strip_prefix(after))
                    .map(|rest| {
                        rest.trim_end_matches(';')
                            .split_whitespace()
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let neighbor = words("neighbor ");
            let id = words("rr cluster id ").first().cloned();
            out.push((
                name,
                neighbor[0].clone(),
                neighbor[2].parse().unwrap(),
                body.contains("passive on;"),
                body.lines().any(|l| l.trim() == "rr client;"),
                id,
            ));
        }
        out
    }

    /// Calico's compiled `mesh/ipip-always` template (node 10.192.0.2 of kube-master,
    /// kube-node-1 and kube-node-2, AS 64512) holds these sessions and filters; ours must hold
    /// the same structure for the same cluster.
    #[test]
    fn the_mesh_matches_calicos_compiled_mesh_template() {
        let nodes: Vec<NodeRecord> = [
            ("kube-master", "10.192.0.2"),
            ("kube-node-1", "10.192.0.3"),
            ("kube-node-2", "10.192.0.4"),
        ]
        .iter()
        .map(|(n, ip)| NodeRecord {
            name: n.to_string(),
            ip: ip.parse().unwrap(),
            prefix_len: 16,
            tunnel_ip: None,
            tunnel_mac: None,
            encapsulation: "ipip".into(),
            routing: "datastore".into(),
        })
        .collect();
        let me = Me {
            name: "kube-master".into(),
            ip: net("10.192.0.2/16"),
            mode: Mode::Ipip,
            cross_subnet: false,
        };
        let c = render(&Snapshot {
            me: &me,
            nodes: &nodes,
            blocks: &[net("192.168.221.64/26")],
            pools: &[net("192.168.0.0/16")],
            bgp: &BgpSettings::default(),
        });
        // From Calico: `protocol bgp Mesh_10_192_0_3 { neighbor 10.192.0.3 as 64512; source
        // address 10.192.0.2; passive on; }`, the same for 10.192.0.4.
        let want = vec![
            (
                "Mesh_10_192_0_3".to_string(),
                "10.192.0.3".to_string(),
                64512,
                true,
                false,
                None,
            ),
            (
                "Mesh_10_192_0_4".to_string(),
                "10.192.0.4".to_string(),
                64512,
                true,
                false,
                None,
            ),
        ];
        assert_eq!(sessions(&c), want);
        for calico in [
            "router id 10.192.0.2;",
            "local 10.192.0.2 as 64512;",
            "source address 10.192.0.2;",
            "graceful restart",
            "connect delay time 1;", // Calico's is 2: podnet takes BIRD's floor
            "connect retry time 5;",
            "error wait time 5, 30;",
            "gateway recursive;",
            "add paths on;",
            "interface -\"cali*\", -\"kube-ipvs*\", \"*\";",
            "route 192.168.221.64/26 blackhole;",
            "if ( net = 192.168.221.64/26 ) then accept;",
            "if ( net ~ 192.168.221.64/26 ) then reject;",
            "persist;",
            "merge paths on;",
        ] {
            assert!(c.contains(calico), "missing {calico:?}:\n{c}");
        }
        // Calico's fork sets krt_tunnel = "tunl0"; stock BIRD says it with three attributes.
        assert!(c.contains("ifname = \"tunl0\"; onlink = true; gw = bgp_next_hop;"));
    }

    /// Calico's compiled `explicit_peering/route_reflector`: a reflector (cluster id 10.0.0.1)
    /// with the mesh off has `rr client; rr cluster id 10.0.0.1;` toward its client nodes.
    #[test]
    fn reflectors_match_calicos_compiled_route_reflector_template() {
        let c = reflector_config(&[]);
        let s = sessions(&c);
        let to_client = s.iter().find(|s| s.1 == "192.168.110.103").unwrap();
        assert!(to_client.0.starts_with("Node_"));
        assert!(to_client.4 && to_client.5.as_deref() == Some("224.0.0.1"));
        assert!(c.contains("# Node-to-node mesh disabled."));
    }
}
