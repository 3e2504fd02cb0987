//! `cargo xtask test`: everything CI runs. Installs what is missing, lints the GitHub workflow,
//! builds as the calling user, runs unit tests as that user and the root tests (marked
//! `#[ignore = "needs root"]`) as root. Root tests are never skipped silently: without root
//! and without sudo this fails and says why.

use crate::deps::{self, CNI_PLUGINS, IPROUTE2, PING, SQLITE3};
use crate::sh::{self, cargo, execute, have, is_root};
use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Don't lint .github/workflows (the linters come from PyPI).
    #[arg(long)]
    no_lint: bool,
    /// Passed to the test binaries (a name filter, `--nocapture`, ...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    test_args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    deps::ensure(&[&CNI_PLUGINS, &IPROUTE2, &PING, &SQLITE3])?;
    if !args.no_lint {
        lint_workflows()?;
    }
    execute(cargo().args(["build", "--workspace", "--all-targets"]))?;
    if is_root() {
        return execute(
            cargo()
                .args(["test", "--workspace", "--", "--include-ignored"])
                .args(&args.test_args),
        );
    }
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
            .args(&args.test_args),
    )
}

/// Lints the GitHub workflows against the published schema and with zizmor (offline audits).
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
