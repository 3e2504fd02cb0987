//! `podnet-lab soak`: the lab under steady churn for a long time. Runtimes ADD and DEL pods
//! without faults while nodes join and leave, the invariants checked every `--check-every`
//! seconds; every second the resident memory and open file descriptors of each agent of the
//! lab's first nodes are sampled. The report: their growth per hour (a least-squares slope),
//! ADD and DEL p99 latency window by window, and the datastore's live size (SQLite pages in
//! use, what a VACUUM would keep) window by window: it levels off once the store's watch
//! history reaches its cap (the last 10,000 revisions).

use super::runtimes::{Churn, Verb};
use super::{check, remove_sandboxes, sandboxes, Tally};
use crate::runtime::Binaries;
use crate::state::LabState;
use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long the lab may take to settle before a check (no BIRD restarts in a soak).
const SETTLE: Duration = Duration::from_secs(30);

pub struct Options {
    pub seed: u64,
    pub minutes: f64,
    pub runtimes: usize,
    pub check_every: Duration,
    /// Seconds between a node joining or leaving.
    pub node_every: Duration,
}

/// One sample of an agent.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: f64,
    rss_kib: f64,
    fds: f64,
}

pub fn run(lab: &mut LabState, bins: &Binaries, o: &Options) -> Result<bool> {
    println!(
        "soak on lab {}: seed {}, {} min, {} runtimes, a node joins or leaves every {:?}",
        lab.name, o.seed, o.minutes, o.runtimes, o.node_every
    );
    let first_nodes: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    let slots = sandboxes(lab, o.runtimes, &first_nodes)?;
    let nft_before = super::snapshot::egress_tables(lab)?.into_iter().collect();
    let size_before = live_size(lab);
    let churn_lab = lab.clone();
    let churn = Churn::new(&churn_lab, bins, slots, 0);
    let mut tally = Tally::default();
    let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    // The datastore's live size now and then: bounded means it levels off.
    let mut sizes: Vec<(f64, u64)> = Vec::new();
    let mut joined: Vec<(String, std::net::Ipv4Addr)> = Vec::new();
    let (mut joins, mut leaves) = (0u64, 0u64);
    let run = std::thread::scope(|scope| -> Result<()> {
        for i in 0..o.runtimes {
            let churn = &churn;
            scope.spawn(move || churn.run(i, o.seed));
        }
        let r = (|| -> Result<()> {
            let mut rng = StdRng::seed_from_u64(o.seed);
            let deadline = Instant::now() + Duration::from_secs_f64(o.minutes * 60.0);
            let mut next_check = Instant::now() + o.check_every;
            let mut next_node = Instant::now() + o.node_every;
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_secs(1));
                sample(lab, &first_nodes, churn.started, &mut samples);
                if let Some(b) = live_size(lab) {
                    sizes.push((churn.started.elapsed().as_secs_f64(), b));
                }
                if Instant::now() >= next_node {
                    // Join while fewer than two extra nodes are up, else leave; now and then
                    // the other way round.
                    let join = joined.is_empty() || (joined.len() < 2 && rng.random_bool(0.7));
                    if join {
                        let (name, ip) = crate::nodes::add(lab, bins)?;
                        churn.note(format!("node {name} ({ip}) joined"));
                        joined.push((name, ip));
                        joins += 1;
                    } else {
                        let (name, ip) = joined.remove(rng.random_range(0..joined.len()));
                        crate::nodes::remove(lab, &name)?;
                        churn.note(format!("node {name} ({ip}) left"));
                        leaves += 1;
                    }
                    next_node = Instant::now() + o.node_every;
                }
                if Instant::now() >= next_check {
                    let _paused = churn.gate.write().unwrap();
                    check(lab, bins, &churn, &nft_before, SETTLE, &mut tally)?;
                    next_check = Instant::now() + o.check_every;
                }
            }
            Ok(())
        })();
        churn.stop.store(true, Ordering::Relaxed);
        r
    });
    let last = run.and_then(|()| {
        check(lab, bins, &churn, &nft_before, SETTLE, &mut tally)?;
        for (name, _) in joined.drain(..) {
            crate::nodes::remove(lab, &name)?;
        }
        Ok(())
    });
    remove_sandboxes(lab, &churn)?;
    last?;
    let size_after = live_size(lab);
    report(
        &churn,
        &tally,
        &samples,
        &sizes,
        (joins, leaves),
        (size_before, size_after),
    );
    Ok(tally.violations.is_empty() && churn.counts.contract.load(Ordering::Relaxed) == 0)
}

/// Resident memory and open descriptors of each first node's agent.
fn sample(
    lab: &LabState,
    nodes: &[String],
    started: Instant,
    out: &mut BTreeMap<String, Vec<Sample>>,
) {
    let at = started.elapsed().as_secs_f64();
    for n in lab.nodes.iter().filter(|n| nodes.contains(&n.name)) {
        let Some(pid) = n.agent.as_ref().map(|p| p.pid) else {
            continue;
        };
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            });
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as f64);
        if let (Some(rss_kib), Ok(fds)) = (rss, fds) {
            out.entry(n.name.clone())
                .or_default()
                .push(Sample { at, rss_kib, fds });
        }
    }
}

/// The least-squares slope of `ys` over `xs`, per hour (xs in seconds).
pub fn slope_per_hour(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx * 3600.0
    }
}

/// The 99th percentile of `v` (nearest rank).
pub fn p99(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64) * 0.99).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// The datastore's live size in bytes: SQLite pages in use (not on the free list).
fn live_size(lab: &LabState) -> Option<u64> {
    if lab.datastore != "sqlite" {
        return None;
    }
    let c = rusqlite::Connection::open_with_flags(
        lab.store(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .context("open the lab's store")
    .ok()?;
    let q = |p: &str| -> Option<u64> {
        let n: i64 = c.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0)).ok()?;
        u64::try_from(n).ok()
    };
    Some((q("page_count")? - q("freelist_count")?) * q("page_size")?)
}

fn report(
    churn: &Churn<'_>,
    t: &Tally,
    samples: &BTreeMap<String, Vec<Sample>>,
    sizes: &[(f64, u64)],
    (joins, leaves): (u64, u64),
    (before, after): (Option<u64>, Option<u64>),
) {
    let c = &churn.counts;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let took = churn.started.elapsed().as_secs_f64();
    println!("\nsoak report ({:.1} min)", took / 60.0);
    println!(
        "  operations   ADD {}, DEL {}; nodes joined {joins}, left {leaves}",
        n(&c.adds),
        n(&c.dels)
    );
    let (mut rss_max, mut fd_max) = (f64::MIN, f64::MIN);
    for (node, s) in samples {
        let rss = slope_per_hour(&s.iter().map(|x| (x.at, x.rss_kib)).collect::<Vec<_>>());
        let fds = slope_per_hour(&s.iter().map(|x| (x.at, x.fds)).collect::<Vec<_>>());
        let (a, b) = (
            s.first().map_or(0.0, |x| x.rss_kib),
            s.last().map_or(0.0, |x| x.rss_kib),
        );
        println!(
            "  agent {node:<8} RSS {a:.0} -> {b:.0} KiB ({rss:+.0} KiB/h), fds {:.0} -> {:.0} ({fds:+.1}/h)",
            s.first().map_or(0.0, |x| x.fds),
            s.last().map_or(0.0, |x| x.fds)
        );
        rss_max = rss_max.max(rss);
        fd_max = fd_max.max(fds);
    }
    // Latency p99 in six windows.
    let lat = churn.latencies.lock().unwrap();
    let window = (took / 6.0).max(1.0);
    let mut rows = Vec::new();
    for w in 0..6 {
        let (lo, hi) = (w as f64 * window, (w + 1) as f64 * window);
        let pick = |v: Verb| -> Vec<f64> {
            lat.iter()
                .filter(|(at, verb, _)| *verb == v && (lo..hi).contains(&at.as_secs_f64()))
                .map(|(_, _, d)| d.as_secs_f64() * 1e3)
                .collect()
        };
        let (mut a, mut d) = (pick(Verb::Add), pick(Verb::Del));
        let size = sizes
            .iter()
            .filter(|(at, _)| (lo..hi).contains(at))
            .map(|(_, b)| *b)
            .max()
            .unwrap_or(0);
        rows.push((lo, a.len(), p99(&mut a), p99(&mut d), size));
    }
    for (lo, count, a, d, size) in &rows {
        println!(
            "  from {lo:>6.0} s   {count:>5} ADDs   p99 ADD {a:>7.1} ms   p99 DEL {d:>7.1} ms   store {:>6} KiB",
            size / 1024
        );
    }
    let first = rows.first().map_or(0.0, |r| r.2);
    let last = rows.last().map_or(0.0, |r| r.2);
    let size = |s: Option<u64>| s.map_or("n/a (etcd)".to_string(), |b| format!("{b} B"));
    println!(
        "  datastore    live size {} at the start, {} at the end",
        size(before),
        size(after)
    );
    println!(
        "  invariants   {} checks, {} violations",
        t.checks,
        t.violations.len()
    );
    println!(
        "soak-figures adds={} dels={} joins={joins} leaves={leaves} rss_kib_per_h_max={rss_max:.0} fds_per_h_max={fd_max:.1} \
         p99_add_first_ms={first:.1} p99_add_last_ms={last:.1} store_before={} store_after={} checks={} violations={}",
        n(&c.adds),
        n(&c.dels),
        before.unwrap_or(0),
        after.unwrap_or(0),
        t.checks,
        t.violations.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_line_has_its_slope_per_hour() {
        let pts: Vec<(f64, f64)> = (0..60)
            .map(|s| (s as f64, 1000.0 + 2.0 * s as f64))
            .collect();
        assert!((slope_per_hour(&pts) - 7200.0).abs() < 1e-6);
        assert_eq!(slope_per_hour(&[(1.0, 5.0)]), 0.0);
        assert_eq!(slope_per_hour(&[(1.0, 5.0), (1.0, 6.0)]), 0.0);
    }

    #[test]
    fn p99_is_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(p99(&mut v), 99.0);
        assert_eq!(p99(&mut [3.0]), 3.0);
        assert_eq!(p99(&mut []), 0.0);
    }
}
