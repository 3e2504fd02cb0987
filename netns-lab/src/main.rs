//! `podnet-lab`: the seed's cluster (or any scenario) built from network namespaces on one
//! machine, driven by the real podnet binaries, and the commands to look at it.

use podnet_lab::{
    apply, chaos, cluster_dns, dns, down, proxy, runtime, scenario, serve, state, stub_resolver,
    up, views,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use scenario::{Encap, Scenario};
use state::LabState;
use std::path::PathBuf;
use std::process::ExitCode;

/// Kubernetes pod networking, Calico style, in network namespaces: nodes, fabric, tunnels and
/// pods on one machine, with real packets. Needs root.
#[derive(Parser)]
#[command(name = "podnet-lab", version)]
struct Cli {
    /// Which lab (when several are up).
    #[arg(long, global = true)]
    lab: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a lab: the seed's cluster by default, a scenario file, or a generated one.
    Up {
        /// A scenario YAML file (default: the seed's cluster).
        scenario: Option<PathBuf>,
        /// Generate N nodes instead.
        #[arg(long, conflicts_with = "scenario")]
        nodes: Option<usize>,
        /// With --nodes: pods per node.
        #[arg(long, default_value_t = 0, requires = "nodes")]
        pods_per_node: usize,
        /// With --nodes: a full BGP mesh whatever the size (generated labs of more than 50
        /// nodes otherwise peer with two route reflectors, node1 and node2).
        #[arg(long, requires = "nodes")]
        mesh: bool,
        /// Force the encapsulation (default: the scenario's; auto = IPIP if loaded, else VXLAN).
        #[arg(long, value_enum)]
        encap: Option<Encap>,
        /// Where the cluster's state lives: one SQLite file, or an etcd started in the fabric.
        #[arg(long, value_parser = ["sqlite", "etcd"], default_value = "sqlite")]
        datastore: String,
        /// With --datastore etcd: how many etcd members (1, 3 or 5).
        #[arg(long, default_value_t = 1)]
        etcd_members: usize,
        /// Who routes to other nodes' blocks: BIRD on every node by BGP (the seed's way), or
        /// the agents from the datastore.
        #[arg(long, value_parser = ["bgp", "datastore"], default_value = "bgp")]
        routing: String,
        /// No encapsulation between nodes of the same subnet (only between racks).
        #[arg(long)]
        cross_subnet: bool,
        /// Run each node's agent from this container image under podman (host network of the
        /// node, privileged), as a DaemonSet would; `cargo xtask dist image` builds one.
        #[arg(long, value_name = "IMAGE")]
        agent_image: Option<String>,
        /// Give up waiting for the agents (registration, then every node's routes) after this
        /// many seconds in which nothing progressed; a slow but moving start-up never fails.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        timeout: u64,
        /// Print less.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Stop, start or restart the nodes' agents (all, or those named), as a package upgrade
    /// does: a stop is SIGTERM, which leaves routes and BIRD as they are.
    Agents {
        #[arg(value_enum)]
        action: podnet_lab::agents::Action,
        nodes: Vec<String>,
    },
    /// Remove the lab: processes, namespaces, files.
    Down {
        /// Remove every lab, including leftovers of crashed ones.
        #[arg(long)]
        all: bool,
    },
    /// kubectl-style tables: `get nodes`, `get pods` (`-o wide`), `get svc`, `get endpoints`.
    Get {
        #[arg(value_parser = ["nodes", "node", "pods", "pod", "services", "service", "svc", "endpoints", "ep"])]
        what: String,
        #[arg(short, long)]
        output: Option<String>,
    },
    /// Add Pods and add or change Services on the running lab, as `kubectl apply -f` (pods
    /// without spec.nodeName go to the least busy worker; proxies and DNS follow within 1 s).
    Apply {
        /// A YAML file of Pod and Service manifests (`---` between documents).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Remove a Service or a pod from the running lab (`delete svc web`, `delete pod web-0`).
    Delete {
        #[arg(value_parser = ["svc", "service", "services", "pod", "pods"])]
        what: String,
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Run a command in a pod (in a container's namespaces).
    Exec {
        pod: String,
        #[arg(short, long)]
        container: Option<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run a command in a node's network namespace.
    Node {
        node: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// A node's BGP sessions, as `calicoctl node status` shows them (BGP routing).
    Bgp { node: String },
    /// A node's pod-network routes in `route`'s layout, node names resolved.
    Routes { node: String },
    /// A node's or pod's interfaces, as `ifconfig` shows them.
    Ifconfig { name: String },
    /// A real traceroute from a pod, each hop annotated: to a pod or an address (ICMP), or to
    /// a Service (`web`, `svc/web`, `default/web:80`, its ClusterIP; TCP SYNs to its port).
    Trace { from: String, to: String },
    /// What the network gives a pod: TCP throughput (iperf3) and HTTP requests a second from
    /// pod FROM to pod TO, beside their two nodes over the fabric (or a bare veth pair when
    /// both are on one node), whether anything was fragmented, and what the encapsulation
    /// costs.
    Perf {
        from: String,
        to: String,
        /// How long each measurement runs.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// The figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The path of a packet, from the kernel's own route lookups in each namespace.
    Explain {
        from: String,
        /// A pod, an address, or a Service (`web`, `default/web`, its ClusterIP; `:PORT`).
        to: String,
    },
    /// The live topology as Graphviz: SVG with `dot` installed (-o x.svg), else DOT text.
    Graph {
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Packets on an interface inside a node (or pod): a pcap file, or one line each.
    Capture {
        /// A node, a pod, `upstream` (the provider's router) or `internet` (the outside world:
        /// see masqueraded sources there).
        node: String,
        iface: String,
        /// Write a pcap file (tcpdump -r / Wireshark).
        #[arg(short = 'w', long)]
        write: Option<PathBuf>,
        #[arg(short, long, default_value_t = 10)]
        count: usize,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// Keep every frame, not only IPv4 (ARP, IPv6 neighbour discovery...).
        #[arg(long)]
        all: bool,
    },
    /// The seed's three exercises, step by step on the live lab.
    Tour {
        #[arg(long, value_enum, default_value_t = views::tour::Lang::En)]
        lang: views::tour::Lang,
    },
    /// Check the lab against what the seed shows; non-zero exit on any failure.
    Test,
    /// (used inside the lab) answer HTTP like nginx's default page.
    #[command(hide = true)]
    ServeHttp {
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
    /// (used inside the lab) answer DNS for a few names (A records; NXDOMAIN for the rest).
    #[command(hide = true)]
    ServeDns {
        /// The address to answer on.
        #[arg(long, default_value = "0.0.0.0:53")]
        listen: std::net::SocketAddr,
        /// NAME=IPv4, repeated.
        #[arg(long = "record")]
        records: Vec<String>,
    },
    /// Look a name up (A records) without dig: through this namespace's /etc/resolv.conf
    /// (search list, ndots, nameservers in order) as a pod's programs do, or ask one server.
    Resolve {
        name: String,
        /// Ask this DNS server only, the name as given (IPv4, port 53 unless IP:PORT).
        #[arg(long)]
        server: Option<String>,
    },
    /// Faults together on the running lab: runtimes churning pods through the plugin with
    /// random kills, agents, BIRD and etcd members killed, routes deleted; the invariants
    /// checked every few seconds and at the end. Exit 1 on any violation.
    Chaos {
        /// The seed of every random choice (printed, for a replay); default: from the clock.
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value_t = 1.0)]
        minutes: f64,
        /// Concurrent runtimes (each a pod sandbox on one node, round robin).
        #[arg(long, default_value_t = 64)]
        runtimes: usize,
        /// Percent of plugin calls SIGKILLed at a random moment.
        #[arg(long, default_value_t = 20)]
        kill_percent: u32,
        /// Seconds between checks.
        #[arg(long, default_value_t = 15)]
        check_every: u64,
        /// Only the plugin calls' churn, no fault on the nodes: with BGP, any session that
        /// leaves Established is then a flap (the load alone).
        #[arg(long)]
        no_node_faults: bool,
    },
    /// The running lab under steady churn: pods added and removed, nodes joining and
    /// leaving, the invariants checked; agents' memory and descriptors, ADD/DEL latency and
    /// the datastore's size reported. Exit 1 on any violation.
    Soak {
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        #[arg(long, default_value_t = 16)]
        runtimes: usize,
        /// Seconds between checks.
        #[arg(long, default_value_t = 20)]
        check_every: u64,
        /// Seconds between a node joining or leaving.
        #[arg(long, default_value_t = 15)]
        node_every: u64,
    },
    /// (used inside the lab) a node's service proxy: the lab's Services into the node's
    /// nftables table ip podnet-proxy.
    #[command(hide = true)]
    Proxy {
        #[arg(long)]
        node: String,
    },
    /// (used inside the lab) a node's node-local DNS at 169.254.25.10: cluster names, the
    /// rest forwarded to the outside resolver.
    #[command(hide = true)]
    Dns {
        #[arg(long)]
        node: String,
    },
    /// (used inside the lab) fetch a URL.
    #[command(hide = true)]
    HttpGet { url: String },
    /// (used inside the lab) receive one TCP stream and count it.
    #[command(hide = true)]
    Sink {
        #[arg(long)]
        port: u16,
    },
    /// (used inside the lab) send N bytes over TCP.
    #[command(hide = true)]
    Send { addr: String, bytes: u64 },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podnet-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// SVG through Graphviz's `dot`, if installed.
fn render_svg(dot: &str) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("run dot")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(dot.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("dot failed");
    }
    Ok(out.stdout)
}

fn need_root() -> Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the lab makes network namespaces: run it as root (sudo)");
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::ServeHttp { port } => {
            serve::serve_http(port)?;
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::ServeDns { listen, records } => {
            dns::serve(listen, &dns::Zone::parse_records(&records)?, None)?;
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Resolve { name, server } => {
            let answer = match server {
                Some(server) => {
                    let server: std::net::SocketAddr = match server.parse() {
                        Ok(a) => a,
                        Err(_) => (
                            server.parse::<std::net::Ipv4Addr>().with_context(|| {
                                format!("--server {server:?}: expected IPv4 or IPv4:PORT")
                            })?,
                            53,
                        )
                            .into(),
                    };
                    let found = dns::resolve(server, &name, std::time::Duration::from_secs(2))?;
                    stub_resolver::Answer {
                        server,
                        name: name.clone(),
                        found,
                    }
                }
                None => {
                    let conf = std::fs::read_to_string("/etc/resolv.conf")
                        .context("read /etc/resolv.conf")?;
                    stub_resolver::lookup(&conf, &name)?
                }
            };
            match answer.found {
                dns::Found::Addresses(ips) => {
                    println!("Server:\t{}\nName:\t{}", answer.server, answer.name);
                    for ip in ips {
                        println!("Address: {ip}");
                    }
                }
                dns::Found::NxDomain => {
                    eprintln!("** server {} can't find {name}: NXDOMAIN", answer.server);
                    return Ok(ExitCode::FAILURE);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::HttpGet { url } => {
            print!("{}", serve::http_get(&url)?);
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Sink { port } => {
            serve::sink(port)?;
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Send { addr, bytes } => {
            serve::send(&addr, bytes)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => need_root()?,
    }
    let lab = cli.lab.as_deref();
    match cli.command {
        Cmd::Up {
            scenario,
            nodes,
            pods_per_node,
            mesh,
            encap,
            datastore,
            etcd_members,
            routing,
            cross_subnet,
            agent_image,
            timeout,
            quiet,
        } => {
            let mut s = match (scenario, nodes) {
                (Some(path), _) => Scenario::load(&path)?,
                (None, Some(n)) => {
                    let mut s = Scenario::generated(n, pods_per_node)?;
                    if mesh {
                        s.bgp = None;
                    } else if let (Some(b), "bgp") = (&s.bgp, routing.as_str()) {
                        eprintln!(
                            "{n} nodes: BGP through route reflectors {} instead of a full mesh (more than {} nodes; --mesh for one)",
                            b.route_reflectors.join(" and "),
                            podnet_lab::scenario::REFLECTORS_ABOVE
                        );
                    }
                    s
                }
                (None, None) => Scenario::seed(),
            };
            s.cross_subnet |= cross_subnet;
            let encap = encap.unwrap_or(s.encapsulation);
            let mut bins = runtime::Binaries::find()?;
            bins.agent_image = agent_image;
            if ![1, 3, 5].contains(&etcd_members) || (etcd_members > 1 && datastore != "etcd") {
                bail!("--etcd-members {etcd_members}: 1, 3 or 5, and more than one only with --datastore etcd");
            }
            let wait = std::time::Duration::from_secs(timeout);
            let l = up::up(s, encap, &datastore, etcd_members, &routing, &bins, wait)?;
            if !quiet {
                views::next_steps(&l);
            }
        }
        Cmd::Chaos {
            seed,
            minutes,
            runtimes,
            kill_percent,
            check_every,
            no_node_faults,
        } => {
            let mut l = LabState::current(lab)?;
            let seed = seed.unwrap_or_else(clock_seed);
            let o = chaos::Options {
                seed,
                minutes,
                runtimes: runtimes.max(1),
                kill_percent: kill_percent.min(100),
                check_every: std::time::Duration::from_secs(check_every.max(1)),
                node_faults: !no_node_faults,
                // After BIRD restarts its kernel protocol syncs only once graceful-restart
                // recovery ends (at most BIRD's `graceful restart wait`, 240 s): a route
                // deleted while BIRD was down can take that long to return.
                settle: std::time::Duration::from_secs(250),
            };
            if !chaos::run(&mut l, &runtime::Binaries::find()?, &o)? {
                eprintln!("chaos: invariants broken (seed {seed})");
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Soak {
            seed,
            minutes,
            runtimes,
            check_every,
            node_every,
        } => {
            let mut l = LabState::current(lab)?;
            let o = chaos::soak::Options {
                seed: seed.unwrap_or_else(clock_seed),
                minutes,
                runtimes: runtimes.max(1),
                check_every: std::time::Duration::from_secs(check_every.max(1)),
                node_every: std::time::Duration::from_secs(node_every.max(1)),
            };
            if !chaos::soak::run(&mut l, &runtime::Binaries::find()?, &o)? {
                eprintln!("soak: invariants broken (seed {})", o.seed);
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Apply { file } => {
            let mut l = LabState::current(lab)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            for line in apply::apply(&mut l, &runtime::Binaries::find()?, &text)? {
                println!("{line}");
            }
        }
        Cmd::Delete {
            what,
            name,
            namespace,
        } => {
            let mut l = LabState::current(lab)?;
            let said = if what.starts_with("pod") {
                if namespace != "default" && l.pod(&name).is_ok_and(|p| p.namespace != namespace) {
                    bail!("pods \"{name}\" not found in namespace {namespace}");
                }
                apply::delete_pod(&mut l, &runtime::Binaries::find()?, &name)?
            } else {
                apply::delete_service(&mut l, &namespace, &name)?
            };
            println!("{said}");
        }
        Cmd::Proxy { node } => {
            let l = LabState::current(lab)?;
            proxy::run(&l, &node)?;
        }
        Cmd::Dns { node } => {
            let l = LabState::current(lab)?;
            cluster_dns::run(&l, &node)?;
        }
        Cmd::Down { all } => {
            if all {
                down::down_all()?;
            } else {
                let l = LabState::current(lab)?;
                down::down(&l.name)?;
            }
        }
        Cmd::Get { what, output } => {
            let l = LabState::current(lab)?;
            let wide = output.as_deref() == Some("wide");
            if let Some(o) = output.as_deref().filter(|o| *o != "wide") {
                bail!("-o {o}: only -o wide is supported");
            }
            print!(
                "{}",
                match what.as_str() {
                    w if w.starts_with("node") => views::get_nodes(&l, wide)?,
                    w if w.starts_with("pod") => views::get_pods(&l, wide),
                    "endpoints" | "ep" => views::get_endpoints(&l)?,
                    _ => views::get_services(&l, wide)?,
                }
            );
        }
        Cmd::Exec {
            pod,
            container,
            command,
        } => {
            let l = LabState::current(lab)?;
            let code = views::exec(&l, &pod, container.as_deref(), &command)?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        Cmd::Node { node, command } => {
            let l = LabState::current(lab)?;
            let code = views::node_exec(&l, &node, &command)?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        Cmd::Bgp { node } => {
            let l = LabState::current(lab)?;
            print!("{}", views::bgp::status(&l, &node)?);
        }
        Cmd::Routes { node } => {
            let l = LabState::current(lab)?;
            print!("{}", views::routes(&l, &node)?);
        }
        Cmd::Ifconfig { name } => {
            let l = LabState::current(lab)?;
            print!("{}", views::ifconfig(&l, &name)?);
        }
        Cmd::Trace { from, to } => {
            let l = LabState::current(lab)?;
            if let Some((svc, port)) = views::service_target(&l, &to)? {
                let t = views::trace_service(&l, &from, svc, port)?;
                print!("{}", views::render_service_trace(&l, &from, &t));
                return Ok(ExitCode::SUCCESS);
            }
            let hops = views::trace(&l, &from, &to)?;
            print!("{}", views::render_trace(&l, &from, &to, &hops));
        }
        Cmd::Perf {
            from,
            to,
            seconds,
            json,
        } => {
            let l = LabState::current(lab)?;
            let r = views::perf::perf(&l, &from, &to, seconds)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", views::perf::render(&r));
            }
        }
        Cmd::Explain { from, to } => {
            let l = LabState::current(lab)?;
            print!("{}", views::explain(&l, &from, &to)?);
        }
        Cmd::Graph { output } => {
            let l = LabState::current(lab)?;
            let dot = views::dot(&l)?;
            match output {
                None => print!("{dot}"),
                Some(path) if path.extension().is_some_and(|e| e == "svg") => {
                    let svg = render_svg(&dot);
                    match svg {
                        Ok(svg) => std::fs::write(&path, svg)?,
                        Err(e) => {
                            let dot_path = path.with_extension("dot");
                            std::fs::write(&dot_path, &dot)?;
                            eprintln!(
                                "no SVG ({e:#}); wrote DOT to {} (install graphviz for SVG)",
                                dot_path.display()
                            );
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                    eprintln!("wrote {}", path.display());
                }
                Some(path) => {
                    std::fs::write(&path, &dot)?;
                    eprintln!("wrote {}", path.display());
                }
            }
        }
        Cmd::Capture {
            node,
            iface,
            write,
            count,
            timeout,
            all,
        } => {
            let l = LabState::current(lab)?;
            let frames = views::capture::capture(
                &l,
                &node,
                &iface,
                count,
                std::time::Duration::from_secs(timeout),
                !all,
            )?;
            match write {
                Some(path) => {
                    let mut f = std::fs::File::create(&path)
                        .with_context(|| format!("create {}", path.display()))?;
                    views::capture::write_pcap(&mut f, &frames)?;
                    eprintln!("{} packets written to {}", frames.len(), path.display());
                }
                None => {
                    for f in &frames {
                        println!("{}", views::capture::summary(f));
                    }
                }
            }
        }
        Cmd::Agents { action, nodes } => {
            let mut l = LabState::current(lab)?;
            podnet_lab::agents::run(&mut l, action, &nodes, &runtime::Binaries::find()?)?;
        }
        Cmd::Tour { lang } => {
            let l = LabState::current(lab)?;
            views::tour::tour(&l, lang)?;
        }
        Cmd::Test => {
            let l = LabState::current(lab)?;
            let ok = views::test(&l).context("run the lab's checks")?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Cmd::ServeHttp { .. }
        | Cmd::ServeDns { .. }
        | Cmd::Resolve { .. }
        | Cmd::HttpGet { .. }
        | Cmd::Sink { .. }
        | Cmd::Send { .. } => {
            unreachable!("handled above")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A seed from the clock, for runs not asked to replay one.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    /// The lab meets the products only through the datastore and their binaries: it links no
    /// product crate but the IPAM (datastore schema), netlink and CNI types.
    #[test]
    fn the_lab_does_not_link_the_agent() {
        let manifest = include_str!("../Cargo.toml");
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .expect("a [dependencies] table");
        assert!(!deps.contains("podnet-agent"), "{deps}");
        assert!(!deps.contains("podnet-cni ") && !deps.contains("podnet-cni="));
    }
}
