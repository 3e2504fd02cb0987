//! Bad flags and a host that doesn't fit: a clear error, a non-zero exit, nothing changed
//! (no node record, no tunnel device, no route, no MTU file).

mod common;

use common::Cluster;
use podnet_netlink::VethSpec;

/// Node 0's agent command with the value of `flag` replaced.
fn replaced(c: &Cluster, encap: &str, flag: &str, value: &str) -> std::process::Command {
    let cmd = c.agent_command(0, encap, &[]);
    let mut args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let at = args.iter().position(|a| a == flag).unwrap() + 1;
    args[at] = value.to_string();
    let mut fixed = std::process::Command::new("nsenter");
    fixed.args(&args);
    fixed
}

/// Runs node 0's agent with `encap` and `extra`, expecting it to fail; returns exit code and
/// stderr, after checking nothing was changed.
fn refused(c: &Cluster, encap: &str, extra: &[&str], store_should_exist: bool) -> (i32, String) {
    refused_with(c, c.agent_command(0, encap, extra), store_should_exist)
}

fn refused_with(
    c: &Cluster,
    mut cmd: std::process::Command,
    store_should_exist: bool,
) -> (i32, String) {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the agent started: {err}");
    let vx = c.netlink(0).link("vxlan.calico").unwrap();
    assert!(
        vx.is_none_or(|l| l.kind.as_deref() != Some("vxlan")),
        "a tunnel device was made"
    );
    assert!(c.owned_routes(0).is_empty(), "routes were made");
    assert!(
        !c.nodes[0].state.join("mtu").exists(),
        "the MTU was published"
    );
    if store_should_exist && c.store().exists() {
        let s =
            podnet_ipam::store::sqlite::SqliteStore::open(c.store(), Default::default()).unwrap();
        let (nodes, _) = podnet_ipam::nodes::list(&s).unwrap();
        assert!(nodes.is_empty(), "a node was registered: {nodes:?}");
    }
    (out.status.code().unwrap_or(-1), err)
}

#[test]
#[ignore = "needs root"]
fn unknown_encapsulation_is_refused_by_the_flags() {
    let c = Cluster::new("badencap", 1);
    let (code, err) = refused(&c, "gre", &[], true);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("gre") && err.contains("vxlan"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn a_node_ip_not_on_this_host_is_refused() {
    let c = Cluster::new("badip", 1);
    let (code, err) = refused_with(
        &c,
        replaced(&c, "vxlan", "--node-ip", "192.168.110.250"),
        true,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("192.168.110.250 is not on any interface"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root"]
fn an_unwritable_datastore_is_refused() {
    let c = Cluster::new("badstore", 1);
    let file = c.dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let path = file.join("store.db").display().to_string();
    let (code, err) = refused_with(&c, replaced(&c, "vxlan", "--datastore", &path), false);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("datastore"), "{err}");
    assert!(c.netlink(0).link("vxlan.calico").unwrap().is_none());
}

#[test]
#[ignore = "needs root"]
fn a_tunnel_name_held_by_another_kind_of_device_is_refused() {
    let c = Cluster::new("badtunnel", 1);
    let mut nl = c.netlink(0);
    nl.add_veth(&VethSpec {
        name: "vxlan.calico",
        mac: None,
        mtu: 1500,
        alias: None,
        peer_name: "x0",
        peer_netns: None,
    })
    .unwrap();
    let (code, err) = refused(&c, "vxlan", &[], true);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("vxlan.calico is taken by a veth device"),
        "{err}"
    );
    let still = nl.link("vxlan.calico").unwrap().unwrap();
    assert_eq!(
        still.kind.as_deref(),
        Some("veth"),
        "the other device is left alone"
    );
}
