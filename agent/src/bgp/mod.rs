//! BGP mode (`--routing bgp`): the agent plays Calico's confd and BIRD's supervisor. From the
//! datastore it renders the node's BIRD config, has BIRD check it, starts (or adopts) BIRD in
//! the node's namespace, and reloads it over the control socket on every change; BIRD speaks
//! BGP with the other nodes (or reflectors, or a rack's router) and installs the routes to
//! other nodes' blocks, `proto bird`, itself. The agent still owns the tunnel device, the MTU
//! file, forwarding, VXLAN neighbours and node registration.
//!
//! - [`peers`]: who to peer with; [`render`]: the config text; both pure.
//! - [`control`]: BIRD's control-socket protocol; [`daemon`]: the process and its files.
//! - [`status`]: `podnet-agent bgp status`, as `calicoctl node status` prints it;
//!   [`admin`]: the `bgp` subcommands.
//!
//! BIRD is Debian's `bird2` (2.0.12 or newer), driven through its config file and control
//! socket only: no `birdc`, no fork of BIRD, no BGP code of podnet's own.

pub mod admin;
pub mod control;
pub mod daemon;
pub mod peers;
pub mod render;
pub mod status;

use crate::desired::{BlockView, Me};
use control::Protocol;
use daemon::{BirdError, Daemon, Paths};
use podnet_ipam::model::PoolRecord;
use podnet_ipam::nodes::NodeRecord;
use podnet_ipam::{keys, Datastore};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The node's BIRD config from the datastore: its blocks, the pools, the nodes and the BGP
/// settings (checked: a bad value written by hand fails here, so it is never rendered). The
/// nodes and blocks are the pass's own listing; only pools and BGP settings are read here.
pub fn config_from_store(
    store: &dyn Datastore,
    me: &Me,
    nodes: &[NodeRecord],
    blocks: &[BlockView],
) -> Result<String, crate::Error> {
    let ips = nodes.iter().map(|n| (n.name.clone(), n.ip)).collect();
    let settings = podnet_ipam::bgp::read_for(store, &ips)?;
    let mut pools: Vec<ipnet::Ipv4Net> = Vec::new();
    for kv in store.list(keys::POOLS)?.kvs {
        match serde_json::from_str::<PoolRecord>(&kv.value) {
            Ok(p) => pools.push(p.cidr),
            Err(e) => tracing::warn!(key = %kv.key, "skip an unreadable pool: {e}"),
        }
    }
    let mine: Vec<ipnet::Ipv4Net> = blocks
        .iter()
        .filter(|b| b.node.as_deref() == Some(me.name.as_str()))
        .map(|b| b.cidr)
        .collect();
    Ok(render::render(&render::Snapshot {
        me,
        nodes,
        blocks: &mine,
        pools: &pools,
        bgp: &settings,
    }))
}

/// What the agent knows of its BIRD, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct BirdView {
    pub running: bool,
    /// The control socket answered the last poll.
    pub answering: bool,
    /// The BGP protocols BIRD runs, with their sessions' state.
    pub sessions: Vec<Protocol>,
    /// Routes BIRD imported from BGP peers.
    pub routes_learned: u64,
    /// Why the last config was refused, until one is accepted.
    pub refused: Option<String>,
}

impl BirdView {
    /// Calico's `-bird-ready`: BIRD answers and every configured session is Established.
    pub fn ready(&self) -> Result<(), String> {
        if !self.answering {
            return Err("BIRD is not answering on its control socket".into());
        }
        let down: Vec<&str> = self
            .sessions
            .iter()
            .filter(|s| s.session_state() != "Established")
            .map(|s| s.name.as_str())
            .collect();
        if !down.is_empty() {
            return Err(format!("BGP sessions not Established: {}", down.join(", ")));
        }
        Ok(())
    }
}

/// The BGP side of a running agent: the config last applied and the shared view of BIRD.
pub struct Bgp {
    pub bird: String,
    pub paths: Paths,
    pub view: Arc<Mutex<BirdView>>,
    /// The text BIRD has loaded; `None` until a `configure` went through.
    applied: Option<String>,
}

impl Bgp {
    pub fn new(bird: &str, paths: Paths) -> Bgp {
        Bgp {
            bird: bird.to_string(),
            paths,
            view: Arc::default(),
            applied: None,
        }
    }

    /// Renders the config from the datastore and makes it BIRD's (see [`Bgp::sync`]); a
    /// setting that does not hold up is recorded as a refusal. True if a new config went in.
    pub fn sync_from_store(
        &mut self,
        store: &dyn Datastore,
        me: &Me,
        nodes: &[NodeRecord],
        blocks: &[BlockView],
    ) -> Result<bool, crate::Error> {
        let text = config_from_store(store, me, nodes, blocks)
            .inspect_err(|e| self.refuse(&e.to_string()))?;
        Ok(self.sync(&text)?)
    }

    /// Makes `text` BIRD's config unless it already is. A refused config leaves the running
    /// one in place; the reason is kept for status and metrics. True if a new config went in.
    pub fn sync(&mut self, text: &str) -> Result<bool, BirdError> {
        if self.applied.as_deref() == Some(text) {
            self.clear_refusal();
            return Ok(false);
        }
        match daemon::apply_config(&self.bird, &self.paths, text) {
            Ok(()) => {
                self.applied = Some(text.to_string());
                self.clear_refusal();
                Ok(true)
            }
            Err(e) => {
                if matches!(e, BirdError::Refused(_)) {
                    lock(&self.view).refused = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    fn clear_refusal(&self) {
        let mut v = lock(&self.view);
        if v.refused.take().is_some() {
            let _ = std::fs::remove_file(&self.paths.refused);
        }
    }

    /// Records a config that could not be made (a bad setting in the datastore): the running
    /// config stays, and status says why.
    pub fn refuse(&self, why: &str) {
        let _ = std::fs::create_dir_all(&self.paths.dir);
        let _ = std::fs::write(&self.paths.refused, format!("{why}\n"));
        lock(&self.view).refused = Some(why.to_string());
    }

    /// Starts (or adopts) BIRD on the config in place (`recover`: the kernel holds routes of an
    /// earlier BIRD to keep), and a thread that keeps it running and
    /// polls its sessions; `on_poll` gets the view after every step (and whether BIRD was just restarted).
    pub fn supervise(
        &self,
        recover: bool,
        on_poll: impl Fn(&BirdView, bool) + Send + 'static,
    ) -> Result<(), BirdError> {
        let mut daemon = Daemon::start_or_adopt(&self.bird, self.paths.clone(), recover)?;
        let view = self.view.clone();
        let paths = self.paths.clone();
        std::thread::Builder::new()
            .name("bird".into())
            .spawn(move || {
                let mut last_poll = Instant::now() - POLL;
                loop {
                    // Liveness every 100 ms (cheap); the socket once per POLL.
                    let polled = last_poll.elapsed() >= POLL;
                    let mut answering = false;
                    if polled {
                        last_poll = Instant::now();
                        let answer = paths
                            .control()
                            .and_then(|mut c| Ok((c.protocols_brief()?, c.bgp_route_count()?)));
                        let mut v = lock(&view);
                        answering = answer.is_ok();
                        v.answering = answering;
                        if let Ok((protocols, routes)) = answer {
                            v.sessions =
                                protocols.into_iter().filter(|p| p.proto == "BGP").collect();
                            v.routes_learned = routes;
                        }
                    }
                    let restarted = daemon.check(answering);
                    if polled || restarted {
                        let snapshot = {
                            let mut v = lock(&view);
                            v.running = daemon.running();
                            v.clone()
                        };
                        on_poll(&snapshot, restarted);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .map_err(|source| BirdError::Io {
                action: "start the BIRD supervisor thread for",
                path: self.paths.dir.display().to_string(),
                source,
            })?;
        Ok(())
    }
}

/// How often the supervisor asks BIRD for its sessions.
const POLL: Duration = Duration::from_secs(1);

fn lock(m: &Mutex<BirdView>) -> std::sync::MutexGuard<'_, BirdView> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
