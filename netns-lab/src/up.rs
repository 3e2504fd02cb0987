//! `podnet-lab up`: the fabric, the nodes with their agents, then the pods through the real
//! CNI plugin. Each namespace and process is recorded in the lab state before it is made.

use crate::procs::{self, Placement, PodNs};
use crate::progress::Progress;
use crate::runtime::{self, Binaries};
use crate::scenario::{Encap, Scenario};
use crate::state::{self, LabState, NodeState};
use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use podnet_ipam::store::etcd_member::EtcdMember;
use podnet_netlink::netns::{self, Netns};
use podnet_netlink::{Netlink, Uplink};
use std::process::Command;
use std::time::{Duration, Instant};

/// How many CNI ADDs run at once.
const PARALLEL_ADDS: usize = 4;

/// IPIP is usable without touching the host: the module is loaded (or built in).
fn ipip_loaded() -> bool {
    std::path::Path::new("/sys/module/ipip").exists()
}

/// Settles `auto`, saying how to get IPIP when it falls back to VXLAN.
pub fn resolve_encap(asked: Encap) -> Encap {
    match asked {
        Encap::Auto if ipip_loaded() => Encap::Ipip,
        Encap::Auto => {
            eprintln!(
                "note: this kernel has no IPIP loaded, so the lab uses VXLAN (same routes, tunnel vxlan.calico instead of tunl0).\n      \
                 For IPIP as in the seed: `modprobe ipip` then `podnet-lab up --encap ipip`, or on a kernel without it `cargo xtask vm --shell`."
            );
            Encap::Vxlan
        }
        other => other,
    }
}

/// BGP routing needs BIRD 2 on this machine: say how to get it, or how to do without.
fn check_bird() -> Result<()> {
    let found = Command::new("bird")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        bail!(
            "the lab routes by BGP, as the seed's cluster does, and needs BIRD 2 for it (Debian package bird2, \
             2.0.12 or newer): `apt-get install bird2` (`cargo xtask lab` installs it), \
             or `podnet-lab up --routing datastore` to have the agents write the routes themselves"
        );
    }
    Ok(())
}

pub fn up(
    scenario: Scenario,
    encap: Encap,
    datastore: &str,
    etcd_members: usize,
    routing: &str,
    bins: &Binaries,
    timeout: Duration,
) -> Result<LabState> {
    let started = Instant::now();
    // BIRD on this machine: for the routers, and for agents that run from here (an agent
    // image brings its own).
    if (routing == "bgp" && bins.agent_image.is_none()) || !scenario.routers.is_empty() {
        check_bird()?;
    }
    if let Some(image) = &bins.agent_image {
        crate::agent_image::check(image)?;
    }
    if routing != "bgp" && !scenario.segments.is_empty() {
        bail!(
            "scenario {} has racks joined by routers, which learn the pods' blocks only by BGP: use --routing bgp",
            scenario.name
        );
    }
    if state::dir(&scenario.name).join("state.json").exists() {
        bail!(
            "lab {} is already up (or left over): run `podnet-lab down` first",
            scenario.name
        );
    }
    for name in scenario
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .chain(scenario.routers.iter().map(|r| r.name.clone()))
        .chain(
            scenario
                .pods()
                .iter()
                .map(|p| p.manifest.metadata.name.clone()),
        )
    {
        if std::path::Path::new(&LabState::netns_path(&name)).exists() {
            bail!("a network namespace named {name} already exists (/run/netns/{name}); remove it or rename the lab's");
        }
    }
    let encap = resolve_encap(encap);
    let mut lab = LabState {
        name: scenario.name.clone(),
        scenario,
        encapsulation: encap.as_str().into(),
        created: state::now(),
        namespaces: Vec::new(),
        nodes: Vec::new(),
        pods: Vec::new(),
        complete: false,
        datastore: datastore.to_string(),
        retired_ips: Vec::new(),
        etcd_members: Vec::new(),
        etcd_size: etcd_members,
        routing: routing.to_string(),
        routers: Vec::new(),
        outside: Vec::new(),
        service_procs: Vec::new(),
        mount_template: None,
        agent_image: bins.agent_image.clone(),
    };
    lab.save()?;
    // From here on, a failure removes everything this `up` made.
    if let Err(e) = build(&mut lab, encap, bins, timeout) {
        eprintln!("podnet-lab: up failed, removing what it made");
        if let Err(d) = crate::down::down(&lab.name) {
            eprintln!("{d:#}");
        }
        return Err(e);
    }
    eprintln!(
        "lab {} is up in {:.1} s ({} nodes, {} pods, {}, routes by {})",
        lab.name,
        started.elapsed().as_secs_f64(),
        lab.nodes.len(),
        lab.pods.len(),
        lab.encapsulation,
        if lab.bgp() {
            "BGP (BIRD)"
        } else {
            "the agents"
        }
    );
    Ok(lab)
}

fn build(lab: &mut LabState, encap: Encap, bins: &Binaries, timeout: Duration) -> Result<()> {
    std::fs::create_dir_all(lab.logs())?;
    let t = Instant::now();
    build_fabric_and_nodes(lab)?;
    let nodes = t.elapsed();
    if encap == Encap::Ipip {
        let first = LabState::netns_path(&lab.scenario.nodes[0].name);
        let mut nl = Netns::open(&first)?.run(Netlink::open)??;
        if nl.link("tunl0")?.is_none() {
            nl.add_ipip("tunl0", 1480).context("this kernel cannot make IPIP devices; use --encap vxlan, or `cargo xtask vm --shell` for a kernel with IPIP")?;
        }
    }
    let t = Instant::now();
    if lab.datastore == "etcd" {
        start_etcd(lab)?;
    }
    crate::outside::start(lab, bins)?;
    write_pool(lab)?;
    crate::routers::write_bgp_settings(lab)?;
    if !lab.scenario.routers.is_empty() {
        lab.routers = crate::routers::start(lab)?;
        lab.save()?;
    }
    start_agents(lab, bins)?;
    let fabric = LabState::netns_path(&format!("{}-fabric", lab.name));
    let template =
        crate::procs::spawn_mount_template(&fabric, &lab.logs().join("mount-template.log"))?;
    lab.mount_template = Some(template);
    register_pods(lab)?;
    let agents_started = t.elapsed();
    // Pods need their node's agent registered (its tunnel address taken, its MTU published),
    // not BGP: they are made while the routes converge.
    let converging = lab.clone();
    let (routes, pods) = std::thread::scope(|s| {
        let routes = s.spawn(|| wait_for_routes(&converging, timeout));
        let pods = (|| -> Result<(Duration, Duration, PodTimes)> {
            create_pod_namespaces(lab)?;
            wait_for_registration(lab, timeout)?;
            let registered = t.elapsed();
            let p = Instant::now();
            let times = add_pods(lab, bins)?;
            Ok((registered, p.elapsed(), times))
        })();
        (routes.join().expect("route wait panicked"), pods)
    });
    let (registered, pods, pod_times) = pods?;
    routes?;
    let converged = t.elapsed();
    let services = Instant::now();
    crate::services_up::start(lab, bins)?;
    eprintln!(
        "timing: namespaces and fabric {:.2} s, agents started {:.2} s, registered {:.2} s, \
         pods {:.2} s (meanwhile; {pod_times}), routes converged {:.2} s, services {:.2} s",
        nodes.as_secs_f64(),
        agents_started.as_secs_f64(),
        registered.as_secs_f64(),
        pods.as_secs_f64(),
        converged.as_secs_f64(),
        services.elapsed().as_secs_f64(),
    );
    lab.complete = true;
    lab.save()
}

/// The fabric namespace with bridge `br0` (holding the gateway address) and a bridge per
/// segment, each node: a namespace whose `ens3` is a port of its network's bridge, with its
/// address and a default route (the fabric gateway, or its segment's router), and each router:
/// a namespace with an interface on each of its networks.
fn build_fabric_and_nodes(lab: &mut LabState) -> Result<()> {
    let fabric_path = LabState::netns_path(&format!("{}-fabric", lab.name));
    let nodes = lab.scenario.nodes.clone();
    // Record every namespace before making any, so a kill at any point leaves nothing `down`
    // does not know about.
    lab.namespaces.push(fabric_path.clone());
    for node in &nodes {
        lab.namespaces.push(LabState::netns_path(&node.name));
        lab.nodes.push(NodeState {
            name: node.name.clone(),
            agent: None,
        });
    }
    for r in &lab.scenario.routers {
        lab.namespaces.push(LabState::netns_path(&r.name));
    }
    if lab.scenario.outside.is_some() {
        lab.namespaces.push(LabState::netns_path(&lab.upstream()));
        lab.namespaces.push(LabState::netns_path(&lab.internet()));
    }
    lab.save()?;
    let fabric = netns::create(&fabric_path)?;
    fabric.run(answer_every_probe)??;
    let mut f = fabric.run(Netlink::open)??;
    f.add_bridge("br0")?;
    let br = f.link("br0")?.context("br0 vanished")?;
    f.add_address(
        br.index,
        Ipv4Net::new(lab.scenario.gateway, lab.scenario.fabric.prefix_len())?,
    )?;
    f.set_up(br.index)?;
    let lo = f.link("lo")?.context("lo")?;
    f.set_up(lo.index)?;
    let mut bridges = vec![(crate::scenario::FABRIC.to_string(), br.index)];
    for seg in &lab.scenario.segments {
        let name = format!("br-{}", seg.name);
        f.add_bridge(&name)?;
        let b = f.link(&name)?.context("a segment bridge vanished")?;
        f.set_up(b.index)?;
        bridges.push((seg.name.clone(), b.index));
    }
    let mut progress = Progress::new("nodes", nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let ns = netns::create(LabState::netns_path(&node.name))?;
        ns.run(answer_every_probe)??;
        let (subnet, gateway) = lab.scenario.uplink_of(node);
        let net = lab.scenario.network_of(node);
        let bridge = bridges.iter().find(|(n, _)| n == net).expect("validated").1;
        f.plug_node(
            bridge,
            &ns,
            &Uplink {
                port: &format!("n{i}"),
                addr: Ipv4Net::new(node.ip, subnet.prefix_len())?,
                gateway,
                onlink: false,
            },
        )?;
        progress.step();
    }
    pin_big_segments(lab)?;
    crate::outside::build(lab, &mut f)?;
    if !lab.scenario.routers.is_empty() {
        for r in &lab.scenario.routers {
            netns::create(LabState::netns_path(&r.name))?;
        }
        crate::routers::build(lab, &mut f, &bridges)?;
        // The fabric namespace (where an etcd would serve) reaches the segments through their
        // routers.
        for seg in &lab.scenario.segments {
            if let Some(via) = lab.scenario.routers.iter().find_map(|r| {
                r.interfaces
                    .contains_key(&seg.name)
                    .then(|| r.interfaces.get(crate::scenario::FABRIC))
                    .flatten()
            }) {
                f.add_route(
                    &podnet_netlink::RouteSpec::via(seg.subnet.trunc(), *via, br.index),
                    false,
                )?;
            }
        }
    }
    Ok(())
}

/// In a BGP mesh, a network with so many nodes that their sessions need more ARP
/// entries than the host's one neighbour table holds gets its neighbours pinned (see
/// [`podnet_netlink::pin_neighbours`]); the host's limit itself is never changed.
fn pin_big_segments(lab: &LabState) -> Result<()> {
    let mesh = lab
        .scenario
        .bgp
        .as_ref()
        .is_none_or(|b| b.node_to_node_mesh);
    if !lab.bgp() || !mesh {
        return Ok(());
    }
    let limit: usize = std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    let s = &lab.scenario;
    let mut networks: Vec<&str> = s.nodes.iter().map(|n| s.network_of(n)).collect();
    networks.sort();
    networks.dedup();
    for net in networks {
        let on: Vec<&crate::scenario::Node> =
            s.nodes.iter().filter(|n| s.network_of(n) == net).collect();
        if on.len() * on.len().saturating_sub(1) <= limit / 2 {
            continue;
        }
        eprintln!(
            "note: {} nodes on {net} need about {} ARP entries, more than this host's shared neighbour table takes \
             (gc_thresh3 = {limit}): the lab pins them as permanent entries in the nodes' namespaces",
            on.len(),
            on.len() * (on.len() - 1)
        );
        let namespaces: Vec<Netns> = on
            .iter()
            .map(|n| Netns::open(LabState::netns_path(&n.name)))
            .collect::<std::result::Result<_, _>>()?;
        let pairs: Vec<(&Netns, std::net::Ipv4Addr)> = namespaces
            .iter()
            .zip(&on)
            .map(|(ns, n)| (ns, n.ip))
            .collect();
        podnet_netlink::pin_neighbours(&pairs)?;
    }
    Ok(())
}

/// The agents' datastore flags.
fn store_flags(lab: &LabState) -> Vec<String> {
    match lab.datastore.as_str() {
        "etcd" => vec!["--etcd-endpoints".into(), lab.etcd_urls().join(",")],
        _ => vec!["--datastore".into(), lab.store().display().to_string()],
    }
}

/// The lab's etcd in the fabric namespace on the gateway address, where every node reaches
/// it: one member, or a cluster of `etcd_size` (client ports 2379, 12379, 22379...).
fn start_etcd(lab: &mut LabState) -> Result<()> {
    for m in 0..lab.etcd_size.max(1) {
        start_etcd_member(lab, m)?;
    }
    lab.save()?;
    let ns = Netns::open(LabState::netns_path(&lab.fabric()))?;
    let start = Instant::now();
    for m in 0..lab.etcd_size.max(1) {
        let addr = format!("{}:{}", lab.scenario.gateway, 2379 + 10000 * m);
        while !ns.run(|| std::net::TcpStream::connect(&addr).is_ok())? {
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "etcd member {m} did not start; see {}",
                    lab.logs().join(format!("etcd-{m}.log")).display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Starts etcd member `m` (at `up`, or again after it was killed: its data dir makes it
/// rejoin); the caller saves the state.
pub fn start_etcd_member(lab: &mut LabState, m: usize) -> Result<()> {
    let size = lab.etcd_size.max(1);
    let peer = |i: usize| format!("http://127.0.0.1:{}", 2380 + 10000 * i);
    let name = |i: usize| format!("{}-{i}", lab.name);
    let cluster: Vec<String> = (0..size)
        .map(|i| format!("{}={}", name(i), peer(i)))
        .collect();
    let cluster = cluster.join(",");
    let url = lab.etcd_url(m);
    let data = lab.dir().join("etcd").join(m.to_string());
    let me = name(m);
    let peer_url = peer(m);
    let member = EtcdMember {
        name: &me,
        data_dir: &data,
        client_url: &url,
        peer_url: &peer_url,
        cluster: Some(&cluster),
    };
    let mut cmd = Command::new("etcd");
    cmd.args(member.args()).env("PODNET_LAB", &lab.name);
    let fabric = LabState::netns_path(&lab.fabric());
    let p = procs::spawn_daemon(
        cmd,
        &Placement {
            netns: &fabric,
            pod: PodNs::NONE,
            detach: true,
        },
        &lab.logs().join(format!("etcd-{m}.log")),
    )?;
    match lab.etcd_members.get_mut(m) {
        Some(slot) => *slot = p,
        None => lab.etcd_members.push(p),
    }
    Ok(())
}

/// Stores the scenario's pool before any agent starts, so a pool with natOutgoing off is
/// never masqueraded, not even for a moment.
fn write_pool(lab: &LabState) -> Result<()> {
    let p = &lab.scenario.pool;
    let spec = podnet_ipam::PoolSpec::new(p.cidr, p.block_size, false, Default::default())?
        .with_nat_outgoing(p.nat_outgoing);
    lab.with_store(move |s| podnet_ipam::pools::create(s, &spec))?
        .with_context(|| format!("store pool {}", p.cidr))
}

fn start_agents(lab: &mut LabState, bins: &Binaries) -> Result<()> {
    for i in 0..lab.nodes.len() {
        start_agent(lab, bins, i)?;
    }
    lab.save()
}

/// Starts node `i`'s agent (at `up`, or again after it died); the caller saves the state.
pub fn start_agent(lab: &mut LabState, bins: &Binaries, i: usize) -> Result<()> {
    let pool = lab.scenario.pool.clone();
    {
        let node = lab.scenario.nodes[i].clone();
        // The lab says everything itself: a config file on this host is not the lab's.
        let mut args: Vec<std::ffi::OsString> = [
            "run",
            "--no-config",
            "--node-name",
            &node.name,
            "--node-ip",
            &node.ip.to_string(),
            "--encapsulation",
            &lab.encapsulation,
            "--routing",
            &lab.routing,
            "--pool",
            &pool.cidr.to_string(),
            "--block-size",
            &pool.block_size.to_string(),
        ]
        .iter()
        .map(Into::into)
        .collect();
        if lab.scenario.cross_subnet {
            args.push("--cross-subnet".into());
        }
        args.extend(store_flags(lab).into_iter().map(Into::into));
        args.push("--state-dir".into());
        args.push(lab.node_dir(&node.name).into());
        if let Some(b) = node.block {
            args.push("--node-block".into());
            args.push(b.to_string().into());
        }
        let cmd = match &lab.agent_image {
            Some(image) => crate::agent_image::command(lab, &node.name, image, &args)?,
            None => {
                let mut c = Command::new(bins.path("podnet-agent"));
                c.args(&args).env("PODNET_LAB", &lab.name);
                c
            }
        };
        let netns = LabState::netns_path(&node.name);
        let log = lab.logs().join(format!("agent-{}.log", node.name));
        let p = procs::spawn_daemon(
            cmd,
            &Placement {
                netns: &netns,
                pod: PodNs::Host {
                    hostname: Some(&node.name),
                },
                detach: true,
            },
            &log,
        )?;
        lab.nodes[i].agent = Some(p.clone());
        if lab.agent_image.is_some() {
            crate::agent_image::wait_running(&lab.name, &node.name, &p, &log)?;
        }
    }
    Ok(())
}

/// Waits until every node's kernel has a route to every node's block (the agent's, or BIRD's
/// in BGP mode), each route through the VXLAN tunnel with its neighbour (BGP's routes can come
/// before the agent's VXLAN entries, and a packet on such a route is lost). It gives up only
/// after `timeout` without progress (no node gained a route or a neighbour): a busy machine is
/// slow, not broken. Giving up names the nodes, what they miss and, in BGP mode, their
/// sessions that are not Established.
fn wait_for_routes(lab: &LabState, timeout: Duration) -> Result<()> {
    let n = lab.nodes.len();
    let mut sockets: Vec<Netlink> = lab
        .nodes
        .iter()
        .map(|node| Ok(Netns::open(LabState::netns_path(&node.name))?.run(Netlink::open)??))
        .collect::<Result<_>>()?;
    let start = Instant::now();
    let mut last_progress = Instant::now();
    let mut progress = Progress::new("agents ready", n);
    // Per node: block routes, and those of them through the tunnel without their neighbour.
    let mut have = vec![Have::default(); n];
    let protocol = lab.block_route_protocol();
    while have.iter().any(|h| !h.ready(n)) {
        if last_progress.elapsed() > timeout {
            return Err(not_converged(lab, &have, start.elapsed(), timeout));
        }
        for (i, nl) in sockets.iter_mut().enumerate() {
            if have[i].ready(n) {
                continue;
            }
            if let Some(p) = &lab.nodes[i].agent {
                if !procs::alive(p) {
                    let log = std::fs::read_to_string(
                        lab.logs().join(format!("agent-{}.log", lab.nodes[i].name)),
                    )
                    .unwrap_or_default();
                    bail!("the agent of {} exited:\n{}", lab.nodes[i].name, log.trim());
                }
            }
            let routes: Vec<_> = nl
                .routes()?
                .into_iter()
                .filter(|r| r.protocol == protocol)
                .collect();
            let now = Have {
                routes: routes.len(),
                unresolved: vxlan_unresolved(nl, &routes)?,
            };
            if now != have[i] {
                last_progress = Instant::now();
                if now.ready(n) {
                    progress.step();
                }
                have[i] = now;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// What a node's kernel has of the cluster's routes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Have {
    routes: usize,
    /// Routes through the VXLAN tunnel whose gateway has no neighbour yet.
    unresolved: usize,
}

impl Have {
    fn ready(&self, nodes: usize) -> bool {
        self.routes >= nodes && self.unresolved == 0
    }
}

/// How many of `routes` go through a VXLAN device without the tunnel's neighbour for their
/// gateway (its ARP entry, and the FDB entry for its MAC): a packet on such a route is lost.
fn vxlan_unresolved(nl: &mut Netlink, routes: &[podnet_netlink::Route]) -> Result<usize> {
    let Some(dev) = nl.link("vxlan.calico")? else {
        return Ok(0);
    };
    let neigh = nl.neighbours(dev.index)?;
    let fdb = nl.fdb(dev.index)?;
    Ok(routes
        .iter()
        .filter(|r| r.oif == Some(dev.index))
        .filter(|r| {
            !neigh
                .iter()
                .any(|n| Some(n.ip) == r.gateway && fdb.iter().any(|f| f.mac == n.mac))
        })
        .count())
}

/// Why the routes did not converge: each late node with how many of the cluster's block routes
/// it has and (BGP) which of its sessions are not Established.
fn not_converged(
    lab: &LabState,
    have: &[Have],
    waited: Duration,
    timeout: Duration,
) -> anyhow::Error {
    let n = lab.nodes.len();
    let mut lines = Vec::new();
    for (node, h) in lab.nodes.iter().zip(have).filter(|(_, h)| !h.ready(n)) {
        let mut line = format!("  {}: {} of {n} block routes", node.name, h.routes);
        if h.unresolved > 0 {
            line.push_str(&format!(
                ", {} through the tunnel without its neighbour",
                h.unresolved
            ));
        }
        if lab.bgp() && lines.len() < 20 {
            match crate::views::bgp::all_established(lab, &node.name) {
                Ok(_) => line.push_str("; every BGP session Established"),
                Err(why) => line.push_str(&format!("; {why}")),
            }
        }
        lines.push(line);
    }
    anyhow::anyhow!(
        "the routes did not converge: nothing changed for {} s (--timeout), after {:.1} s in all:\n{}\nsee the agents' logs in {}",
        timeout.as_secs(),
        waited.as_secs_f64(),
        lines.join("\n"),
        lab.logs().display()
    )
}

/// Waits until every node's agent has registered the node (taken its tunnel address, published
/// its MTU): a pod made before would take the tunnel's address, or the wrong MTU.
fn wait_for_registration(lab: &LabState, timeout: Duration) -> Result<()> {
    let mut last_progress = Instant::now();
    let mut seen = 0;
    loop {
        let records = lab.with_store(|s| podnet_ipam::nodes::list(s).map(|(r, _)| r))??;
        let missing: Vec<&str> = lab
            .scenario
            .nodes
            .iter()
            .filter(|n| !records.iter().any(|r| r.name == n.name))
            .map(|n| n.name.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if records.len() != seen {
            seen = records.len();
            last_progress = Instant::now();
        }
        if last_progress.elapsed() > timeout {
            bail!(
                "the agents of {} did not register their nodes in {} s (--timeout); see their logs in {}",
                missing.join(", "),
                timeout.as_secs(),
                lab.logs().display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// In a lab namespace that routes (node, fabric, router, upstream): every ICMP error sent.
/// The kernel's default (`icmp_ratelimit` 1 s after a burst of 6, per destination) would
/// blank out the hops of a second `trace` run soon after the first.
pub fn answer_every_probe() -> Result<()> {
    podnet_netlink::sysctl::write("net.ipv4.icmp_ratelimit", "0")?;
    Ok(())
}

/// Records every pod (and its namespace) in the state before anything of it is made.
fn register_pods(lab: &mut LabState) -> Result<()> {
    for p in lab.scenario.pods() {
        let m = &p.manifest.metadata;
        lab.namespaces.push(LabState::netns_path(&m.name));
        let pod = crate::pods::state_of(&lab.name, &p);
        lab.pods.push(pod);
    }
    lab.save()
}

/// Every pod's (empty) network namespace.
fn create_pod_namespaces(lab: &LabState) -> Result<()> {
    for p in &lab.pods {
        netns::create(LabState::netns_path(&p.name))?;
    }
    Ok(())
}

/// Pods in scenario order per node (so addresses come out as the scenario intends), nodes in
/// parallel, at most [`PARALLEL_ADDS`] at a time: CNI ADD, then the containers.
fn add_pods(lab: &mut LabState, bins: &Binaries) -> Result<PodTimes> {
    let pods = lab.scenario.pods();
    let times = std::sync::Mutex::new(PodTimes::default());
    if pods.is_empty() {
        return Ok(times.into_inner().unwrap());
    }
    // Per node, in order; nodes spread over the workers.
    let mut per_node: Vec<Vec<usize>> = Vec::new();
    for node in &lab.scenario.nodes {
        per_node.push(
            (0..pods.len())
                .filter(|&i| pods[i].node == node.name)
                .collect(),
        );
    }
    let progress = std::sync::Mutex::new(Progress::new("pods", pods.len()));
    let shared: &LabState = lab;
    let queue = std::sync::Mutex::new(per_node.into_iter());
    let results: Vec<Result<(usize, serde_json::Value, Vec<crate::state::Proc>)>> =
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..PARALLEL_ADDS)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let Some(list) = queue.lock().unwrap().next() else {
                                break;
                            };
                            for i in list {
                                out.push(make_pod(shared, bins, i, &pods[i].manifest.spec, &times));
                                progress.lock().unwrap().step();
                            }
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("pod worker panicked"))
                .collect()
        });
    let mut first_error = None;
    for r in results {
        match r {
            Ok((i, result, procs)) => {
                lab.pods[i].result = Some(result);
                for (c, p) in lab.pods[i].containers.iter_mut().zip(procs) {
                    c.process = Some(p);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    lab.save()?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(times.into_inner().unwrap()),
    }
}

/// Where the pods phase went, summed over its workers: CNI ADD, and the containers (pod files,
/// namespaces, processes).
#[derive(Default)]
struct PodTimes {
    cni: Duration,
    containers: Duration,
    pods: u32,
}

impl std::fmt::Display for PodTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let each = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(self.pods.max(1));
        write!(
            f,
            "{:.1} ms CNI ADD + {:.1} ms containers a pod, {PARALLEL_ADDS} at a time",
            each(self.cni),
            each(self.containers)
        )
    }
}

/// One pod: CNI ADD, then its containers; what each took is added to `times`.
fn make_pod(
    lab: &LabState,
    bins: &Binaries,
    i: usize,
    spec: &crate::scenario::PodSpec,
    times: &std::sync::Mutex<PodTimes>,
) -> Result<(usize, serde_json::Value, Vec<crate::state::Proc>)> {
    let mut pod = lab.pods[i].clone();
    let t = Instant::now();
    let result = runtime::cni(bins, lab, &pod, "ADD")?;
    let cni = t.elapsed();
    pod.result = Some(result.clone());
    let procs = runtime::start_containers(lab, &pod, spec)?;
    let mut times = times.lock().unwrap();
    times.cni += cni;
    times.containers += t.elapsed() - cni;
    times.pods += 1;
    Ok((i, result, procs))
}
