//! `cargo xtask dist deb`: the Debian package `podnet`, assembled as a folder and packed by
//! dpkg-deb (a package is a tree and a few control files; no packaging crate needed), its
//! dependencies found by dpkg-shlibdeps, its man page made by help2man from `--help`, then
//! linted by lintian, which must report no error and no warning.
//!
//! What it holds: `/usr/sbin/podnet-agent`; the plugins in `/usr/lib/podnet/cni/`, from where
//! the postinst's `podnet-agent install-cni` puts them into `/opt/cni/bin` with the conflist
//! into `/etc/cni/net.d`; `/etc/podnet/agent.toml` (a conffile: an edited copy survives
//! upgrades); `podnet-agent.service`. Maintainer scripts and those files: `deploy/debian/`.

use super::{put, strip, Build};
use crate::deps::{self, Package};
use crate::sh::{self, execute, output};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub build: Build,
    /// Debian revision, after the version's `-`.
    #[arg(long, default_value = "1")]
    pub revision: String,
    /// The Maintainer field [default: $DEBFULLNAME <$DEBEMAIL>, else a placeholder to replace
    /// before publishing].
    #[arg(long)]
    pub maintainer: Option<String>,
}

const DPKG_DEV: Package = Package {
    name: "dpkg-dev",
    provides: "/usr/bin/dpkg-shlibdeps",
};
const LINTIAN: Package = Package {
    name: "lintian",
    provides: "/usr/bin/lintian",
};
const HELP2MAN: Package = Package {
    name: "help2man",
    provides: "/usr/bin/help2man",
};
const BINUTILS: Package = Package {
    name: "binutils",
    provides: "/usr/bin/strip",
};

/// Builds and lints the package; its path.
pub fn run(args: Args) -> Result<PathBuf> {
    deps::ensure(&[&DPKG_DEV, &LINTIAN, &HELP2MAN, &BINUTILS])?;
    let bins = args.build.binaries()?;
    let version = format!("{}-{}", args.build.version()?, args.revision);
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    let work = super::target().join("dist/deb");
    let _ = std::fs::remove_dir_all(&work);
    let tree = work.join("podnet");
    stage(&tree, &bins, &version, &maintainer(&args))?;
    let depends = shlibs(&work, &tree)?;
    control(&tree, &version, &arch, &depends, &maintainer(&args))?;
    let deb = super::target().join(format!("dist/podnet_{version}_{arch}.deb"));
    execute(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&tree)
            .arg(&deb),
    )?;
    lint(&deb)?;
    Ok(deb)
}

fn maintainer(args: &Args) -> String {
    if let Some(m) = &args.maintainer {
        return m.clone();
    }
    match (std::env::var("DEBFULLNAME"), std::env::var("DEBEMAIL")) {
        (Ok(n), Ok(e)) => format!("{n} <{e}>"),
        _ => "podnet developers <podnet@example.org>".into(),
    }
}

/// Where each file of the package comes from, and its mode.
fn stage(tree: &Path, bins: &Path, version: &str, maintainer: &str) -> Result<()> {
    let deploy = sh::root().join("deploy/debian");
    let agent = tree.join("usr/sbin/podnet-agent");
    put(&bins.join("podnet-agent"), &agent, 0o755)?;
    for b in ["podnet", "podnet-ipam"] {
        put(
            &bins.join(b),
            &tree.join("usr/lib/podnet/cni").join(b),
            0o755,
        )?;
    }
    for b in [
        agent.clone(),
        tree.join("usr/lib/podnet/cni/podnet"),
        tree.join("usr/lib/podnet/cni/podnet-ipam"),
    ] {
        strip(&b)?;
    }
    put(
        &deploy.join("agent.toml"),
        &tree.join("etc/podnet/agent.toml"),
        0o644,
    )?;
    put(
        &deploy.join("podnet-agent.service"),
        &tree.join("lib/systemd/system/podnet-agent.service"),
        0o644,
    )?;
    let doc = tree.join("usr/share/doc/podnet");
    put(&deploy.join("copyright"), &doc.join("copyright"), 0o644)?;
    put(
        &deploy.join("lintian-overrides"),
        &tree.join("usr/share/lintian/overrides/podnet"),
        0o644,
    )?;
    gzip_to(
        changelog(version, maintainer)?.as_bytes(),
        &doc.join("changelog.Debian.gz"),
    )?;
    let man = output(
        Command::new("help2man")
            .args(["--no-info", "--section", "8", "--version-string", version])
            .args(["--name", "podnet's per-node route agent"])
            .arg(&agent),
    )?;
    gzip_to(
        man.as_bytes(),
        &tree.join("usr/share/man/man8/podnet-agent.8.gz"),
    )?;
    Ok(())
}

/// The Debian changelog lintian wants in every package: one entry for this build, dated by
/// the last commit (the same tree gives the same package).
fn changelog(version: &str, maintainer: &str) -> Result<String> {
    let date =
        output(
            Command::new("git")
                .current_dir(sh::root())
                .args(["log", "-1", "--format=%cD"]),
        )
        .unwrap_or_else(|_| "Thu, 01 Jan 2026 00:00:00 +0000".into());
    Ok(format!(
        "podnet ({version}) unstable; urgency=medium\n\n  \
         * Built by cargo xtask dist deb from the podnet source tree.\n\n \
         -- {maintainer}  {}\n",
        date.trim()
    ))
}

/// gzip -9n (no name, no time stamp), as Debian wants compressed docs.
fn gzip_to(bytes: &[u8], to: &Path) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(to.parent().expect("a file in a folder"))?;
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(to)?)
        .spawn()
        .context("start gzip")?;
    child.stdin.take().expect("piped").write_all(bytes)?;
    if !child.wait()?.success() {
        bail!("gzip {} failed", to.display());
    }
    Ok(())
}

/// The shared libraries' packages, as dpkg-shlibdeps finds them (it wants a debian/control).
fn shlibs(work: &Path, tree: &Path) -> Result<String> {
    std::fs::create_dir_all(work.join("debian"))?;
    std::fs::write(
        work.join("debian/control"),
        "Source: podnet\n\nPackage: podnet\nArchitecture: any\n",
    )?;
    let mut c = Command::new("dpkg-shlibdeps");
    c.current_dir(work).arg("-O");
    for b in [
        "usr/sbin/podnet-agent",
        "usr/lib/podnet/cni/podnet",
        "usr/lib/podnet/cni/podnet-ipam",
    ] {
        c.arg(tree.join(b));
    }
    let out = output(&mut c)?;
    out.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
        .context("dpkg-shlibdeps printed no shlibs:Depends")
}

/// DEBIAN/: control, conffiles, md5sums and the maintainer scripts.
fn control(tree: &Path, version: &str, arch: &str, depends: &str, maintainer: &str) -> Result<()> {
    let debian = tree.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    let size_kib = du(tree)? / 1024 + 1;
    std::fs::write(
        debian.join("control"),
        format!(
            "Package: podnet\n\
             Version: {version}\n\
             Architecture: {arch}\n\
             Maintainer: {maintainer}\n\
             Installed-Size: {size_kib}\n\
             Depends: {depends}\n\
             Recommends: bird2 (>= 2.0.12)\n\
             Section: net\n\
             Priority: optional\n\
             Description: Kubernetes pod networking in Calico's IPIP mode, with BGP\n \
             podnet gives every pod on a node an address from the node's block of the\n \
             cluster's pool and a route to it, and every node a route to every other\n \
             node's block, over IPIP or VXLAN tunnels, or by BGP through BIRD.\n \
             .\n \
             This package holds the node's route agent (a systemd service configured\n \
             in /etc/podnet/agent.toml) and the CNI plugins podnet and podnet-ipam,\n \
             which it installs into /opt/cni/bin with the conflist in /etc/cni/net.d.\n"
        ),
    )?;
    std::fs::write(debian.join("conffiles"), "/etc/podnet/agent.toml\n")?;
    let deploy = sh::root().join("deploy/debian");
    for s in ["postinst", "prerm", "postrm"] {
        put(&deploy.join(s), &debian.join(s), 0o755)?;
    }
    let files = output(Command::new("find").current_dir(tree).args([
        "-type",
        "f",
        "!",
        "-path",
        "./DEBIAN/*",
        "-printf",
        "%P\\n",
    ]))?;
    let mut files: Vec<&str> = files.lines().collect();
    files.sort();
    let sums = output(Command::new("md5sum").current_dir(tree).args(&files))?;
    std::fs::write(debian.join("md5sums"), sums)?;
    Ok(())
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() { du(&e.path())? } else { m.len() };
    }
    Ok(total)
}

/// lintian: no error and no warning (informational tags are printed, not fatal).
fn lint(deb: &Path) -> Result<()> {
    execute(
        Command::new("lintian")
            .args(["--fail-on", "error,warning", "--display-info", "--pedantic"])
            .arg(deb),
    )
}
