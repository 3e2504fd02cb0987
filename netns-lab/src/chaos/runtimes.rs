//! The pod churn: runtimes doing ADD and DEL through the real plugin, as kubelet and
//! containerd do, some calls SIGKILLed at a random moment (a runtime's timeout). After a failed
//! or killed ADD the runtime calls DEL, and it retries DEL until one completes, as kubelet
//! retries StopPodSandbox. Each runtime owns a pod sandbox (a network namespace kept for the
//! whole run, so nothing the plugin leaves in it is hidden by the namespace going away) on one
//! node, and uses a new container ID for each pod. Now and then a pod is recreated as
//! Kubernetes does after a force delete: a new container of the same pod name is ADDed in the
//! runtime's second sandbox while the old one is still attached, and the old one's DEL comes
//! after; the plugin must replace the old veth (same name), keep its address held until that
//! DEL, and that DEL must leave the new pod alone.

use crate::runtime::{self, Binaries, Call};
use crate::state::{LabState, PodState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// What a runtime's current pod is, as the runtime knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// No pod (the last DEL completed).
    Idle,
    /// ADD in flight, failed or killed; DEL not completed yet.
    Limbo(String),
    /// ADD succeeded.
    Attached(String, Ipv4Addr),
}

/// One runtime: its two sandboxes (a recreated pod takes the other), its node, its pods.
pub struct Slot {
    pub sandboxes: [String; 2],
    pub node: String,
    pub phase: Mutex<Phase>,
    /// A pod replaced by a recreated one of the same name, its DEL not completed: its veth
    /// may be gone (the new ADD deletes it), its address must still be held.
    pub replaced: Mutex<Option<String>>,
}

impl Slot {
    /// Runtime `i` of lab `lab` on `node`: sandboxes `<lab>-rt<i>` and `<lab>-rt<i>b`.
    pub fn new(lab: &str, i: usize, node: &str) -> Slot {
        let first = format!("{lab}-rt{i}");
        Slot {
            sandboxes: [first.clone(), first + "b"],
            node: node.to_string(),
            phase: Mutex::new(Phase::Idle),
            replaced: Mutex::new(None),
        }
    }
}

/// Percent of attached pods recreated (a new container of the same name while the old one is
/// still attached) instead of deleted.
pub const RECREATE_PERCENT: u32 = 10;

/// Counts for the report.
#[derive(Default)]
pub struct Counts {
    pub adds: AtomicU64,
    pub adds_failed: AtomicU64,
    pub adds_killed: AtomicU64,
    pub dels: AtomicU64,
    pub dels_failed: AtomicU64,
    pub dels_killed: AtomicU64,
    /// Pods recreated under the same name while the old one was attached.
    pub recreated: AtomicU64,
    /// Calls that broke the plugin contract (no single JSON reply).
    pub contract: AtomicU64,
}

/// Shared by the runtimes and the conductor.
pub struct Churn<'a> {
    pub lab: &'a LabState,
    pub bins: &'a Binaries,
    pub slots: Vec<Slot>,
    /// Held (read) for every plugin call; the conductor takes it (write) to pause the churn
    /// for GC and the checks, so GC's list of attachments is the true one.
    pub gate: RwLock<()>,
    pub stop: AtomicBool,
    pub counts: Counts,
    /// The last operations, for a report of what led to a violation.
    pub log: Mutex<VecDeque<String>>,
    /// Percent of calls killed.
    pub kill_percent: u32,
    /// Completed ADDs and DELs: when (since `started`), which, how long.
    pub latencies: Mutex<Vec<(Duration, Verb, Duration)>>,
    pub started: std::time::Instant,
}

/// ADD or DEL, for the latency figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Add,
    Del,
}

const LOG_KEEP: usize = 200;

impl<'a> Churn<'a> {
    /// Runtimes for `slots` on `lab` (a copy the runtimes only read), `kill_percent` of their
    /// calls killed.
    pub fn new(lab: &'a LabState, bins: &'a Binaries, slots: Vec<Slot>, kill_percent: u32) -> Self {
        Churn {
            lab,
            bins,
            slots,
            gate: Default::default(),
            stop: Default::default(),
            counts: Default::default(),
            log: Default::default(),
            kill_percent,
            latencies: Default::default(),
            started: std::time::Instant::now(),
        }
    }
}

impl Churn<'_> {
    pub fn note(&self, line: String) {
        let mut l = self.log.lock().unwrap();
        if l.len() == LOG_KEEP {
            l.pop_front();
        }
        l.push_back(line);
    }

    /// Runtime `i` until `stop`, its choices drawn from `seed`.
    pub fn run(&self, i: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let slot = &self.slots[i];
        let mut n = 0u64;
        let mut next_id = || {
            n += 1;
            format!("chaos{seed:x}r{i}p{n}")
        };
        let (mut id, mut side) = (next_id(), 0);
        let mut added = self.add(&mut rng, slot, &id, side, None);
        loop {
            let result = self.count_add(&id, added);
            if result.is_some() {
                std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            }
            let pod = self.pod(slot, &id, side, result);
            let recreate = pod.state.result.is_some()
                && rng.random_range(0..100) < RECREATE_PERCENT
                && !self.stop.load(Ordering::Relaxed);
            if recreate {
                // The new pod's ADD while the old one is attached; the old one's DEL later.
                let (new_id, new_side) = (next_id(), 1 - side);
                added = self.add(&mut rng, slot, &new_id, new_side, Some(&id));
                self.counts.recreated.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
                self.del_until_done(&mut rng, &pod, |done| {
                    if done {
                        *slot.replaced.lock().unwrap() = None;
                    }
                });
                (id, side) = (new_id, new_side);
                continue;
            }
            self.del_until_done(&mut rng, &pod, |done| {
                *slot.phase.lock().unwrap() = match done {
                    true => Phase::Idle,
                    false => Phase::Limbo(id.clone()),
                }
            });
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            id = next_id();
            added = self.add(&mut rng, slot, &id, side, None);
        }
    }

    /// ADD of pod `id` in sandbox `side`; with `replacing`, that attached pod of the slot is
    /// replaced by this one (recorded in the same moment, under the gate). The gate is held
    /// from the phase change through the call to the phase it leads to, so a check never sees
    /// a phase the kernel and the datastore are not in.
    fn add(
        &self,
        rng: &mut StdRng,
        slot: &Slot,
        id: &str,
        side: usize,
        replacing: Option<&str>,
    ) -> Option<Call> {
        let pod = self.pod(slot, id, side, None);
        let _open = self.gate.read().unwrap();
        if let Some(old) = replacing {
            *slot.replaced.lock().unwrap() = Some(old.to_string());
        }
        *slot.phase.lock().unwrap() = Phase::Limbo(id.to_string());
        let added = self.call(rng, &pod.state, &pod.sandbox, "ADD");
        if let Some(Call::Done(result)) = &added {
            if let Some(ip) = address_of(result) {
                *slot.phase.lock().unwrap() = Phase::Attached(id.to_string(), ip);
            }
        }
        added
    }

    /// Counts an ADD's outcome; the result when it attached the pod (its DEL is still due
    /// either way).
    fn count_add(&self, id: &str, added: Option<Call>) -> Option<serde_json::Value> {
        let counter = match added {
            Some(Call::Done(result)) if address_of(&result).is_some() => {
                self.counts.adds.fetch_add(1, Ordering::Relaxed);
                return Some(result);
            }
            Some(Call::Done(result)) => {
                self.note(format!("{id}: ADD result without an address: {result}"));
                &self.counts.contract
            }
            Some(Call::Killed) => &self.counts.adds_killed,
            Some(Call::Failed { .. }) | None => &self.counts.adds_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// DEL until one completes (killed or failed ones are retried, a moment later); `mark`
    /// records under the gate whether it completed.
    fn del_until_done(&self, rng: &mut StdRng, pod: &Sandboxed, mark: impl Fn(bool)) {
        loop {
            let open = self.gate.read().unwrap();
            let deleted = self.call(rng, &pod.state, &pod.sandbox, "DEL");
            if let Some(Call::Done(_)) = deleted {
                mark(true);
                self.counts.dels.fetch_add(1, Ordering::Relaxed);
                return;
            }
            mark(false);
            drop(open);
            match deleted {
                Some(Call::Killed) => self.counts.dels_killed.fetch_add(1, Ordering::Relaxed),
                _ => self.counts.dels_failed.fetch_add(1, Ordering::Relaxed),
            };
            std::thread::sleep(Duration::from_millis(rng.random_range(5..50)));
        }
    }

    /// One plugin call, killed now and then; `None` when the call itself went wrong. The
    /// caller holds the gate.
    fn call(&self, rng: &mut StdRng, pod: &PodState, sandbox: &str, verb: &str) -> Option<Call> {
        let kill = (rng.random_range(0..100) < self.kill_percent)
            .then(|| Duration::from_micros(rng.random_range(0..40_000)));
        let start = std::time::Instant::now();
        let outcome = runtime::cni_call(self.bins, self.lab, pod, sandbox, verb, kill);
        if let Ok(Call::Done(_)) = &outcome {
            let v = if verb == "ADD" { Verb::Add } else { Verb::Del };
            self.latencies.lock().unwrap().push((
                start.duration_since(self.started),
                v,
                start.elapsed(),
            ));
        }
        match outcome {
            Ok(Call::Failed { code, msg, details }) => {
                self.note(format!(
                    "{} {verb}: error {code}: {msg} {details}",
                    pod.container_id
                ));
                Some(Call::Failed { code, msg, details })
            }
            Ok(c) => {
                self.note(format!(
                    "{} {verb}: {}",
                    pod.container_id,
                    if c == Call::Killed { "killed" } else { "done" }
                ));
                Some(c)
            }
            Err(e) => {
                self.counts.contract.fetch_add(1, Ordering::Relaxed);
                self.note(format!("{} {verb}: {e:#}", pod.container_id));
                None
            }
        }
    }

    /// Pod `id` of `slot` in its sandbox `side`: the pod name is the slot's first sandbox's
    /// whichever sandbox it is in, so a recreated pod has its predecessor's name.
    fn pod(
        &self,
        slot: &Slot,
        id: &str,
        side: usize,
        result: Option<serde_json::Value>,
    ) -> Sandboxed {
        Sandboxed {
            state: PodState {
                name: slot.sandboxes[0].clone(),
                namespace: "chaos".into(),
                node: slot.node.clone(),
                container_id: id.to_string(),
                result,
                containers: vec![],
                created: 0,
            },
            sandbox: slot.sandboxes[side].clone(),
        }
    }
}

/// A pod as a runtime knows it, and the sandbox (network namespace) it is in.
struct Sandboxed {
    state: PodState,
    sandbox: String,
}

/// The pod's address in an ADD result.
fn address_of(result: &serde_json::Value) -> Option<Ipv4Addr> {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_has_two_sandboxes_and_starts_idle() {
        let s = Slot::new("gen5x0", 3, "node2");
        assert_eq!(s.sandboxes, ["gen5x0-rt3", "gen5x0-rt3b"]);
        assert_eq!(*s.phase.lock().unwrap(), Phase::Idle);
        assert_eq!(*s.replaced.lock().unwrap(), None);
    }

    #[test]
    fn the_address_is_read_from_the_result() {
        let r = serde_json::json!({"ips": [{"address": "10.233.99.4/32"}]});
        assert_eq!(address_of(&r), Some(Ipv4Addr::new(10, 233, 99, 4)));
        assert_eq!(address_of(&serde_json::json!({})), None);
    }
}
