//! BGP sessions watched through a chaos run. A session leaving Established is a flap unless
//! a fault hit one of its two ends shortly before (its agent or BIRD killed, its agent started
//! again): timers short enough to drop sessions on a busy machine would show up here.

use crate::state::LabState;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long after a fault on one of its ends a session may go down for that fault: a killed
/// BIRD's peers see the connection closed at once, an agent started again restarts its BIRD
/// within its start-up.
pub const EXPLAINED_WITHIN: Duration = Duration::from_secs(15);

/// How often the sessions are read.
const EVERY: Duration = Duration::from_millis(500);

/// A session seen Established, then not.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionDrop {
    pub node: String,
    pub peer: String,
    pub at: Instant,
}

/// What the watch saw: how many reads, and every drop.
#[derive(Debug, Default)]
pub struct Watched {
    pub reads: u64,
    pub drops: Vec<SessionDrop>,
}

/// Reads every node's sessions every [`EVERY`] until `stop`; a node whose BIRD does not
/// answer (killed, starting) is skipped for that read.
pub fn watch(lab: &LabState, stop: &AtomicBool) -> Watched {
    let mut seen = Watched::default();
    let mut up: BTreeMap<(String, String), bool> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        for node in &lab.nodes {
            let Ok(sessions) = crate::views::bgp::sessions(lab, &node.name) else {
                continue;
            };
            for s in sessions {
                let now = s.state == "up" && s.info == "Established";
                let was = up.insert((node.name.clone(), s.address.clone()), now);
                if was == Some(true) && !now {
                    seen.drops.push(SessionDrop {
                        node: node.name.clone(),
                        peer: s.address,
                        at: Instant::now(),
                    });
                }
            }
        }
        seen.reads += 1;
        std::thread::sleep(EVERY);
    }
    seen
}

/// The drops no fault explains: neither the node nor its peer (`node_of` maps a peer address
/// to its node) had a fault in the [`EXPLAINED_WITHIN`] before. `faults` are (node, when).
pub fn flaps(
    drops: &[SessionDrop],
    faults: &[(String, Instant)],
    node_of: &BTreeMap<String, String>,
) -> Vec<String> {
    drops
        .iter()
        .filter(|d| {
            let peer = node_of.get(&d.peer);
            !faults.iter().any(|(n, when)| {
                (n == &d.node || Some(n) == peer)
                    && *when <= d.at
                    && d.at.duration_since(*when) <= EXPLAINED_WITHIN
            })
        })
        .map(|d| {
            format!(
                "the BGP session of {} with {} ({}) left Established with no fault on either end",
                d.node,
                node_of.get(&d.peer).map_or("?", String::as_str),
                d.peer
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_is_a_flap_unless_a_fault_on_an_end_came_shortly_before() {
        let t0 = Instant::now();
        let node_of: BTreeMap<String, String> = [("10.0.0.2", "b"), ("10.0.0.3", "c")]
            .into_iter()
            .map(|(a, n)| (a.to_string(), n.to_string()))
            .collect();
        let drop = |node: &str, peer: &str, after: u64| SessionDrop {
            node: node.into(),
            peer: peer.into(),
            at: t0 + Duration::from_secs(after),
        };
        let faults = vec![("b".to_string(), t0 + Duration::from_secs(10))];
        let drops = [
            drop("a", "10.0.0.2", 11), // b's fault: explained
            drop("b", "10.0.0.3", 12), // b itself: explained
            drop("a", "10.0.0.3", 11), // c had none: a flap
            drop("a", "10.0.0.2", 9),  // before b's fault: a flap
            drop("a", "10.0.0.2", 40), // long after: a flap
        ];
        let f = flaps(&drops, &faults, &node_of);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].contains("of a with c (10.0.0.3)"), "{f:?}");
    }
}
