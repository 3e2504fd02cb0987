//! `trace POD SERVICE[:PORT]`: a traceroute to a ClusterIP. ICMP echoes would not do: the
//! proxy's DNAT matches address, protocol and port, so the probes are TCP SYNs to the
//! Service's port (as `traceroute -T`), sent by `connect` with a rising TTL. Each router's
//! "time exceeded" comes back on the socket's error queue (`IP_RECVERR`, its offender the
//! router); the endpoint's SYN-ACK completes the connection, and an HTTP request asks it who
//! it is. Every probe leaves from the same source port, so after the first the node's
//! conntrack entry holds the endpoint the Service's random pick chose, and all probes follow
//! one path.

use super::trace::Hop;
use crate::state::LabState;
use anyhow::{Context, Result};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn};
use podnet_ipam::services::{self, ServiceRecord};
use podnet_netlink::Netns;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{IoSliceMut, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const MAX_HOPS: u8 = 16;
const TRIES: usize = 2;
const WAIT: Duration = Duration::from_millis(700);

/// What the last probe met.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// Connected; the endpoint said which pod (or node) it is, when it speaks HTTP.
    Connected { answered_by: Option<String> },
    /// An ICMP "unreachable" from this router: a Service without endpoints is rejected so.
    Unreachable(Ipv4Addr),
    /// A TCP reset: nothing listens on the endpoint's port.
    Refused,
    /// No answer within the hop limit.
    Lost,
}

/// A trace to a Service.
#[derive(Debug, Clone)]
pub struct ServiceTrace {
    pub service: ServiceRecord,
    pub target: SocketAddrV4,
    pub source_port: u16,
    pub hops: Vec<Hop>,
    pub end: End,
    /// A traceroute straight to the endpoint that answered: who the hops really are.
    pub direct: Vec<Hop>,
}

/// The Service `to` names (`web`, `default/web`, `svc/web`, its ClusterIP; `:PORT`), or
/// `None` when it names none (then `trace` goes to a pod or an address).
pub fn service_target(lab: &LabState, to: &str) -> Result<Option<(ServiceRecord, u16)>> {
    if lab.scenario.services.is_empty() {
        return Ok(None);
    }
    let stored = lab.with_store(|s| services::list(s))??;
    let bare = to.strip_prefix("svc/").unwrap_or(to);
    let named_pod = lab.pod(bare.split(':').next().unwrap_or(bare)).is_ok();
    if named_pod && !to.starts_with("svc/") {
        return Ok(None);
    }
    Ok(super::explain_service::service_of(&stored, bare))
}

pub fn trace_service(
    lab: &LabState,
    from: &str,
    service: ServiceRecord,
    port: u16,
) -> Result<ServiceTrace> {
    lab.pod(from)?;
    let Some(ip) = service.cluster_ip else {
        anyhow::bail!(
            "Service {}/{} is headless: no ClusterIP to trace (trace one of its pods)",
            service.namespace,
            service.name
        );
    };
    if !service.ports.iter().any(|p| p.port == port) {
        anyhow::bail!(
            "Service {}/{} has no port {port}",
            service.namespace,
            service.name
        );
    }
    let target = SocketAddrV4::new(ip, port);
    let ns = Netns::open(LabState::netns_path(from))?;
    let (source_port, hops, end) = ns.run(move || probe_path(target))??;
    let direct = match &end {
        End::Connected {
            answered_by: Some(who),
        } => match endpoint_of(lab, &service, port, who) {
            Some(e) => super::trace::trace(lab, from, &e.ip().to_string())?,
            None => vec![],
        },
        _ => vec![],
    };
    Ok(ServiceTrace {
        service,
        target,
        source_port,
        hops,
        end,
        direct,
    })
}

/// What one SYN met.
enum Probe {
    Exceeded(Ipv4Addr),
    Unreachable(Ipv4Addr),
    Connected(Socket),
    Refused,
    Silence,
}

fn probe_path(target: SocketAddrV4) -> Result<(u16, Vec<Hop>, End)> {
    // A port the kernel picks once, then every probe binds it again.
    let source_port = {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))?;
        s.local_addr()?
            .as_socket_ipv4()
            .context("an IPv4 socket")?
            .port()
    };
    let mut hops = Vec::new();
    for ttl in 1..=MAX_HOPS {
        let mut hop = Hop {
            ttl,
            addr: None,
            rtt: None,
        };
        for _ in 0..TRIES {
            let start = Instant::now();
            let answer = probe(target, source_port, ttl)?;
            let rtt = Some(start.elapsed());
            match answer {
                Probe::Silence => continue,
                Probe::Exceeded(from) => {
                    hop.addr = Some(from);
                    hop.rtt = rtt;
                }
                Probe::Unreachable(from) => {
                    hops.push(Hop {
                        ttl,
                        addr: Some(from),
                        rtt,
                    });
                    return Ok((source_port, hops, End::Unreachable(from)));
                }
                Probe::Refused => {
                    hops.push(Hop {
                        ttl,
                        addr: Some(*target.ip()),
                        rtt,
                    });
                    return Ok((source_port, hops, End::Refused));
                }
                Probe::Connected(sock) => {
                    hops.push(Hop {
                        ttl,
                        addr: Some(*target.ip()),
                        rtt,
                    });
                    let answered_by = who_answers(sock, target);
                    return Ok((source_port, hops, End::Connected { answered_by }));
                }
            }
            break;
        }
        hops.push(hop);
    }
    Ok((source_port, hops, End::Lost))
}

/// One SYN with `ttl` from `source_port`.
fn probe(target: SocketAddrV4, source_port: u16, ttl: u8) -> Result<Probe> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        source_port,
    )))
    .with_context(|| format!("bind the probes' source port {source_port}"))?;
    s.set_ttl_v4(u32::from(ttl))?;
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv4RecvErr, &true)
        .context("ask for ICMP errors on the probe socket (IP_RECVERR)")?;
    s.set_nonblocking(true)?;
    match s.connect(&SockAddr::from(target)) {
        Ok(()) => return Ok(Probe::Connected(s)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e).with_context(|| format!("send a SYN to {target}")),
    }
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd for a socket we own, for the call's duration.
    let n = unsafe { libc::poll(&mut pfd, 1, WAIT.as_millis() as i32) };
    if n <= 0 {
        return Ok(Probe::Silence);
    }
    if let Some((origin_type, from)) = icmp_error(&s) {
        return Ok(match origin_type {
            11 => Probe::Exceeded(from),
            _ => Probe::Unreachable(from),
        });
    }
    match s.take_error()? {
        None => Ok(Probe::Connected(s)),
        Some(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(Probe::Refused),
        Some(_) => Ok(Probe::Silence),
    }
}

/// The ICMP error queued on the socket: (ICMP type, the router that sent it).
fn icmp_error(s: &Socket) -> Option<(u8, Ipv4Addr)> {
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in);
    let msg = recvmsg::<SockaddrIn>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::Ipv4RecvErr(err, Some(from)) = c {
            if err.ee_origin == libc::SO_EE_ORIGIN_ICMP {
                return Some((
                    err.ee_type,
                    Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr)),
                ));
            }
        }
    }
    None
}

/// Asks the endpoint who it is over HTTP (the lab's servers name their pod or node).
fn who_answers(sock: Socket, target: SocketAddrV4) -> Option<String> {
    sock.set_nonblocking(false).ok()?;
    sock.set_ttl_v4(64).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut stream = std::net::TcpStream::from(sock);
    let req = format!("GET / HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    let mut page = String::new();
    stream.read_to_string(&mut page).ok()?;
    super::service_checks::who(&page)
}

pub fn render(lab: &LabState, from: &str, t: &ServiceTrace) -> String {
    let inv = crate::inventory::Inventory::read(lab);
    let s = &t.service;
    let mut out = format!(
        "traceroute from pod {from} to Service {}/{} ({}), TCP SYN probes from port {}, {MAX_HOPS} hops max\n",
        s.namespace, s.name, t.target, t.source_port
    );
    let last = t.hops.len();
    for (i, h) in t.hops.iter().enumerate() {
        let ms = |rtt: Option<Duration>| {
            rtt.map_or(String::new(), |r| {
                format!("{:.3} ms", r.as_secs_f64() * 1e3)
            })
        };
        match h.addr {
            Some(a) if i + 1 == last && a == *t.target.ip() => {
                let who = match &t.end {
                    End::Connected {
                        answered_by: Some(w),
                    } => match endpoint_of(lab, s, t.target.port(), w) {
                        Some(e) => format!("connected: endpoint {w} ({e})"),
                        None => format!("connected: endpoint {w}"),
                    },
                    End::Connected { answered_by: None } => "connected".into(),
                    _ => "connection refused (TCP reset)".into(),
                };
                out += &format!(
                    "{:>2}  {:<16} {:<34} {}\n",
                    h.ttl,
                    t.target.to_string(),
                    who,
                    ms(h.rtt)
                );
            }
            Some(a) => {
                let real = match t.direct.get(i).and_then(|d| d.addr) {
                    Some(r) if r != a => format!("(ICMP from {r}  {})", inv.describe(r)),
                    _ => inv.describe(a).to_string(),
                };
                out += &format!(
                    "{:>2}  {:<16} {:<34} {}\n",
                    h.ttl,
                    a.to_string(),
                    real,
                    ms(h.rtt)
                );
            }
            None => out += &format!("{:>2}  *\n", h.ttl),
        }
    }
    let node = lab.pod(from).map(|p| p.node.clone()).unwrap_or_default();
    out += &match &t.end {
        End::Connected { .. } => format!(
            "\n{node}'s service proxy DNATs the first SYN to an endpoint (table ip podnet-proxy; \
             `explain {from} {}/{}` shows the rules), and conntrack sends every later probe of \
             this source port to the same one. Every hop seems to answer from {}: a router's \
             \"time exceeded\" belongs to the connection, and undoing the DNAT rewrites its \
             source too. Who really answered (in brackets) is a traceroute from {from} straight \
             to the endpoint, the path the DNATed packets take.\n",
            s.namespace,
            s.name,
            t.target.ip()
        ),
        End::Unreachable(by) => format!(
            "\n{by} answered ICMP unreachable: the Service has no endpoints, and the proxy's \
             reject-chain refuses connections to it.\n"
        ),
        End::Refused => {
            "\nThe endpoint reset the connection: nothing listens on its port.\n".into()
        }
        End::Lost => "\nNo answer: is the node's service proxy running?\n".into(),
    };
    out
}

/// Where endpoint `who` (a pod, or a node for the API server's stand-ins) listens.
fn endpoint_of(lab: &LabState, s: &ServiceRecord, port: u16, who: &str) -> Option<SocketAddrV4> {
    let ip: Ipv4Addr = match lab.pod(who) {
        Ok(p) => p.ip()?.parse().ok()?,
        Err(_) => lab.scenario.nodes.iter().find(|n| n.name == who)?.ip,
    };
    let p = s.ports.iter().find(|p| p.port == port)?;
    Some(SocketAddrV4::new(ip, p.target_port_of(ip)))
}
