//! The package and the image, proven on this machine by `cargo xtask test` (as root):
//! - [`package`]: the .deb installed for real into a folder of its own (`dpkg --root`, the
//!   maintainer scripts run chrootless with `DPKG_ROOT`, as dpkg supports), upgraded with an
//!   edited conffile, then removed and purged; a foreign conflist stops it with a clear error;
//! - [`upgrade`]: a node of the seed's lab running the previous package and a store in the
//!   previous schema, upgraded by installing the new package: the store migrates, pods keep
//!   their addresses and their traffic (a ping across nodes loses nothing), no route is
//!   deleted on any node, and the seed's checks pass after;
//! - [`image`]: the seed's lab with every agent from the image under podman passes the
//!   seed's checks.
//!
//! The "previous release" is this tree packaged as an older version: no older podnet wrote
//! another store layout than schema 1, which this tree's migration test and [`upgrade`]
//! recreate.

use super::{deb, image, Build};
use crate::deps::{self, Package};
use crate::sh::{execute, output};
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const PODMAN: Package = Package {
    name: "podman",
    provides: "/usr/bin/podman",
};
const RUNC: Package = Package {
    name: "runc",
    provides: "/usr/sbin/runc",
};
/// The init that `podman run --init` (as the lab runs the agents) puts in the container: only
/// a Recommends of podman, so `--no-install-recommends` leaves it out.
const CATATONIT: Package = Package {
    name: "catatonit",
    provides: "/usr/libexec/podman/catatonit",
};

/// Everything: the two packages built once, then each check.
pub fn run() -> Result<()> {
    let version = Build {
        debug: true,
        version: None,
    }
    .version()?;
    let old = build_deb(&format!("{version}~previous"))?;
    let new = build_deb(&version)?;
    package(&old, &new)?;
    upgrade(&old, &new)?;
    image()?;
    eprintln!("dist: the package installs, upgrades and purges; an upgrade keeps pods, traffic and routes; the image's agents pass the seed's checks");
    Ok(())
}

fn build_deb(version: &str) -> Result<PathBuf> {
    deb::run(deb::Args {
        build: Build {
            debug: true,
            version: Some(version.into()),
        },
        revision: "1".into(),
        maintainer: None,
    })
}

/// An empty root for dpkg: its database, nothing else.
fn dpkg_root() -> Result<tempfile::TempDir> {
    let root = tempfile::Builder::new().prefix("podnet-dpkg-").tempdir()?;
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/log",
    ] {
        std::fs::create_dir_all(root.path().join(d))?;
    }
    std::fs::write(root.path().join("var/lib/dpkg/status"), "")?;
    Ok(root)
}

/// `dpkg --root ROOT ARGS`, maintainer scripts run outside a chroot with `DPKG_ROOT`.
fn dpkg(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display()))
        .arg(format!("--log={}", root.join("var/log/dpkg.log").display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--force-confold",
        ])
        .args(args);
    c
}

/// The package's status line in `root` (`install ok installed`...), and its version.
fn status(root: &Path) -> Result<(String, String)> {
    let out = output(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args([
                "-W",
                "-f",
                "${db:Status-Abbrev}|${Status}|${Version}",
                "podnet",
            ]),
    )
    .unwrap_or_default();
    let mut parts = out.split('|').skip(1);
    Ok((
        parts.next().unwrap_or("not-installed").to_string(),
        parts.next().unwrap_or_default().to_string(),
    ))
}

fn read(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))
}

/// Install, upgrade with an edited conffile, remove, purge; and a refused install.
pub fn package(old: &Path, new: &Path) -> Result<()> {
    let root = dpkg_root()?;
    let r = root.path();
    let foreign = r.join("etc/cni/net.d/05-other.conflist");
    std::fs::create_dir_all(foreign.parent().unwrap())?;
    std::fs::write(
        &foreign,
        r#"{"cniVersion":"1.0.0","name":"other","plugins":[]}"#,
    )?;

    execute(dpkg(r, &["-i"]).arg(old))?;
    let (st, v) = status(r)?;
    ensure!(
        st == "install ok installed" && v.ends_with("~previous-1"),
        "after install: {st} {v}"
    );
    for (installed, source) in [
        ("opt/cni/bin/podnet", "usr/lib/podnet/cni/podnet"),
        ("opt/cni/bin/podnet-ipam", "usr/lib/podnet/cni/podnet-ipam"),
    ] {
        ensure!(
            std::fs::read(r.join(installed))? == std::fs::read(r.join(source))?,
            "the postinst put {source} at {installed}"
        );
    }
    let conflist = r.join("etc/cni/net.d/10-podnet.conflist");
    let doc: serde_json::Value = serde_json::from_str(&read(&conflist)?)?;
    ensure!(
        doc["podnet.io/written-by"].is_string()
            && doc["plugins"][0]["type"] == "podnet"
            && doc["plugins"][0]["ipam"]["pool"] == "10.233.64.0/18"
            && doc["plugins"][0]["ipam"]["blockSize"] == 24,
        "the conflist from the default config: {doc}"
    );
    ensure!(
        read(&r.join("lib/systemd/system/podnet-agent.service"))?.contains("Restart=on-failure"),
        "the unit restarts the agent on failure"
    );

    // The operator edits the config; the upgrade keeps the edit and installs from it.
    let conf = r.join("etc/podnet/agent.toml");
    std::fs::write(
        &conf,
        read(&conf)?.replace("block-size = 24", "block-size = 26"),
    )?;
    execute(dpkg(r, &["-i"]).arg(new))?;
    let (st, v) = status(r)?;
    ensure!(
        st == "install ok installed" && !v.contains("previous"),
        "after upgrade: {st} {v}"
    );
    ensure!(
        read(&conf)?.contains("block-size = 26"),
        "the edited conffile survives the upgrade"
    );
    let doc: serde_json::Value = serde_json::from_str(&read(&conflist)?)?;
    ensure!(
        doc["plugins"][0]["ipam"]["blockSize"] == 26,
        "install-cni ran again from the edited config: {doc}"
    );

    // Removal keeps the config and what running pods' DEL needs; purge takes what podnet put.
    execute(&mut dpkg(r, &["-r", "podnet"]))?;
    ensure!(
        status(r)?.0 == "deinstall ok config-files",
        "after remove: {:?}",
        status(r)?
    );
    ensure!(
        !r.join("usr/sbin/podnet-agent").exists() && conf.exists(),
        "remove: binary gone, config kept"
    );
    ensure!(
        r.join("opt/cni/bin/podnet").exists() && conflist.exists(),
        "remove keeps the CNI files"
    );
    execute(&mut dpkg(r, &["-P", "podnet"]))?;
    ensure!(
        !conf.exists() && !conflist.exists() && !r.join("opt/cni/bin/podnet").exists(),
        "purge removes podnet's files"
    );
    ensure!(foreign.exists(), "another plugin's conflist is left alone");

    // A 10-podnet.conflist podnet did not write: the install stops, saying why, and the
    // file is untouched.
    let root = dpkg_root()?;
    let r = root.path();
    let theirs = r.join("etc/cni/net.d/10-podnet.conflist");
    std::fs::create_dir_all(theirs.parent().unwrap())?;
    std::fs::write(&theirs, "{\"name\":\"someone else's\"}")?;
    let out = dpkg(r, &["-i"]).arg(new).output()?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && said.contains("fix /etc/podnet/agent.toml"),
        "a foreign conflist fails the install: {said}"
    );
    ensure!(
        read(&theirs)? == "{\"name\":\"someone else's\"}",
        "the foreign conflist is untouched"
    );
    ensure!(
        status(r)?.0.contains("half-configured"),
        "left half-configured: {:?}",
        status(r)?
    );
    eprintln!("dist: package install, upgrade, remove and purge: ok");
    Ok(())
}

/// The lab's programs from a package installed in `root`: `podnet-lab` copied into a folder
/// with links to the installed agent and plugins (a link follows an upgrade's new file).
fn lab_bins(root: &Path) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("podnet-lab-bins-")
        .tempdir()?;
    super::put(
        &super::target().join("debug/podnet-lab"),
        &dir.path().join("podnet-lab"),
        0o755,
    )?;
    for (name, at) in [
        ("podnet-agent", "usr/sbin/podnet-agent"),
        ("podnet", "opt/cni/bin/podnet"),
        ("podnet-ipam", "opt/cni/bin/podnet-ipam"),
    ] {
        std::os::unix::fs::symlink(root.join(at), dir.path().join(name))?;
    }
    Ok(dir)
}

/// Pod name to address, from `get pods -o wide`.
fn pod_ips(lab: &Path) -> Result<BTreeMap<String, String>> {
    let out = output(Command::new(lab).args(["get", "pods", "-o", "wide"]))?;
    Ok(out
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(5)?.to_string()))
        })
        .collect())
}

const NODES: [&str; 5] = [
    "sung-ubuntu01",
    "sung-ubuntu02",
    "sung-ubuntu03",
    "sung-ubuntu04",
    "sung-ubuntu05",
];

fn routes(node: &str) -> Result<String> {
    output(Command::new("ip").args(["-n", node, "-4", "route", "show"]))
}

/// The previous package and a schema-1 store, upgraded under running pods.
pub fn upgrade(old: &Path, new: &Path) -> Result<()> {
    let root = dpkg_root()?;
    let r = root.path();
    execute(dpkg(r, &["-i"]).arg(old))?;
    let bins = lab_bins(r)?;
    let lab = bins.path().join("podnet-lab");
    execute(Command::new(&lab).args(["up", "-q"]))?;
    let result = upgrade_on_lab(&lab, r, new);
    let down = execute(Command::new(&lab).arg("down"));
    result.and(down)?;
    eprintln!("dist: upgrade under running pods: ok");
    Ok(())
}

fn upgrade_on_lab(lab: &Path, r: &Path, new: &Path) -> Result<()> {
    let ips = pod_ips(lab)?;
    let before: Vec<String> = NODES.iter().map(|n| routes(n)).collect::<Result<_>>()?;
    let mut monitors: Vec<Child> = NODES
        .iter()
        .map(|n| {
            Command::new("ip")
                .args(["-4", "-n", n, "monitor", "route"])
                .stdout(Stdio::piped())
                .spawn()
                .context("start ip monitor route")
        })
        .collect::<Result<_>>()?;
    // ubuntu-test (node 4) to web-1 (node 5), 50 a second through the whole upgrade.
    let to = ips.get("web-1").context("the seed's pod web-1")?;
    let ping = Command::new(lab)
        .args([
            "exec",
            "ubuntu-test",
            "--",
            "ping",
            "-q",
            "-c",
            "600",
            "-i",
            "0.02",
            to,
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_secs(1));

    execute(Command::new(lab).args(["agents", "stop"]))?;
    // The node as the previous release left it: its store in schema 1 (no watch history).
    let store = "/run/podnet-lab/seed/store.db";
    execute(Command::new("sqlite3").arg(store).arg(
        "BEGIN; DROP TABLE events; DELETE FROM meta WHERE name = 'compacted'; \
         UPDATE meta SET value = 1 WHERE name = 'schema_version'; COMMIT;",
    ))?;
    execute(dpkg(r, &["-i"]).arg(new))?;
    ensure!(
        !status(r)?.1.contains("previous"),
        "upgraded: {:?}",
        status(r)?
    );
    execute(Command::new(lab).args(["agents", "start"]))?;

    let ping = ping.wait_with_output()?;
    let said = String::from_utf8_lossy(&ping.stdout);
    ensure!(
        said.contains(" 0% packet loss"),
        "traffic across nodes during the upgrade: {said}"
    );
    let version = output(
        Command::new("sqlite3")
            .arg(store)
            .arg("SELECT value FROM meta WHERE name = 'schema_version'"),
    )?;
    ensure!(
        version.trim() == "2",
        "the new agents migrated the store to schema 2: {version}"
    );
    ensure!(pod_ips(lab)? == ips, "pods keep their addresses");
    let after: Vec<String> = NODES.iter().map(|n| routes(n)).collect::<Result<_>>()?;
    for m in &mut monitors {
        let _ = m.kill();
    }
    for (i, m) in monitors.into_iter().enumerate() {
        let seen = String::from_utf8_lossy(&m.wait_with_output()?.stdout).into_owned();
        let deleted: Vec<&str> = seen.lines().filter(|l| l.starts_with("Deleted")).collect();
        ensure!(
            deleted.is_empty(),
            "{}: routes deleted during the upgrade: {deleted:?}",
            NODES[i]
        );
        ensure!(
            before[i] == after[i],
            "{}: routes before\n{}\nafter\n{}",
            NODES[i],
            before[i],
            after[i]
        );
    }
    // And the upgraded cluster does everything the seed shows.
    execute(Command::new(lab).arg("test"))
}

/// Waits (up to 30 s) until every node's BGP sessions are Established.
fn wait_established(lab: &Path) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        let mut down = Vec::new();
        for n in NODES {
            let table = output(Command::new(lab).args(["bgp", n]))?;
            if table
                .lines()
                .any(|l| l.contains("node-to-node") && !l.contains("Established"))
            {
                down.push(n);
            }
        }
        if down.is_empty() {
            return Ok(());
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            bail!("BGP sessions not Established 30 s after the restart on {down:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// The image: each program runs from it, and the seed's lab passes with its agents.
pub fn image() -> Result<()> {
    deps::ensure(&[&PODMAN, &RUNC, &CATATONIT, &image::BUILDAH])?;
    let tag = "localhost/podnet:check";
    image::run(image::Args {
        build: Build {
            debug: true,
            version: None,
        },
        tag: Some(tag.into()),
    })?;
    let result = image_on_lab(tag);
    let _ = Command::new("podman").args(["rmi", "-f", tag]).output();
    result?;
    eprintln!("dist: the image's agents pass the seed's checks: ok");
    Ok(())
}

fn image_on_lab(tag: &str) -> Result<()> {
    let entry = output(Command::new("podman").args([
        "image",
        "inspect",
        "--format",
        "{{.Config.Entrypoint}}",
        tag,
    ]))?;
    ensure!(entry.trim() == "[/podnet-agent]", "entrypoint {entry}");
    for (program, version) in [
        ("/podnet-agent", "podnet-agent"),
        ("/usr/sbin/bird", "BIRD version 2"),
    ] {
        let mut podman = Command::new("podman");
        // As podnet-lab does: crun refuses hosts whose cgroups are in hybrid mode.
        if Path::new("/sys/fs/cgroup/unified").exists()
            && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        {
            podman.args(["--runtime", "runc"]);
        }
        let out = podman
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                "--entrypoint",
                program,
                tag,
                "--version",
            ])
            .output()?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            said.contains(version),
            "{program} --version in the image: {said}"
        );
    }
    let lab = super::target().join("debug/podnet-lab");
    execute(Command::new(&lab).args(["up", "-q", "--agent-image", tag]))?;
    let checks = execute(Command::new(&lab).arg("test"));
    // A restarted container takes its BIRD with it (as calico-node's does); the new one is
    // back in the mesh within seconds, the routes kept meanwhile (persist, graceful restart).
    let restart = execute(Command::new(&lab).args(["agents", "restart", "sung-ubuntu01"]))
        .and_then(|()| wait_established(&lab));
    let again = execute(Command::new(&lab).arg("test"));
    let down = execute(Command::new(&lab).arg("down"));
    checks.and(restart).and(again).and(down)?;
    let left =
        output(Command::new("podman").args(["ps", "-aq", "--filter", "label=io.podnet.lab=seed"]))?;
    if !left.trim().is_empty() {
        bail!("containers left after down: {left}");
    }
    Ok(())
}
