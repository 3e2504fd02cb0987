//! `cargo xtask bench services`: ClusterIPs.
//! - TCP connections per second from the seed lab's pod ubuntu-test to Service `web`'s
//!   ClusterIP, beside the same connections to its two pods' own addresses in turn (the same
//!   backends, without the DNAT), rounds alternating.
//! - The proxy's update time with 1,000 Services of 3 endpoints when one Service changes: the
//!   `proxy_update` example in a namespace of its own (read back, compare, replace).

use super::egress::{burst_to, column};
use super::seeded::{median, run_example};
use super::stats::verdict;
use crate::sh;
use anyhow::{Context, Result};
use podnet_netlink::netns::Netns;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    load: super::seeded::Load,
    /// Services in the update benchmark (3 endpoints each).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Updates timed.
    #[arg(long, default_value_t = 20)]
    trials: usize,
}

const POD: &str = "ubuntu-test";
const SERVICE: &str = "web";

pub fn run(args: Args) -> Result<()> {
    super::seeded::prepare("services", "podnet-proxy", "proxy_update")?;
    eprintln!("{} Services x 3 endpoints: one changed", args.services);
    let update = proxy_update(args.services, args.trials)?;
    let (cluster, direct) = connections(&args)?;

    println!(
        "\n== proxy update, {} Services x 3 endpoints, one Service changed ==",
        args.services
    );
    let at = |k: &str| update[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "first write {:.1} ms; update median {:.1} ms, p99 {:.1} ms (target <= 100 ms: {})",
        at("first_ms"),
        at("median_ms"),
        at("p99_ms"),
        verdict(at("median_ms") <= 100.0)
    );
    let (cluster, direct) = (median(&cluster), median(&direct));
    println!(
        "\n== TCP connections/s from pod {POD} ({} x {} per round, {} at once) ==",
        args.load.rounds, args.load.connections, args.load.parallel
    );
    println!("to Service {SERVICE}'s ClusterIP:   {cluster:.0}/s");
    println!("to its pods' own addresses: {direct:.0}/s");
    let ratio = cluster / direct;
    println!(
        "ratio ClusterIP / pod IPs: {ratio:.3} (target >= 0.8: {})",
        verdict(ratio >= 0.8)
    );
    Ok(())
}

fn proxy_update(n: usize, trials: usize) -> Result<serde_json::Value> {
    run_example("proxy_update", &[n.to_string(), trials.to_string()])
}

/// Rounds of connections from the seed lab's pod to the ClusterIP and to the pods directly.
fn connections(args: &Args) -> Result<(Vec<f64>, Vec<f64>)> {
    let lab = sh::root().join("target/release/podnet-lab");
    let _ = Command::new(&lab).args(["down", "--all"]).output();
    eprintln!("seed lab up");
    sh::output(Command::new(&lab).args(["up", "--quiet"]))?;
    let result = (|| -> Result<(Vec<f64>, Vec<f64>)> {
        let svc = sh::output(Command::new(&lab).args(["get", "svc"]))?;
        let ep = sh::output(Command::new(&lab).args(["get", "endpoints"]))?;
        let ip: Ipv4Addr = column(&svc, SERVICE, "CLUSTER-IP")?.parse()?;
        let port: u16 = column(&svc, SERVICE, "PORT(S)")?
            .split('/')
            .next()
            .context("a port")?
            .parse()?;
        let pods: Vec<SocketAddr> = column(&ep, SERVICE, "ENDPOINTS")?
            .split(',')
            .map(|e| e.parse().context("an endpoint ip:port"))
            .collect::<Result<_>>()?;
        let pod = Netns::open(format!("{}/{POD}", podnet_netlink::netns::NETNS_DIR))?;
        let clusterip = [SocketAddr::from((ip, port))];
        let (mut cluster, mut direct) = (Vec::new(), Vec::new());
        for r in 0..args.load.rounds * 2 {
            let to: &[SocketAddr] = if r % 2 == 0 { &clusterip } else { &pods };
            let rate = pod.run(|| burst_to(to, args.load.connections, args.load.parallel))??;
            eprintln!(
                "round {}: {} {rate:.0} conn/s",
                r + 1,
                if r % 2 == 0 { "ClusterIP" } else { "pod IPs" }
            );
            if r % 2 == 0 {
                &mut cluster
            } else {
                &mut direct
            }
            .push(rate);
        }
        Ok((cluster, direct))
    })();
    let _ = Command::new(&lab).args(["down"]).output();
    result
}
