//! `cargo xtask dist`: what an operator installs. `dist deb` makes the Debian package,
//! `dist image` the container image; both from the same build of the three binaries.
//! `check` (run by `cargo xtask test`) installs, upgrades and removes the package for real in
//! a folder of its own, and runs the image's agent.

pub mod check;
pub mod deb;
pub mod image;

use crate::sh::{self, cargo, execute};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// The Debian package target/dist/podnet_VERSION_ARCH.deb (dpkg-deb), linted by lintian.
    Deb(deb::Args),
    /// The container image localhost/podnet:VERSION (buildah, from scratch).
    Image(image::Args),
    /// Install, upgrade and purge the package in a folder, upgrade a lab node under running
    /// pods, run the lab's agents from the image (root; part of `cargo xtask test`).
    Check,
}

/// How the binaries are built.
#[derive(clap::Args, Clone)]
pub struct Build {
    /// Package the debug build (quicker; what `cargo xtask test` checks) instead of release.
    #[arg(long)]
    pub debug: bool,
    /// The version [default: the workspace's].
    #[arg(long)]
    pub version: Option<String>,
}

/// The three binaries a node runs: the agent, the CNI plugin, the IPAM plugin.
pub const BINARIES: [&str; 3] = ["podnet-agent", "podnet", "podnet-ipam"];

impl Build {
    /// Builds the binaries; the folder they are in.
    pub fn binaries(&self) -> Result<PathBuf> {
        crate::deps::ensure_build()?;
        let mut c = cargo();
        c.args(["build", "-q", "--bins"]);
        for p in ["podnet-agent", "podnet-cni", "podnet-ipam"] {
            c.args(["-p", p]);
        }
        if !self.debug {
            c.arg("--release");
        }
        execute(&mut c)?;
        Ok(target().join(if self.debug { "debug" } else { "release" }))
    }

    pub fn version(&self) -> Result<String> {
        match &self.version {
            Some(v) => Ok(v.clone()),
            None => workspace_version(),
        }
    }
}

/// `target/` of the workspace.
pub fn target() -> PathBuf {
    sh::root().join("target")
}

/// `version = "..."` of `[workspace.package]`.
fn workspace_version() -> Result<String> {
    let text = std::fs::read_to_string(sh::root().join("Cargo.toml"))?;
    text.lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| {
            l.trim()
                .strip_prefix("version = ")?
                .strip_prefix('"')?
                .strip_suffix('"')
        })
        .map(str::to_string)
        .context("find the version in [workspace.package] of Cargo.toml")
}

/// Copies `from` to `to` (making its folder) with `mode`.
pub fn put(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Strips a copied binary of its symbols and debug info (a package's binaries are stripped;
/// a debug build shrinks from about 100 MB to a few).
pub fn strip(bin: &Path) -> Result<()> {
    execute(
        std::process::Command::new("strip")
            .args([
                "--strip-unneeded",
                "--remove-section=.comment",
                "--remove-section=.note",
            ])
            .arg(bin),
    )
}

pub fn run(args: Args) -> Result<()> {
    match args.what {
        What::Deb(a) => deb::run(a).map(|p| println!("{}", p.display())),
        What::Image(a) => image::run(a).map(|tag| println!("{tag}")),
        What::Check => check::run(),
    }
}
