//! `cargo xtask fuzz TARGET --seconds N`: coverage-guided fuzzing of one parser (or `all`)
//! with libFuzzer, on stable Rust. The targets live in `fuzz/` (a crate of its own, outside
//! the workspace), built with the instrumentation cargo-fuzz would add (`-Cpasses=sancov-module`
//! and the sanitizer-coverage options are stable codegen flags; no nightly needed) into
//! `target/fuzz`. Each target starts from its corpus of real inputs in `fuzz/corpus/TARGET`
//! (never written to: what the fuzzer finds goes to `target/fuzz/corpus/TARGET`); a crash, a
//! panic or an input slower than 10 s (180 s for `lab_up`) stops it, saved under `target/fuzz/artifacts/TARGET/`.

use crate::sh::{self, execute};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Every target in `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 8] = [
    "cni_config",
    "cni_env",
    "ipam_config",
    "store_values",
    "scenario",
    "bird_reply",
    "plugin_call",
    "lab_up",
];

/// The targets that run real verbs (the plugins', the lab's `up` and `down`): started in PID,
/// mount and network namespaces of their own (where they make everything but `target/fuzz`
/// read-only), never in the host's.
const SANDBOXED: [&str; 2] = ["plugin_call", "lab_up"];
/// The lab's target runs the workspace's binaries (an `up` takes seconds: a longer timeout).
const LAB: &str = "lab_up";

#[derive(clap::Args)]
pub struct Args {
    /// A target (`cni_config`, `cni_env`, `ipam_config`, `store_values`, `scenario`,
    /// `bird_reply`, `plugin_call` and `lab_up` (root: the plugins' verbs, the lab's up and
    /// down, in a sandbox)) or `all`.
    target: String,
    /// How long to fuzz (each target, with `all`).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

pub fn run(a: Args) -> Result<()> {
    let targets: Vec<&str> = match a.target.as_str() {
        "all" => TARGETS.to_vec(),
        t if TARGETS.contains(&t) => vec![t],
        t => bail!("no fuzz target {t}: one of {} or all", TARGETS.join(", ")),
    };
    build()?;
    if targets.contains(&LAB) {
        execute(crate::sh::cargo().args(["build", "--workspace", "--bins"]))?;
    }
    for t in targets {
        fuzz(t, a.seconds)?;
    }
    Ok(())
}

/// The host's target triple: the instrumentation flags must not reach build scripts, which
/// cargo keeps apart only when a target is named.
fn host() -> Result<String> {
    let out = sh::output(Command::new("rustc").arg("-vV"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host")
}

pub fn build() -> Result<()> {
    crate::deps::ensure(&[&crate::deps::GXX])?;
    let root = sh::root();
    let flags = [
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "--cfg",
        "fuzzing",
        "-Cdebug-assertions",
        "-Coverflow-checks",
    ];
    execute(
        Command::new("cargo")
            .env("RUSTFLAGS", flags.join(" "))
            // Not --locked: fuzz/Cargo.lock follows the workspace crates' dependencies, and a
            // dependency added there must not break fuzzing until the lock is refreshed.
            .args(["build", "--release", "--target", &host()?])
            .arg("--manifest-path")
            .arg(root.join("fuzz/Cargo.toml"))
            .arg("--target-dir")
            .arg(root.join("target/fuzz")),
    )
}

/// One target for `seconds`; an error names the input that broke it.
pub fn fuzz(target: &str, seconds: u64) -> Result<()> {
    let root = sh::root();
    let bin = root
        .join("target/fuzz")
        .join(host()?)
        .join("release")
        .join(target);
    let work = root.join("target/fuzz/corpus").join(target);
    let artifacts = root.join("target/fuzz/artifacts").join(target);
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&artifacts)?;
    eprintln!("fuzzing {target} for {seconds} s");
    // The store_values target keeps its store file here, not in the host's /tmp.
    let tmp = root.join("target/fuzz/tmp");
    std::fs::create_dir_all(&tmp)?;
    let mut cmd = if SANDBOXED.contains(&target) {
        let mut c = Command::new("unshare");
        c.args(["--pid", "--fork", "--mount-proc", "--mount", "--net", "--"])
            .arg(&bin)
            .env("PODNET_FUZZ_WRITABLE", root.join("target/fuzz"))
            .env("PODNET_LAB_BINS", root.join("target/debug"));
        c
    } else {
        Command::new(&bin)
    };
    let timeout = if target == LAB { 180 } else { 10 };
    let status = cmd
        .env("TMPDIR", &tmp)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={timeout}"))
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&work)
        .arg(root.join("fuzz/corpus").join(target))
        .status()
        .with_context(|| format!("run {}", bin.display()))?;
    if !status.success() {
        bail!(
            "fuzz target {target} found an input that breaks it: see {} (make it a unit test)",
            artifacts.display()
        );
    }
    Ok(())
}
