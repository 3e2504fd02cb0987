//! The node faults of a chaos run, one at a time at random moments: an agent SIGKILLed and
//! started again a moment later (as systemd or a DaemonSet would), BIRD SIGKILLed (its agent
//! starts it again), a block route deleted by hand (the agent or BIRD puts it back), and on
//! etcd one member of three SIGKILLed and started again.

use crate::procs;
use crate::runtime::Binaries;
use crate::state::LabState;
use anyhow::Result;
use podnet_netlink::{Netlink, Netns};
use rand::rngs::StdRng;
use rand::Rng;
use std::time::{Duration, Instant};

/// What was done, for the report.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub agent_kills: u64,
    pub bird_kills: u64,
    pub routes_deleted: u64,
    pub etcd_kills: u64,
}

/// Faults under way: agents (by node index) and etcd members to start again, and when.
#[derive(Default)]
pub struct Faults {
    agents_down: Vec<(usize, Instant)>,
    etcd_down: Vec<(usize, Instant)>,
    pub counts: FaultCounts,
    /// Nodes whose agent or BIRD a fault killed or started again, and when: their BGP
    /// sessions may go down then.
    pub touched: Vec<(String, Instant)>,
}

impl Faults {
    /// One fault, chosen by `rng`.
    pub fn inject(&mut self, lab: &mut LabState, rng: &mut StdRng) -> Result<String> {
        let n = lab.nodes.len();
        let i = rng.random_range(0..n);
        let node = lab.nodes[i].name.clone();
        let kinds = if lab.datastore == "etcd" { 4 } else { 3 };
        match rng.random_range(0..kinds) {
            0 if !self.agents_down.iter().any(|(j, _)| *j == i) => {
                if let Some(p) = &lab.nodes[i].agent {
                    procs::kill(p);
                }
                let back = Instant::now() + Duration::from_millis(rng.random_range(200..3000));
                self.agents_down.push((i, back));
                self.counts.agent_kills += 1;
                self.touched.push((node.clone(), Instant::now()));
                Ok(format!("agent of {node} killed"))
            }
            1 if lab.bgp() => {
                let birds = birds_of(&node);
                for pid in &birds {
                    procs::signal_pid(*pid, libc::SIGKILL);
                }
                self.counts.bird_kills += 1;
                self.touched.push((node.clone(), Instant::now()));
                Ok(format!("BIRD of {node} killed ({} process)", birds.len()))
            }
            3 => {
                let m = rng.random_range(0..lab.etcd_members.len().max(1));
                if self.etcd_down.is_empty() {
                    if let Some(p) = lab.etcd_members.get(m) {
                        procs::kill(p);
                        let back =
                            Instant::now() + Duration::from_millis(rng.random_range(500..4000));
                        self.etcd_down.push((m, back));
                        self.counts.etcd_kills += 1;
                        return Ok(format!("etcd member {m} killed"));
                    }
                }
                Ok("no fault (an etcd member is down already)".into())
            }
            _ => {
                let protocol = lab.block_route_protocol();
                let gone = Netns::open(LabState::netns_path(&node))?.run(
                    move || -> Result<Option<String>> {
                        let mut nl = Netlink::open()?;
                        let routes: Vec<_> = nl
                            .routes()?
                            .into_iter()
                            .filter(|r| r.protocol == protocol)
                            .collect();
                        let Some(r) = routes.first() else {
                            return Ok(None);
                        };
                        nl.delete_route(r.dst, protocol)?;
                        Ok(Some(r.dst.to_string()))
                    },
                )??;
                match gone {
                    Some(dst) => {
                        self.counts.routes_deleted += 1;
                        Ok(format!("route {dst} deleted by hand on {node}"))
                    }
                    None => Ok(format!("no block route on {node} to delete")),
                }
            }
        }
    }

    /// Starts again what is due (everything with `all`); the caller saves the state.
    pub fn restore(&mut self, lab: &mut LabState, bins: &Binaries, all: bool) -> Result<()> {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self
            .agents_down
            .drain(..)
            .partition(|(_, at)| all || *at <= now);
        self.agents_down = later;
        for (i, _) in due {
            crate::up::start_agent(lab, bins, i)?;
            self.touched
                .push((lab.nodes[i].name.clone(), Instant::now()));
        }
        let (due, later): (Vec<_>, Vec<_>) = self
            .etcd_down
            .drain(..)
            .partition(|(_, at)| all || *at <= now);
        self.etcd_down = later;
        for (m, _) in due {
            crate::up::start_etcd_member(lab, m)?;
        }
        Ok(())
    }
}

/// The BIRD processes in `node`'s namespace.
fn birds_of(node: &str) -> Vec<u32> {
    procs::in_namespaces(&[LabState::netns_path(node)])
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "bird")
        })
        .collect()
}
