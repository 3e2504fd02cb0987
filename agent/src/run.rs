//! `podnet-agent run`: check everything, set the node up, then reconcile forever.
//!
//! Start-up changes nothing until every check has passed (datastore opens, node address is on
//! this host, tunnel name free or already ours, pool known). It then claims the node's block,
//! allocates the tunnel address, makes the tunnel device, publishes the MTU, turns on
//! forwarding and registers the node. Reconcile passes run at start, on every datastore change
//! to nodes or affinities (watch), whenever a route the agent owns is deleted (kernel route
//! events), and every `--resync-seconds`. Nothing is flushed on start or exit: routes stay in
//! the kernel while the agent is down.
//!
//! With `--routing bgp` the block routes are BIRD's: the same passes render BIRD's config from
//! the datastore and load it (see [`crate::bgp`]), and the agent's own route set is empty (it
//! removes any proto-119 routes left from datastore routing).

use crate::bgp::{daemon, Bgp};
use crate::desired::{desired, BlockView, Me, Mode};
use crate::egress::{self, Egress, Synced};
use crate::kernel::{self, Devices};
use crate::metrics::Metrics;
use crate::settings::{self, Routing, RunArgs};
use crate::{http, tunnel, Error};
use podnet_ipam::model::Block;
use podnet_ipam::nodes::{self as node, format_mac, NodeRecord};
use podnet_ipam::store::WatchBatch;
use podnet_ipam::{keys, Datastore, DatastoreConfig, Ipam};
use podnet_netlink::{sysctl, Netlink, RouteEvent, RouteMonitor, AGENT_ROUTE_PROTOCOL};
use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a reconcile pass runs.
#[derive(Debug)]
enum Trigger {
    Datastore,
    RouteDeleted,
    NftablesChanged,
}

/// Everything a reconcile pass needs, settled at start-up.
pub struct Agent {
    pub me: Me,
    pub devices: Devices,
    /// BGP mode: the node's BIRD.
    pub bgp: Option<Bgp>,
    /// The node's nftables table; `None` when this kernel cannot NAT and no pool needs it.
    pub egress: Option<Egress>,
}

pub fn run(args: RunArgs) -> Result<(), Error> {
    let store_conf = args.store.config();
    let store = store_conf.open_or_create()?;
    let mut nl = Netlink::open().map_err(Error::netlink("open a netlink socket"))?;
    let host = settings::resolve_host(&args, &mut nl)?;
    let pool = settings::resolve_pool(&args, &host.name, &*store)?;
    let requested = settings::requested_mode(args.encapsulation);
    for m in requested.map_or(vec![Mode::Ipip, Mode::Vxlan], |m| vec![m]) {
        tunnel::check_name(&mut nl, m)?;
    }
    if args.routing == Routing::Bgp {
        daemon::check_version(&args.bird).map_err(Error::Bird)?;
        // Bad BGP settings stop a first start; a node whose BIRD has a config keeps it.
        let had_config = daemon::current_config(&daemon::Paths::new(&args.state_dir)).is_some();
        if let Err(e) = podnet_ipam::bgp::read(&*store) {
            if !had_config {
                return Err(e.into());
            }
        }
    }
    let egress = check_egress(&*store, &pool, requested)?;
    if host.uplink.mtu < 576 + 50 {
        return Err(Error::Settings(format!(
            "uplink {} has MTU {}: too small",
            host.uplink.name, host.uplink.mtu
        )));
    }

    let mode = match requested {
        Some(m) => m,
        None if tunnel::ipip_available(&mut nl, host.uplink.mtu - Mode::Ipip.overhead()) => {
            Mode::Ipip
        }
        None => {
            tracing::warn!("this kernel has no IPIP (creating tunl0 failed): using VXLAN; run `cargo xtask vm` for a kernel with IPIP");
            Mode::Vxlan
        }
    };
    let mtu = host.uplink.mtu - mode.overhead();
    let ipam = Ipam::new(&*store, pool);
    let block = ipam.ensure_block(&host.name)?;
    let tunnel_ip = match mode {
        Mode::None => None,
        _ => Some(ipam.allocate_tunnel(&host.name)?),
    };
    let tunnel_link = match tunnel_ip {
        Some(tip) => tunnel::ensure(
            &mut nl,
            mode,
            &host.name,
            host.ip.addr(),
            &host.uplink,
            tip,
            mtu,
        )?,
        None => None,
    };
    tunnel::publish_mtu(&args.state_dir, mtu)?;
    sysctl::write("net.ipv4.ip_forward", "1").map_err(Error::netlink("turn on forwarding"))?;
    let record = NodeRecord {
        name: host.name.clone(),
        ip: host.ip.addr(),
        prefix_len: host.ip.prefix_len(),
        tunnel_ip,
        tunnel_mac: (mode == Mode::Vxlan).then(|| format_mac(&tunnel::vxlan_mac(&host.name))),
        encapsulation: mode.as_str().into(),
        routing: match args.routing {
            Routing::Datastore => "datastore",
            Routing::Bgp => "bgp",
        }
        .into(),
    };
    node::register(&*store, &record)?;
    tracing::info!(node = %host.name, ip = %host.ip, %block, ?tunnel_ip, mode = mode.as_str(), mtu, "node registered");
    if !nl.routes_pod_gateway().unwrap_or(true) {
        tracing::warn!("{}", podnet_netlink::NO_POD_GATEWAY_ROUTE);
    }

    let metrics = Arc::new(Metrics::default());
    http::serve(args.metrics_addr, metrics.clone())?;
    let mut agent = Agent {
        me: Me {
            name: host.name,
            ip: host.ip,
            mode,
            cross_subnet: args.cross_subnet,
        },
        devices: Devices {
            tunnel: tunnel_link.map(|l| l.index),
            uplink: host.uplink.index,
        },
        bgp: None,
        egress,
    };
    if args.routing == Routing::Bgp {
        agent.bgp = Some(start_bird(&*store, &mut nl, &args, &agent.me, &metrics)?);
    }
    let (tx, rx) = channel();
    watch_datastore(store_conf, tx.clone(), metrics.clone())?;
    watch_routes(tx.clone())?;
    watch_nftables(tx)?;
    let resync = Duration::from_secs(args.resync_seconds.max(1));
    loop {
        match reconcile(&*store, &mut nl, &mut agent, &metrics) {
            Ok(()) => metrics.set_ready(),
            Err(e) => {
                metrics.errors.inc();
                tracing::error!("reconcile: {e}");
            }
        }
        wait(&rx, resync);
    }
}

/// How long a burst of changes (nodes joining at once) is collected into one pass.
const DEBOUNCE: Duration = Duration::from_millis(15);

/// Waits for a trigger (or the resync period), lets a burst settle for [`DEBOUNCE`], then
/// takes every pending trigger at once.
fn wait(rx: &Receiver<Trigger>, resync: Duration) {
    match rx.recv_timeout(resync) {
        Ok(t) => {
            tracing::debug!(?t, "reconcile");
            std::thread::sleep(DEBOUNCE);
        }
        Err(RecvTimeoutError::Timeout) => {}
        Err(RecvTimeoutError::Disconnected) => std::thread::sleep(resync),
    }
    while rx.try_recv().is_ok() {}
}

/// Start-up: has the kernel check the egress table it will get (without applying it). A kernel
/// without nf_tables NAT stops the agent if a pool has natOutgoing; else egress is left off.
fn check_egress(
    store: &dyn Datastore,
    pool: &podnet_ipam::PoolSpec,
    mode: Option<Mode>,
) -> Result<Option<Egress>, Error> {
    let mut pools = podnet_ipam::pools::list(store)?;
    if !pools.iter().any(|p| p.cidr() == pool.cidr()) {
        pools.push(pool.clone()); // stored at the first block claim, natOutgoing on
    }
    let exclusions = podnet_ipam::pools::egress(store)?.nat_outgoing_exclusions;
    let mut eg = Egress::open()?;
    // The table as it will be, with a stand-in tunnel address (only its shape matters here).
    let tunnel = tunnel::device(mode.unwrap_or(Mode::Ipip))
        .map(|(dev, _)| (dev, std::net::Ipv4Addr::UNSPECIFIED));
    let Some(want) = egress::desired(&egress::Inputs {
        pools: &pools,
        exclusions,
        nodes: &[],
        tunnel,
    }) else {
        return Ok(Some(eg));
    };
    match eg.check(&want) {
        Ok(()) => Ok(Some(eg)),
        Err(e) if egress::any_nat_outgoing(&pools) => Err(e),
        Err(e) => {
            tracing::warn!("{e}; no pool has natOutgoing, so the agent runs without its nftables table (no tunnel source fix)");
            Ok(None)
        }
    }
}

/// BGP mode at start-up: BIRD's first config (a config BIRD refuses is fatal only when there
/// is no earlier one to keep running), then BIRD started or adopted, and supervised.
fn start_bird(
    store: &dyn Datastore,
    nl: &mut Netlink,
    args: &RunArgs,
    me: &Me,
    metrics: &Arc<Metrics>,
) -> Result<Bgp, Error> {
    let mut bird = Bgp::new(&args.bird, daemon::Paths::new(&args.state_dir));
    let (nodes, _) = node::list(store)?;
    let blocks = block_views(store)?;
    match bird.sync_from_store(store, me, &nodes, &blocks) {
        Ok(_) => {
            metrics.bird_configs_applied.inc();
        }
        Err(e) if daemon::current_config(&bird.paths).is_some() => {
            metrics.bird_configs_refused.inc();
            tracing::error!("{e}; BIRD keeps its previous config");
        }
        Err(e) => return Err(e),
    };
    // Routes an earlier BIRD installed are kept while this one's sessions come back.
    let recover = nl
        .routes()
        .map_err(Error::netlink("list routes"))?
        .iter()
        .any(|r| r.protocol == podnet_netlink::BIRD_ROUTE_PROTOCOL);
    let m = metrics.clone();
    bird.supervise(recover, move |view, restarted| {
        if restarted {
            m.bird_restarts.inc();
        }
        m.set_bird(view);
    })
    .map_err(Error::Bird)?;
    Ok(bird)
}

/// Reads nodes and blocks, computes the desired state, makes the kernel match; in BGP mode,
/// also brings BIRD's config up to date.
pub fn reconcile(
    store: &dyn Datastore,
    nl: &mut Netlink,
    agent: &mut Agent,
    metrics: &Metrics,
) -> Result<(), Error> {
    let start = Instant::now();
    let (nodes, revision) = node::list(store)?;
    let blocks = block_views(store)?;
    let mut want = desired(&agent.me, &nodes, &blocks);
    if agent.bgp.is_some() {
        want.routes.clear(); // BIRD's job
    }
    let changes = kernel::apply(nl, &want, &agent.devices)
        .map_err(Error::netlink("make the kernel match"))?;
    if let Some(bird) = &mut agent.bgp {
        match bird.sync_from_store(store, &agent.me, &nodes, &blocks) {
            Ok(true) => {
                metrics.bird_configs_applied.inc();
                tracing::info!(revision, "BIRD reconfigured");
            }
            Ok(false) => {}
            Err(e) => {
                metrics.bird_configs_refused.inc();
                return Err(e);
            }
        }
    }
    sync_egress(store, agent, &nodes, metrics)?;
    metrics.reconciles.inc();
    metrics
        .reconcile_seconds
        .observe(start.elapsed().as_secs_f64());
    metrics.routes_owned.set(changes.owned as i64);
    metrics.revision.set(revision);
    if changes.added + changes.replaced + changes.deleted > 0 {
        tracing::info!(
            added = changes.added,
            replaced = changes.replaced,
            deleted = changes.deleted,
            owned = changes.owned,
            revision,
            "routes reconciled"
        );
    }
    Ok(())
}

/// Brings table `ip podnet` in line with the pools, the egress option and the nodes.
fn sync_egress(
    store: &dyn Datastore,
    agent: &mut Agent,
    nodes: &[NodeRecord],
    metrics: &Metrics,
) -> Result<(), Error> {
    let Some(eg) = agent.egress.as_mut() else {
        return Ok(());
    };
    let pools = podnet_ipam::pools::list(store)?;
    let exclusions = podnet_ipam::pools::egress(store)?.nat_outgoing_exclusions;
    let tunnel_ip = nodes
        .iter()
        .find(|n| n.name == agent.me.name)
        .and_then(|n| n.tunnel_ip);
    let tunnel = tunnel::device(agent.me.mode)
        .zip(tunnel_ip)
        .map(|((dev, _), ip)| (dev, ip));
    let want = egress::desired(&egress::Inputs {
        pools: &pools,
        exclusions,
        nodes,
        tunnel,
    });
    match eg.sync(&want) {
        Ok(Synced::Unchanged) => {}
        Ok(done) => {
            metrics.egress_syncs.inc();
            tracing::info!(?done, "nftables table ip podnet written");
        }
        Err(e) => {
            metrics.egress_sync_failures.inc();
            return Err(e);
        }
    }
    metrics
        .egress_rules
        .set(want.map_or(0, |t| t.chains.iter().map(|c| c.rules.len()).sum::<usize>()) as i64);
    Ok(())
}

/// Every block with its node.
pub fn block_views(store: &dyn Datastore) -> Result<Vec<BlockView>, Error> {
    let mut out = Vec::new();
    for kv in store.list(keys::BLOCKS)?.kvs {
        match serde_json::from_str::<Block>(&kv.value) {
            Ok(b) => out.push(BlockView {
                cidr: b.cidr,
                node: b.affinity,
            }),
            Err(e) => tracing::warn!(key = %kv.key, "skip an unreadable block: {e}"),
        }
    }
    Ok(out)
}

/// A thread watching the datastore. Node and affinity changes trigger a pass; block changes
/// only when a block's node changes (allocations inside a block don't move routes).
fn watch_datastore(
    conf: DatastoreConfig,
    tx: Sender<Trigger>,
    metrics: Arc<Metrics>,
) -> Result<(), Error> {
    let store = conf.open()?;
    let listing = store.list(keys::BLOCKS)?;
    let mut owners: HashMap<String, Option<String>> = listing
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), block_owner(&kv.value)))
        .collect();
    let mut watcher = store.watch(keys::ROOT, listing.revision)?;
    spawn("watch", move || loop {
        match watcher.next(Duration::from_secs(1)) {
            Ok(WatchBatch::Events(events)) => {
                let mut relevant = false;
                for e in &events {
                    if e.key.starts_with(keys::BLOCKS) {
                        let owner = e.value.as_deref().and_then(block_owner);
                        relevant |= owners.insert(e.key.clone(), owner.clone()) != Some(owner);
                    } else {
                        relevant |= [
                            keys::NODES,
                            keys::AFFINITIES,
                            keys::POOLS,
                            podnet_ipam::bgp::ROOT,
                            podnet_ipam::pools::EGRESS,
                        ]
                        .iter()
                        .any(|p| e.key.starts_with(p));
                    }
                }
                if relevant && tx.send(Trigger::Datastore).is_err() {
                    return;
                }
            }
            Ok(WatchBatch::Compacted) => {
                owners.clear();
                let _ = tx.send(Trigger::Datastore);
            }
            Err(e) => {
                metrics.errors.inc();
                tracing::warn!("datastore watch: {e}");
                std::thread::sleep(Duration::from_secs(1));
                match store
                    .revision()
                    .and_then(|rev| store.watch(keys::ROOT, rev))
                {
                    Ok(w) => watcher = w,
                    Err(e) => tracing::warn!("restart the datastore watch: {e}"),
                }
                let _ = tx.send(Trigger::Datastore);
            }
        }
    })
}

/// The node a stored block belongs to. Only that field is decoded: this runs for every block
/// write (every pod's allocation) in every agent, and the allocation table is most of a block.
fn block_owner(value: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Owner {
        affinity: Option<String>,
    }
    serde_json::from_str::<Owner>(value).ok()?.affinity
}

/// A thread listening for kernel route deletions; losing an owned route triggers a pass.
fn watch_routes(tx: Sender<Trigger>) -> Result<(), Error> {
    let mut monitor = RouteMonitor::open().map_err(Error::netlink("watch route changes"))?;
    spawn("routes", move || loop {
        match monitor.wait() {
            Ok(events) => {
                let lost = events.iter().any(
                    |e| matches!(e, RouteEvent::Deleted(r) if r.protocol == AGENT_ROUTE_PROTOCOL),
                );
                if lost && tx.send(Trigger::RouteDeleted).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("route events: {e}");
                // Missed events (ENOBUFS) are made up for by a full pass.
                let _ = tx.send(Trigger::RouteDeleted);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })
}

/// A thread listening for nftables changes; one touching table `ip podnet` (a flush or delete
/// by hand, or the agent's own write) triggers a pass, which puts the table back if it differs.
fn watch_nftables(tx: Sender<Trigger>) -> Result<(), Error> {
    use podnet_netlink::nft::{NftEvent, NftMonitor};
    let mut monitor = NftMonitor::open().map_err(Error::netlink("watch nftables changes"))?;
    spawn("nftables", move || loop {
        match monitor.wait() {
            Ok(events) => {
                let ours = events.iter().any(|e| match e {
                    NftEvent::Table(t) => t == egress::TABLE,
                    NftEvent::Lost => true,
                });
                if ours && tx.send(Trigger::NftablesChanged).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("nftables events: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|source| Error::Io {
            action: "start a thread",
            path: name.into(),
            source,
        })
}
