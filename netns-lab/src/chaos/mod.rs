//! `podnet-lab chaos`: faults together, as users meet them. On a running lab, runtimes churn
//! pods through the real plugin with random kills ([`runtimes`]) while the conductor kills
//! agents, BIRD and etcd members and deletes routes ([`faults`]). Every `--check-every`
//! seconds it pauses the churn, starts what is down, runs CNI GC on every node with the true
//! list of attachments, waits for the lab to settle and checks the invariants
//! ([`invariants`]); at the end too, with every runtime idle, and the host's namespace
//! compared with what it was. With BGP every node's sessions are watched throughout: one
//! leaving Established with no fault on either end is a flap, a violation ([`sessions`]).
//! Choices come from `--seed` (printed first), so a run can be
//! replayed; the interleaving of 64 processes is the machine's, so a replay follows the same
//! decisions, not the same timing.

mod faults;
mod invariants;
mod runtimes;
mod sessions;
mod snapshot;
pub mod soak;

use crate::runtime::{self, Binaries, Call};
use crate::state::LabState;
use anyhow::{bail, Result};
use invariants::Expect;
use podnet_netlink::{netns, Netlink};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use runtimes::{Churn, Phase, Slot};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub struct Options {
    pub seed: u64,
    pub minutes: f64,
    pub runtimes: usize,
    pub kill_percent: u32,
    pub check_every: Duration,
    /// Faults on the nodes (agents, BIRD, routes, etcd), or only the churn.
    pub node_faults: bool,
    /// How long the lab may take to settle after the faults stop.
    pub settle: Duration,
}

/// What a run did and found.
#[derive(Debug, Default)]
struct Tally {
    checks: u64,
    /// BGP: reads of every node's sessions, and the sessions seen leaving Established.
    session_reads: u64,
    session_drops: usize,
    gc_runs: u64,
    gc_failures: u64,
    violations: Vec<String>,
}

/// Runs the chaos; `Ok(true)` when no invariant was ever broken.
pub fn run(lab: &mut LabState, bins: &Binaries, o: &Options) -> Result<bool> {
    if lab.nodes.is_empty() {
        bail!("lab {} has no nodes", lab.name);
    }
    println!(
        "chaos on lab {}: seed {} (replay with --seed {}), {} min, {} runtimes, {}% of calls killed",
        lab.name, o.seed, o.seed, o.minutes, o.runtimes, o.kill_percent
    );
    let host_before = host_snapshot()?;
    let nodes: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    let slots = sandboxes(lab, o.runtimes, &nodes)?;
    let nft_before = snapshot::egress_tables(lab)?.into_iter().collect();
    let churn_lab = lab.clone();
    let churn = Churn::new(&churn_lab, bins, slots, o.kill_percent);
    let mut tally = Tally::default();
    let mut faults = faults::Faults::default();
    let started = Instant::now();
    let stop_watch = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = lab.bgp().then(|| {
        let (lab, stop) = (lab.clone(), stop_watch.clone());
        std::thread::spawn(move || sessions::watch(&lab, &stop))
    });
    let conducted = std::thread::scope(|scope| -> Result<()> {
        for i in 0..o.runtimes {
            let churn = &churn;
            scope.spawn(move || churn.run(i, o.seed));
        }
        let r = conduct(lab, bins, o, &churn, &mut faults, &nft_before, &mut tally);
        churn.stop.store(true, Ordering::Relaxed);
        r
    });
    // Every runtime has finished its last pod (DEL done): nothing of the churn may remain.
    let final_check = conducted.and_then(|()| {
        faults.restore(lab, bins, true)?;
        lab.save()?;
        check(lab, bins, &churn, &nft_before, o.settle, &mut tally)
    });
    stop_watch.store(true, Ordering::Relaxed);
    if let Some(w) = watch {
        let seen = w.join().expect("the session watch panicked");
        let node_of = lab
            .scenario
            .nodes
            .iter()
            .map(|n| (n.ip.to_string(), n.name.clone()))
            .collect();
        tally.session_reads = seen.reads;
        tally.session_drops = seen.drops.len();
        tally
            .violations
            .extend(sessions::flaps(&seen.drops, &faults.touched, &node_of));
    }
    remove_sandboxes(lab, &churn)?;
    final_check?;
    let host_after = host_snapshot()?;
    tally.checks += 1;
    if host_after != host_before {
        tally
            .violations
            .push("the host's namespace changed (links, addresses, routes or forwarding)".into());
    }
    report(&churn, &faults, &tally, started.elapsed());
    Ok(tally.violations.is_empty() && churn.counts.contract.load(Ordering::Relaxed) == 0)
}

/// A pod sandbox (a network namespace) for each of `runtimes` runtimes, on `nodes` round
/// robin; recorded in the lab's state first, so `down` removes them whatever happens next.
fn sandboxes(lab: &mut LabState, runtimes: usize, nodes: &[String]) -> Result<Vec<Slot>> {
    let slots: Vec<Slot> = (0..runtimes)
        .map(|i| Slot::new(&lab.name, i, &nodes[i % nodes.len()]))
        .collect();
    for sandbox in slots.iter().flat_map(|s| &s.sandboxes) {
        lab.namespaces.push(LabState::netns_path(sandbox));
    }
    lab.save()?;
    for sandbox in slots.iter().flat_map(|s| &s.sandboxes) {
        netns::create(LabState::netns_path(sandbox))?;
    }
    Ok(slots)
}

/// Faults at random moments until the time is up, a check every `check_every`.
fn conduct(
    lab: &mut LabState,
    bins: &Binaries,
    o: &Options,
    churn: &Churn<'_>,
    faults: &mut faults::Faults,
    nft_before: &BTreeMap<String, Option<podnet_netlink::nft::Table>>,
    tally: &mut Tally,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(o.seed);
    let deadline = Instant::now() + Duration::from_secs_f64(o.minutes * 60.0);
    let mut next_check = Instant::now() + o.check_every;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        if o.node_faults {
            faults.restore(lab, bins, false)?;
            let what = faults.inject(lab, &mut rng)?;
            lab.save()?;
            churn.note(format!("fault: {what}"));
        }
        if Instant::now() >= next_check {
            let _paused = churn.gate.write().unwrap();
            faults.restore(lab, bins, true)?;
            lab.save()?;
            check(lab, bins, churn, nft_before, o.settle, tally)?;
            next_check = Instant::now() + o.check_every;
        }
    }
    Ok(())
}

/// The invariants (until they hold or `settle` has passed: agents and BIRD coming back take
/// a moment; what still fails then is a violation), then CNI GC on every node with the true
/// list of attachments, then the invariants again (GC must not touch a live attachment). The
/// churn must be paused (or over). Before GC nothing may be left either: every pod not live
/// had a DEL that completed, and DEL must clean up after a killed ADD.
fn check(
    lab: &LabState,
    bins: &Binaries,
    churn: &Churn<'_>,
    nft_before: &BTreeMap<String, Option<podnet_netlink::nft::Table>>,
    settle: Duration,
    tally: &mut Tally,
) -> Result<()> {
    let expect = expect(lab, churn, nft_before);
    settled(lab, churn, &expect, settle, "before GC", tally)?;
    for n in &lab.nodes {
        let valid: Vec<String> = expect
            .attached
            .iter()
            .filter(|(_, (node, _))| *node == n.name)
            .map(|(id, _)| id.clone())
            .chain(
                churn
                    .slots
                    .iter()
                    .filter(|s| s.node == n.name)
                    .flat_map(|s| {
                        let limbo = match &*s.phase.lock().unwrap() {
                            Phase::Limbo(id) => Some(id.clone()),
                            _ => None,
                        };
                        limbo.into_iter().chain(s.replaced.lock().unwrap().clone())
                    }),
            )
            .collect();
        tally.gc_runs += 1;
        match runtime::cni_gc(bins, lab, &n.name, &valid)? {
            Call::Done(_) => {}
            other => {
                tally.gc_failures += 1;
                churn.note(format!("GC on {}: {other:?}", n.name));
            }
        }
    }
    settled(lab, churn, &expect, settle, "after GC", tally)
}

/// Snapshots until no rule is broken or `settle` has passed; then the broken ones are
/// violations, reported with the operations that led to them.
fn settled(
    lab: &LabState,
    churn: &Churn<'_>,
    expect: &Expect,
    settle: Duration,
    when: &str,
    tally: &mut Tally,
) -> Result<()> {
    let start = Instant::now();
    loop {
        tally.checks += 1;
        let broken = invariants::violations(&snapshot::read(lab)?, expect);
        if broken.is_empty() {
            return Ok(());
        }
        if start.elapsed() > settle {
            let log: Vec<String> = churn.log.lock().unwrap().iter().cloned().collect();
            eprintln!("violations {when}, after {settle:?} of settling:");
            for b in &broken {
                eprintln!("  {b}");
            }
            eprintln!("the last operations before them:");
            for l in log.iter().rev().take(40).rev() {
                eprintln!("  {l}");
            }
            tally
                .violations
                .extend(broken.into_iter().map(|b| format!("{when}: {b}")));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// What the runtimes (and the lab's own pods) say exists now.
fn expect(
    lab: &LabState,
    churn: &Churn<'_>,
    nft_before: &BTreeMap<String, Option<podnet_netlink::nft::Table>>,
) -> Expect {
    let mut e = Expect {
        nft_before: nft_before.clone(),
        ..Expect::default()
    };
    for p in &lab.pods {
        if let Some(ip) = p.ip().and_then(|i| i.parse().ok()) {
            e.attached
                .insert(p.container_id.clone(), (p.node.clone(), ip));
        }
    }
    for s in &churn.slots {
        match &*s.phase.lock().unwrap() {
            Phase::Idle => {}
            Phase::Limbo(id) => {
                e.limbo.insert(id.clone(), s.node.clone());
            }
            Phase::Attached(id, ip) => {
                e.attached.insert(id.clone(), (s.node.clone(), *ip));
            }
        }
        if let Some(id) = &*s.replaced.lock().unwrap() {
            e.replaced.insert(id.clone(), s.node.clone());
        }
    }
    e
}

fn remove_sandboxes(lab: &mut LabState, churn: &Churn<'_>) -> Result<()> {
    for sandbox in churn.slots.iter().flat_map(|s| &s.sandboxes) {
        let path = LabState::netns_path(sandbox);
        if std::path::Path::new(&path).exists() {
            netns::remove(&path)?;
        }
        lab.namespaces.retain(|n| *n != path);
    }
    lab.save()
}

/// The host's own links, addresses, routes and forwarding, as text.
fn host_snapshot() -> Result<String> {
    let mut nl = Netlink::open()?;
    let mut s = String::new();
    for l in nl.links()? {
        s += &format!("link {} {} {} {}\n", l.index, l.name, l.mtu, l.mac_string());
    }
    for a in nl.addresses()? {
        s += &format!("addr {} {}\n", a.index, a.net);
    }
    for r in nl.routes()? {
        s += &format!("route {r:?}\n");
    }
    for k in ["net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding"] {
        s += &std::fs::read_to_string(format!("/proc/sys/{k}"))?;
    }
    Ok(s)
}

fn report(churn: &Churn<'_>, faults: &faults::Faults, t: &Tally, took: Duration) {
    let c = &churn.counts;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let f = &faults.counts;
    println!("\nchaos report ({:.1} min)", took.as_secs_f64() / 60.0);
    println!(
        "  operations   ADD {} done, {} failed, {} killed; DEL {} done, {} failed, {} killed; {} pods recreated under their name while attached",
        n(&c.adds),
        n(&c.adds_failed),
        n(&c.adds_killed),
        n(&c.dels),
        n(&c.dels_failed),
        n(&c.dels_killed),
        n(&c.recreated)
    );
    println!(
        "  faults       agents killed {}, BIRD killed {}, routes deleted {}, etcd members killed {}",
        f.agent_kills, f.bird_kills, f.routes_deleted, f.etcd_kills
    );
    println!(
        "  GC           {} runs on nodes, {} failed",
        t.gc_runs, t.gc_failures
    );
    if t.session_reads > 0 {
        println!(
            "  BGP          every node's sessions read {} times; {} left Established, each within {} s of a fault on one of its ends or counted below",
            t.session_reads,
            t.session_drops,
            sessions::EXPLAINED_WITHIN.as_secs()
        );
    }
    println!(
        "  contract     {} plugin calls without exactly one JSON reply",
        n(&c.contract)
    );
    let violations = t.violations.len() + n(&c.contract) as usize;
    println!(
        "  invariants   {} checks, {violations} violations",
        t.checks
    );
    // The same, one line for scripts.
    println!(
        "chaos-figures adds={} adds_failed={} adds_killed={} dels={} dels_failed={} dels_killed={} \
         recreated={} agent_kills={} bird_kills={} routes_deleted={} etcd_kills={} gc_runs={} checks={} \
         session_reads={} session_drops={} violations={violations}",
        n(&c.adds),
        n(&c.adds_failed),
        n(&c.adds_killed),
        n(&c.dels),
        n(&c.dels_failed),
        n(&c.dels_killed),
        n(&c.recreated),
        f.agent_kills,
        f.bird_kills,
        f.routes_deleted,
        f.etcd_kills,
        t.gc_runs,
        t.checks,
        t.session_reads,
        t.session_drops
    );
}
