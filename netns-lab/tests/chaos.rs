//! A short chaos run with a fixed seed on each datastore (what `cargo xtask test` runs; the
//! long one is `cargo xtask chaos`): it must break no invariant, and do real work on the way
//! (calls completed and killed, every kind of fault, checks run).

use serial_test::serial;
use std::collections::HashMap;

mod common;
use common::{lab, ok};

/// Up a generated lab with `up_args`, a 30 s chaos run with `seed`, down whatever happened;
/// the figures of the run's report.
fn chaos_run(up_args: &[&str], seed: &str) -> HashMap<String, u64> {
    let name = "gen5x0";
    let _ = lab(&["--lab", name, "down"]);
    let mut args = vec!["up", "--nodes", "5", "--quiet"];
    args.extend(up_args);
    ok(&args);
    let out = lab(&[
        "--lab",
        name,
        "chaos",
        "--seed",
        seed,
        "--minutes",
        "0.5",
        "--check-every",
        "8",
    ]);
    ok(&["--lab", name, "down"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "chaos broke invariants:\n{text}");
    assert!(
        text.contains(&format!("seed {seed} (replay with --seed {seed})")),
        "{text}"
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("chaos-figures "))
        .unwrap_or_else(|| panic!("no figures in\n{text}"));
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Each of `keys` counted at least once.
fn all_happened(f: &HashMap<String, u64>, keys: &[&str]) {
    for k in keys {
        assert!(
            f.get(*k).is_some_and(|n| *n > 0),
            "{k} never happened: {f:?}"
        );
    }
}

#[test]
#[ignore = "needs root"]
#[serial]
fn chaos_on_sqlite_breaks_no_invariant() {
    let f = chaos_run(&[], "1");
    assert_eq!(f["violations"], 0);
    all_happened(
        &f,
        &[
            "adds",
            "adds_killed",
            "dels",
            "dels_killed",
            "agent_kills",
            "bird_kills",
            "routes_deleted",
            "gc_runs",
        ],
    );
    assert!(f["checks"] >= 3, "{f:?}");
}

#[test]
#[ignore = "needs root"]
#[serial]
fn chaos_on_a_three_member_etcd_breaks_no_invariant() {
    let f = chaos_run(&["--datastore", "etcd", "--etcd-members", "3"], "2");
    assert_eq!(f["violations"], 0);
    all_happened(&f, &["adds", "adds_killed", "dels_killed", "etcd_kills"]);
}
