//! The pod churn: runtimes doing ADD and DEL through the real plugin, as kubelet and
//! containerd do, some calls SIGKILLed at a random moment (a runtime's timeout). After a failed
//! or killed ADD the runtime calls DEL, and it retries DEL until one completes, as kubelet
//! retries StopPodSandbox. Each runtime owns a pod sandbox (a network namespace kept for the
//! whole run, so nothing the plugin leaves in it is hidden by the namespace going away) on one
//! node, and uses a new container ID for each pod.

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

/// One runtime: its sandbox, its node, its current pod.
pub struct Slot {
    pub sandbox: String,
    pub node: String,
    pub phase: Mutex<Phase>,
}

/// Counts for the report.
#[derive(Default)]
pub struct Counts {
    pub adds: AtomicU64,
    pub adds_failed: AtomicU64,
    pub adds_killed: AtomicU64,
    pub dels: AtomicU64,
    pub dels_failed: AtomicU64,
    pub dels_killed: AtomicU64,
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
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let id = format!("chaos{seed:x}r{i}p{n}");
            let pod = self.pod(slot, &id, None);
            // The gate is held from the phase change through the call to the phase it leads
            // to, so a check never sees a phase the kernel and the datastore are not in.
            let open = self.gate.read().unwrap();
            *slot.phase.lock().unwrap() = Phase::Limbo(id.clone());
            let added = self.call(&mut rng, &pod, "ADD");
            if let Some(Call::Done(result)) = &added {
                if let Some(ip) = address_of(result) {
                    *slot.phase.lock().unwrap() = Phase::Attached(id.clone(), ip);
                }
            }
            drop(open);
            match added {
                Some(Call::Done(result)) => match address_of(&result) {
                    Some(_) => {
                        self.counts.adds.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
                        let pod = self.pod(slot, &id, Some(result));
                        self.del_until_done(&mut rng, slot, &pod);
                    }
                    None => {
                        self.counts.contract.fetch_add(1, Ordering::Relaxed);
                        self.note(format!("{id}: ADD result without an address: {result}"));
                        self.del_until_done(&mut rng, slot, &pod);
                    }
                },
                Some(Call::Killed) => {
                    self.counts.adds_killed.fetch_add(1, Ordering::Relaxed);
                    self.del_until_done(&mut rng, slot, &pod);
                }
                Some(Call::Failed { .. }) | None => {
                    self.counts.adds_failed.fetch_add(1, Ordering::Relaxed);
                    self.del_until_done(&mut rng, slot, &pod);
                }
            }
        }
    }

    /// DEL until one completes (killed or failed ones are retried, a moment later).
    fn del_until_done(&self, rng: &mut StdRng, slot: &Slot, pod: &PodState) {
        loop {
            let open = self.gate.read().unwrap();
            let deleted = self.call(rng, pod, "DEL");
            if let Some(Call::Done(_)) = deleted {
                *slot.phase.lock().unwrap() = Phase::Idle;
                self.counts.dels.fetch_add(1, Ordering::Relaxed);
                return;
            }
            *slot.phase.lock().unwrap() = Phase::Limbo(pod.container_id.clone());
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
    fn call(&self, rng: &mut StdRng, pod: &PodState, verb: &str) -> Option<Call> {
        let kill = (rng.random_range(0..100) < self.kill_percent)
            .then(|| Duration::from_micros(rng.random_range(0..40_000)));
        let start = std::time::Instant::now();
        let outcome = runtime::cni_call(self.bins, self.lab, pod, verb, kill);
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

    fn pod(&self, slot: &Slot, id: &str, result: Option<serde_json::Value>) -> PodState {
        PodState {
            name: slot.sandbox.clone(),
            namespace: "chaos".into(),
            node: slot.node.clone(),
            container_id: id.to_string(),
            result,
            containers: vec![],
            created: 0,
        }
    }
}

/// The pod's address in an ADD result.
fn address_of(result: &serde_json::Value) -> Option<Ipv4Addr> {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next()?.parse().ok())
}
