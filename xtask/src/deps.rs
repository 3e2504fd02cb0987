//! Installing what the tests and benchmarks need, when it is missing: Debian packages with
//! apt-get (on Debian/Ubuntu), Python linters from PyPI into a venv under `target/`.

use crate::sh::{self, as_root, execute, have};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A Debian package and a file that shows it is installed.
pub struct Package {
    pub name: &'static str,
    pub provides: &'static str,
}

/// The reference CNI plugins (host-local, ptp, tuning) used for interop tests and benchmarks.
pub const CNI_PLUGINS: Package = Package {
    name: "containernetworking-plugins",
    provides: "/usr/lib/cni/host-local",
};
/// `ip`, for tests that look at namespaces from outside.
pub const IPROUTE2: Package = Package {
    name: "iproute2",
    provides: "/usr/sbin/ip",
};

/// `ping`, for tests that prove packets flow.
pub const PING: Package = Package {
    name: "iputils-ping",
    provides: "/usr/bin/ping",
};

/// The `sqlite3` shell, which tests use to hold a datastore's lock from another process.
pub const SQLITE3: Package = Package {
    name: "sqlite3",
    provides: "/usr/bin/sqlite3",
};

/// protoc and the protobuf well-known types: etcd-client's build script needs both, so every
/// `cargo build` of the workspace does (xtask itself builds without them).
pub const PROTOC: Package = Package {
    name: "protobuf-compiler",
    provides: "/usr/bin/protoc",
};
pub const PROTOBUF_TYPES: Package = Package {
    name: "libprotobuf-dev",
    provides: "/usr/include/google/protobuf/timestamp.proto",
};
/// BIRD 2, the BGP speaker of `--routing bgp` (2.0.12 or newer: Debian 12's).
pub const BIRD: Package = Package {
    name: "bird2",
    provides: "/usr/sbin/bird",
};
/// `nft`, with which tests look at the nftables tables (products program them over netlink).
pub const NFTABLES: Package = Package {
    name: "nftables",
    provides: "/usr/sbin/nft",
};
/// iperf3, with which `podnet-lab perf` measures TCP throughput.
pub const IPERF3: Package = Package {
    name: "iperf3",
    provides: "/usr/bin/iperf3",
};
/// A real etcd for the etcd backend's tests.
pub const ETCD: Package = Package {
    name: "etcd-server",
    provides: "/usr/bin/etcd",
};

/// libFuzzer (the fuzz targets' engine) is C++, built by the `libfuzzer-sys` crate.
pub const GXX: Package = Package {
    name: "g++",
    provides: "/usr/bin/g++",
};

/// What building the workspace needs.
pub fn ensure_build() -> Result<()> {
    ensure(&[&PROTOC, &PROTOBUF_TYPES])
}

/// Installs the packages whose file is missing, with one `apt-get update` first.
pub fn ensure(packages: &[&Package]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|p| !Path::new(p.provides).exists())
        .map(|p| p.name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !have("apt-get") {
        bail!(
            "missing packages {missing:?} and no apt-get here: install them with your package manager"
        );
    }
    eprintln!("installing {missing:?}");
    execute(as_root("apt-get")?.arg("update").arg("-q"))?;
    execute(
        as_root("apt-get")?
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    for p in packages {
        if !Path::new(p.provides).exists() {
            bail!("installed {} but {} is still missing", p.name, p.provides);
        }
    }
    Ok(())
}

/// A venv under `target/xtask-venv` with the given PyPI packages; returns its `bin` folder.
pub fn python_tools(packages: &[&str]) -> Result<PathBuf> {
    let venv = sh::root().join("target/xtask-venv");
    let bin = venv.join("bin");
    if !bin.join("python").exists() {
        let python = if have("python3") { "python3" } else { "python" };
        let made = Command::new(python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .with_context(|| format!("start {python} to make a venv"))?;
        if !made.success() {
            // Debian's python3 ships venv separately.
            ensure(&[&Package {
                name: "python3-venv",
                provides: "/usr/share/doc/python3-venv",
            }])?;
            execute(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        }
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !bin.join(p).exists())
        .collect();
    if !missing.is_empty() {
        execute(
            Command::new(bin.join("pip"))
                .args(["install", "-q", "--disable-pip-version-check"])
                .args(&missing),
        )?;
    }
    Ok(bin)
}
