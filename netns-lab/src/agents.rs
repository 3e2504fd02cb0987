//! `podnet-lab agents stop|start|restart [NODE...]`: the nodes' agents stopped as systemd's
//! stop does (SIGTERM; routes and BIRD stay, so pods keep talking) and started again with
//! the binaries beside `podnet-lab` (or the lab's agent image): what a package upgrade does
//! to a node.

use crate::procs;
use crate::runtime::Binaries;
use crate::state::LabState;
use anyhow::{bail, Result};
use std::time::Duration;

/// How long an agent has to exit on SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    Stop,
    Start,
    Restart,
}

/// The indices of `names` among the lab's nodes (every node when empty).
fn select(lab: &LabState, names: &[String]) -> Result<Vec<usize>> {
    if names.is_empty() {
        return Ok((0..lab.nodes.len()).collect());
    }
    names
        .iter()
        .map(|n| match lab.nodes.iter().position(|s| &s.name == n) {
            Some(i) => Ok(i),
            None => bail!(
                "lab {} has no node {n} (nodes: {})",
                lab.name,
                lab.nodes
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .collect()
}

pub fn run(lab: &mut LabState, action: Action, names: &[String], bins: &Binaries) -> Result<()> {
    let nodes = select(lab, names)?;
    if action != Action::Start {
        for &i in &nodes {
            if let Some(p) = lab.nodes[i].agent.take() {
                let clean = procs::terminate(&p, GRACE);
                lab.save()?;
                if clean {
                    eprintln!("{}: agent stopped", lab.nodes[i].name);
                } else {
                    eprintln!(
                        "{}: agent did not exit within {GRACE:?} of SIGTERM: killed",
                        lab.nodes[i].name
                    );
                }
            }
        }
    }
    if action != Action::Stop {
        for &i in &nodes {
            if lab.nodes[i].agent.as_ref().is_some_and(procs::alive) {
                eprintln!("{}: agent already runs", lab.nodes[i].name);
                continue;
            }
            crate::up::start_agent(lab, bins, i)?;
            lab.save()?;
            eprintln!("{}: agent started", lab.nodes[i].name);
        }
    }
    Ok(())
}
