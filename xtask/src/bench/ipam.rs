//! `cargo xtask bench ipam`: `podnet-ipam` against Debian's `host-local`, both exec'd the way a
//! runtime does (ADD then DEL per attachment, alternating plugins every round), plus podnet's
//! in-process allocate+release throughput.

use super::call;
use super::stats::{ms, verdict, Stats};
use crate::deps::{self, CNI_PLUGINS};
use crate::sh::{self, cargo, execute, output};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Attachments added and deleted per plugin.
    #[arg(long, default_value_t = 300)]
    pods: usize,
    /// In-process allocate+release pairs.
    #[arg(long, default_value_t = 20_000)]
    pairs: usize,
}

struct Plugin {
    name: &'static str,
    binary: PathBuf,
    config: String,
    add: Vec<Duration>,
    del: Vec<Duration>,
}

impl Plugin {
    fn exec(&self, command: &str, container: &str) -> Result<Duration> {
        let cmd = call::command(&self.binary, command, container, "/var/run/netns/bench");
        call::timed(
            cmd,
            &self.config,
            &format!("{} {command} {container}", self.name),
        )
    }

    /// The cost of starting the binary at all: VERSION touches no state.
    fn floor(&self, n: usize) -> Result<Duration> {
        let samples = (0..n)
            .map(|_| self.exec("VERSION", "floor"))
            .collect::<Result<Vec<_>>>()?;
        Ok(Stats::new(samples).median())
    }

    fn round(&mut self, container: &str) -> Result<()> {
        let add = self.exec("ADD", container)?;
        let del = self.exec("DEL", container)?;
        self.add.push(add);
        self.del.push(del);
        Ok(())
    }
}

pub fn run(args: Args) -> Result<()> {
    deps::ensure(&[&CNI_PLUGINS, &deps::ETCD])?;
    deps::ensure_build()?;
    execute(cargo().args([
        "build",
        "--release",
        "-q",
        "-p",
        "podnet-ipam",
        "--bin",
        "podnet-ipam",
        "--example",
        "alloc_bench",
    ]))?;
    let release = sh::root().join("target/release");
    let work = sh::root().join("target/bench-ipam");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    super::create_store(&work.join("podnet/store.db"))?;

    let mut podnet = Plugin {
        name: "podnet-ipam",
        binary: release.join("podnet-ipam"),
        config: podnet_config(&work),
        add: Vec::new(),
        del: Vec::new(),
    };
    let mut host_local = Plugin {
        name: "host-local",
        binary: PathBuf::from("/usr/lib/cni/host-local"),
        config: host_local_config(&work),
        add: Vec::new(),
        del: Vec::new(),
    };
    // Warm both (page cache, first block claim), then measure, alternating who goes first.
    for i in 0..10 {
        podnet.round(&format!("warm{i}"))?;
        host_local.round(&format!("warm{i}"))?;
    }
    podnet.add.clear();
    podnet.del.clear();
    host_local.add.clear();
    host_local.del.clear();
    eprintln!(
        "exec ADD+DEL, {} attachments per plugin, alternating",
        args.pods
    );
    for i in 0..args.pods {
        let id = format!("bench{i}");
        if i.is_multiple_of(2) {
            podnet.round(&id)?;
            host_local.round(&id)?;
        } else {
            host_local.round(&id)?;
            podnet.round(&id)?;
        }
    }

    println!("\n== exec, per attachment ({} each) ==", args.pods);
    println!(
        "{:<12} {:>12} {:>12} {:>12} {:>12} {:>14} {:>14}",
        "plugin", "ADD median", "ADD p99", "DEL median", "DEL p99", "ADD+DEL median", "ADD+DEL p99"
    );
    let mut pair_medians = Vec::new();
    for p in [&podnet, &host_local] {
        let add = Stats::new(p.add.clone());
        let del = Stats::new(p.del.clone());
        let both = Stats::new(p.add.iter().zip(&p.del).map(|(a, d)| *a + *d).collect());
        println!(
            "{:<12} {:>12} {:>12} {:>12} {:>12} {:>14} {:>14}",
            p.name,
            ms(add.median()),
            ms(add.p99()),
            ms(del.median()),
            ms(del.p99()),
            ms(both.median()),
            ms(both.p99())
        );
        pair_medians.push(both.median());
    }
    let ratio = pair_medians[0].as_secs_f64() / pair_medians[1].as_secs_f64();
    println!(
        "ratio podnet-ipam / host-local, ADD+DEL median: {ratio:.2}x (target <= 0.50x: {})",
        verdict(ratio <= 0.5)
    );

    println!(
        "process start floor (VERSION median): podnet-ipam {}, host-local {}",
        ms(podnet.floor(100)?),
        ms(host_local.floor(100)?)
    );

    println!(
        "\n== in-process allocate+release, pairs per second ({} pairs per run) ==",
        args.pairs
    );
    let etcd = super::etcd::Etcd::start(None, "127.0.0.1", 23790)?;
    let etcd_store = format!("etcd:{}", etcd.url);
    println!("{:<16} {:>12} {:>12}", "store", "1 client", "16 clients");
    for (label, store) in [
        ("sqlite (normal)", "sqlite:normal"),
        ("sqlite (full)", "sqlite:full"),
        ("etcd", etcd_store.as_str()),
    ] {
        let mut row = Vec::new();
        for clients in [1, 16] {
            let pairs = if store.starts_with("etcd") {
                args.pairs.min(4000)
            } else {
                args.pairs
            };
            let out = output(
                Command::new(release.join("examples/alloc_bench"))
                    .arg(pairs.to_string())
                    .arg(clients.to_string())
                    .arg(store),
            )?;
            let v: serde_json::Value =
                serde_json::from_str(out.trim()).context("read alloc_bench output")?;
            row.push(v["pairsPerSecond"].as_f64().unwrap_or(0.0));
        }
        println!("{label:<16} {:>12.0} {:>12.0}", row[0], row[1]);
        if store == "sqlite:normal" {
            println!(
                "  (target >= 5000 durable pairs/s with one client: {})",
                verdict(row[0] >= 5000.0)
            );
        }
    }
    Ok(())
}

fn podnet_config(work: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "podnet",
        "ipam": {
            "type": "podnet-ipam",
            "pool": "10.200.0.0/16",
            "blockSize": 26,
            "nodename": "bench",
            "datastore": {"type": "sqlite", "path": work.join("podnet/store.db")},
        },
    })
    .to_string()
}

fn host_local_config(work: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "ptp",
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.201.0.0/16"}]],
            "dataDir": work.join("host-local"),
        },
    })
    .to_string()
}
