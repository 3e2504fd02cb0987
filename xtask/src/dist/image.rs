//! `cargo xtask dist image`: the container image `localhost/podnet:VERSION`, built by buildah
//! from `scratch` (no base image can be pulled, and none is needed): the three binaries at `/`
//! (where the DaemonSet runs them; `install-cni` takes the plugins from beside the agent),
//! BIRD at `/usr/sbin/bird` for BGP mode, and exactly the shared libraries `ldd` says these
//! load, at the paths the loader looks for them. The agent is the entrypoint.

use super::{put, strip, Build, BINARIES};
use crate::deps::{self, Package};
use crate::sh::{execute, output};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub build: Build,
    /// The image's name [default: localhost/podnet:VERSION].
    #[arg(long)]
    pub tag: Option<String>,
}

pub const BUILDAH: Package = Package {
    name: "buildah",
    provides: "/usr/bin/buildah",
};

/// BIRD inside the image, where the agent's `--bird bird` finds it on PATH.
const BIRD_IN_IMAGE: &str = "/usr/sbin/bird";

/// Builds the image; its tag.
pub fn run(args: Args) -> Result<String> {
    deps::ensure(&[&BUILDAH, &deps::BIRD])?;
    let bins = args.build.binaries()?;
    let tag = match &args.tag {
        Some(t) => t.clone(),
        None => format!("localhost/podnet:{}", args.build.version()?),
    };
    let root = super::target().join("dist/image-root");
    let _ = std::fs::remove_dir_all(&root);
    let mut programs: Vec<PathBuf> = Vec::new();
    for b in BINARIES {
        let to = root.join(b);
        put(&bins.join(b), &to, 0o755)?;
        strip(&to)?;
        programs.push(bins.join(b));
    }
    put(
        Path::new(deps::BIRD.provides),
        &root.join(&BIRD_IN_IMAGE[1..]),
        0o755,
    )?;
    programs.push(deps::BIRD.provides.into());
    for lib in libraries(&programs)? {
        put(&lib, &root.join(lib.strip_prefix("/")?), 0o755)?;
    }
    // Empty folders the agent and BIRD write to, and a /tmp.
    for d in ["tmp", "run", "var/lib/podnet", "etc/podnet"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let version = args.build.version()?;
    let c = output(Command::new("buildah").args(["from", "scratch"]))?
        .trim()
        .to_string();
    let built = (|| {
        execute(
            Command::new("buildah")
                .args(["copy", &c])
                .arg(format!("{}/", root.display()))
                .arg("/"),
        )?;
        execute(Command::new("buildah").args([
            "config",
            "--entrypoint",
            r#"["/podnet-agent"]"#,
            "--cmd",
            "run",
            "--env",
            "PATH=/usr/sbin:/",
            "--label",
            "org.opencontainers.image.title=podnet",
            "--label",
            &format!("org.opencontainers.image.version={version}"),
            "--label",
            "org.opencontainers.image.licenses=Apache-2.0",
            &c,
        ]))?;
        execute(Command::new("buildah").args(["commit", "-q", &c, &tag]))
    })();
    let _ = Command::new("buildah").args(["rm", &c]).output();
    built?;
    Ok(tag)
}

/// Every shared library the programs load (ldd's answer, the loader included), each once.
fn libraries(programs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut libs = std::collections::BTreeSet::new();
    for p in programs {
        let out = output(Command::new("ldd").arg(p))?;
        for line in out.lines() {
            let line = line.trim();
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line
                    .split_whitespace()
                    .next()
                    .filter(|w| w.starts_with('/')),
            };
            match path {
                Some(p) if p.starts_with('/') => {
                    libs.insert(PathBuf::from(p));
                }
                Some("not") => bail!("{} needs a library this machine lacks: {line}", p.display()),
                _ => {} // linux-vdso.so.1: the kernel's
            }
        }
    }
    Ok(libs.into_iter().collect())
}
