//! `cargo xtask test`: everything CI runs. Installs what is missing, lints the GitHub workflow,
//! validates the Kubernetes manifests, builds as the calling user, packages the product crates
//! (`cargo package`, offline), runs unit tests as that user and the root tests (marked
//! `#[ignore = "needs root"]`) as root, then the Debian package and the container image for
//! real (`dist check`), then every fuzz target for a few seconds. Root tests
//! are never skipped silently: without root and without sudo this fails and says why. The IPIP suite (tests named `ipip_`) runs
//! natively where the kernel has IPIP, else in one boot of `cargo xtask vm`; the `ipip_vm_`
//! tests (they unload kernel modules) run in the VM always.

use crate::deps::{
    self, BIRD, CNI_PLUGINS, ETCD, IPERF3, IPROUTE2, NFTABLES, PING, PROTOBUF_TYPES, PROTOC,
    SQLITE3,
};
use crate::sh::{self, cargo, execute, have, is_root};
use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Don't lint .github/workflows nor validate deploy/kubernetes (the tools come from PyPI).
    #[arg(long)]
    no_lint: bool,
    /// Passed to the test binaries (a name filter, `--nocapture`, ...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    test_args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    deps::ensure(&[
        &PROTOC,
        &PROTOBUF_TYPES,
        &CNI_PLUGINS,
        &IPROUTE2,
        &PING,
        &SQLITE3,
        &ETCD,
        &BIRD,
        &NFTABLES,
        &IPERF3,
    ])?;
    if !args.no_lint {
        lint_workflows()?;
        validate_manifests()?;
    }
    execute(cargo().args(["build", "--workspace", "--all-targets"]))?;
    package_crates()?;
    let native_ipip = ipip_native();
    // Without IPIP here, the `ipip_` tests run in the VM instead (never skipped silently).
    // A skip matches anywhere in a test's name, and the VM runs only the `ipip` test binaries:
    // a test elsewhere whose name holds `ipip_` would run nowhere, so none may.
    // The `ipip_vm_` tests unload kernel modules, which no test may do to the host's kernel:
    // they always run in the VM.
    let skip: &[&str] = if native_ipip {
        &["--skip", "ipip_vm_"]
    } else {
        &["--skip", "ipip_"]
    };
    if is_root() {
        execute(
            cargo()
                .args(["test", "--workspace", "--", "--include-ignored"])
                .args(skip)
                .args(&args.test_args),
        )?;
    } else {
        if !have("sudo") {
            bail!(
                "the root tests need root and there is no sudo: run `cargo xtask test` as root \
                 (unit tests alone: `cargo test --workspace`)"
            );
        }
        execute(
            cargo()
                .args(["test", "--workspace", "--"])
                .args(&args.test_args),
        )?;
        eprintln!("running the root tests through sudo");
        execute(
            cargo()
                .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E")
                .args(["test", "--workspace", "--", "--ignored"])
                .args(skip)
                .args(&args.test_args),
        )?;
    }
    if args.test_args.is_empty() {
        dist_check()?;
        fuzz_briefly()?;
    }
    if native_ipip {
        eprintln!(
            "IPIP suite: ran natively (this kernel has IPIP); the ipip_vm_ tests go to the VM"
        );
        return ipip_in_vm("ipip_vm_");
    }
    eprintln!("IPIP suite: this kernel has no IPIP, so the ipip_ tests run under a Debian kernel in qemu (cargo xtask vm)");
    ipip_in_vm("ipip_")
}

/// The Debian package and the container image, installed and run for real (as root).
fn dist_check() -> Result<()> {
    if is_root() {
        return crate::dist::check::run();
    }
    let me = std::env::current_exe()?;
    execute(
        sh::as_root(me.to_str().expect("UTF-8 path"))?
            .arg("dist")
            .arg("check"),
    )
}

/// Seconds each fuzz target runs in the suite (`cargo xtask fuzz` for longer).
const FUZZ_SECONDS: u64 = 20;

/// Every fuzz target for a moment, from its corpus: a crash or a hang fails the suite.
fn fuzz_briefly() -> Result<()> {
    eprintln!(
        "fuzzing each of the {} parsers' targets for {FUZZ_SECONDS} s",
        crate::fuzz::TARGETS.len()
    );
    crate::fuzz::build()?;
    for t in crate::fuzz::TARGETS {
        crate::fuzz::fuzz(t, FUZZ_SECONDS)?;
    }
    Ok(())
}

/// True if this kernel has IPIP without loading anything: the module is loaded or built in.
fn ipip_native() -> bool {
    std::path::Path::new("/sys/module/ipip").exists()
}

/// The tests whose names hold `filter` in the `ipip` test binaries, in one VM boot under a
/// Debian kernel (see `cargo xtask vm`).
fn ipip_in_vm(filter: &str) -> Result<()> {
    let out = sh::output(cargo().args([
        "test",
        "--no-run",
        "--message-format=json",
        "-q",
        "-p",
        "podnet-lab",
        "-p",
        "podnet-agent",
        "--test",
        "ipip",
    ]))?;
    let exes: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "ipip")
        .filter_map(|v| v["executable"].as_str().map(str::to_string))
        .collect();
    if exes.len() != 2 {
        bail!("expected the two ipip test binaries, found {exes:?}");
    }
    let mut script = String::from("fail=0\n");
    for e in &exes {
        script.push_str(&format!(
            "{e} --include-ignored --test-threads 1 --color never {filter} || fail=1\n"
        ));
    }
    script.push_str("exit $fail\n");
    let vm = crate::vm::Vm::prepare()?;
    let code = vm.run(&script, 2048, std::time::Duration::from_secs(900), true)?;
    if code != 0 {
        bail!("the IPIP suite failed in the VM (exit {code})");
    }
    eprintln!("IPIP suite: passed in the VM");
    Ok(())
}

/// Lints the GitHub workflows against the published schema and with zizmor (offline audits).
/// Every product crate packaged as crates.io would take it, offline, each package built
/// from its own contents (the workspace's crates depend on each other: cargo packages them
/// together). Nothing is uploaded.
fn package_crates() -> Result<()> {
    forget_unpacked_packages()?;
    execute(cargo().args([
        "package",
        "--workspace",
        "--exclude",
        "xtask",
        "--offline",
        "--allow-dirty",
    ]))
}

/// Cargo unpacks the packaged crates from its temporary registry into
/// `$CARGO_HOME/registry/src/-<hash>/` and reuses what it finds there, and what it built of
/// them under `target/package`, by name and version (a registry's crates never change): a
/// second run would verify against the first run's sources. Our own crates' unpacked copies
/// and `target/package` are removed first (nothing else of the cache is touched).
fn forget_unpacked_packages() -> Result<()> {
    let built = sh::root().join("target/package");
    if built.exists() {
        std::fs::remove_dir_all(&built)?;
    }
    // The verification builds go to target/debug: forget what was built from the temporary
    // registry (its dep-info names sources under `registry/src/-<hash>`), so it is rebuilt.
    let debug = sh::root().join("target/debug");
    if let Ok(deps) = std::fs::read_dir(debug.join("deps")) {
        for d in deps.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            let Some(stem) = name
                .strip_prefix("podnet_")
                .and_then(|n| n.strip_suffix(".d"))
            else {
                continue;
            };
            let from_registry =
                std::fs::read_to_string(d.path()).is_ok_and(|t| t.contains("/registry/src/-"));
            if let (true, Some((krate, hash))) = (from_registry, stem.rsplit_once('-')) {
                let fingerprint = debug
                    .join(".fingerprint")
                    .join(format!("podnet-{}-{hash}", krate.replace('_', "-")));
                if fingerprint.exists() {
                    std::fs::remove_dir_all(fingerprint)?;
                }
            }
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return Ok(());
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for reg in registries.flatten() {
        // The temporary registry's folder is named by its hash alone.
        if !reg.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for krate in std::fs::read_dir(reg.path())?.flatten() {
            if krate.file_name().to_string_lossy().starts_with("podnet-") {
                std::fs::remove_dir_all(krate.path())?;
            }
        }
    }
    Ok(())
}

/// The Kubernetes release the manifests are validated against (kubernetes-validate's schemas).
const KUBERNETES_VERSION: &str = "1.37.0";

/// `deploy/kubernetes/*.yaml` against the API's schemas, strictly (an unknown field is an
/// error): they cannot be applied to a real cluster here.
fn validate_manifests() -> Result<()> {
    let bin = deps::python_tools(&["kubernetes-validate"])?;
    let dir = sh::root().join("deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no manifest in {}", dir.display());
    }
    execute(
        std::process::Command::new(bin.join("kubernetes-validate"))
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .args(&files),
    )
}

fn lint_workflows() -> Result<()> {
    let bin = deps::python_tools(&["check-jsonschema", "zizmor"])?;
    let workflows = sh::root().join(".github/workflows");
    let files: Vec<_> = std::fs::read_dir(&workflows)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    if files.is_empty() {
        bail!("no workflow in {}", workflows.display());
    }
    execute(
        std::process::Command::new(bin.join("check-jsonschema"))
            .args(["--builtin-schema", "vendor.github-workflows"])
            .args(&files),
    )?;
    execute(
        std::process::Command::new(bin.join("zizmor"))
            .arg("--offline")
            .arg(&workflows),
    )
}
