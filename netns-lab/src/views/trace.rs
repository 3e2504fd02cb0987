//! `trace FROM TO`: a real traceroute from inside the source pod. ICMP echo requests with
//! rising TTL on a raw socket; each router on the way answers "time exceeded" from its own
//! address, the destination answers the echo. Each hop is then named from the lab inventory.

use crate::inventory::Inventory;
use crate::state::LabState;
use anyhow::{bail, Context, Result};
use podnet_netlink::Netns;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

const MAX_HOPS: u8 = 16;
const TRIES: usize = 3;
const WAIT: Duration = Duration::from_millis(700);
/// How long [`ping_here`] waits for an answer to any of its echoes.
const PING_DEADLINE: Duration = Duration::from_secs(3);

/// One hop: who answered (if anyone) and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    pub ttl: u8,
    pub addr: Option<Ipv4Addr>,
    pub rtt: Option<Duration>,
}

/// A pod name (its address) or an address.
pub fn resolve(lab: &LabState, to: &str) -> Result<Ipv4Addr> {
    if let Ok(ip) = to.parse() {
        return Ok(ip);
    }
    let pod = lab.pod(to)?;
    pod.ip()
        .context("the pod has no address")?
        .parse()
        .context("read the pod's address")
}

pub fn trace(lab: &LabState, from: &str, to: &str) -> Result<Vec<Hop>> {
    lab.pod(from)?;
    let dst = resolve(lab, to)?;
    let ns = Netns::open(LabState::netns_path(from))?;
    ns.run(|| probe_path(dst, MAX_HOPS))?
}

/// One echo from inside `pod`: true if answered.
pub fn ping(lab: &LabState, pod: &str, dst: Ipv4Addr) -> Result<bool> {
    lab.pod(pod)?;
    let ns = Netns::open(LabState::netns_path(pod))?;
    ns.run(|| ping_here(dst))?
}

/// Echoes from the calling thread's namespace, one every [`WAIT`], [`TRIES`] in all, as
/// `ping -c 3` does: true if `dst` answers any of them within [`PING_DEADLINE`] (on a busy lab a
/// flow's first packet can wait a second for its neighbours to resolve). An error quoting one
/// of them (unreachable) is not an answer: the next echo may still pass.
pub fn ping_here(dst: Ipv4Addr) -> Result<bool> {
    // Every echo of this process its own sequence number: a raw socket sees every ICMP
    // message of its namespace, and a late answer to an earlier ping (to another pod) must not
    // pass for this one's.
    static NEXT_SEQ: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1000);
    let sock = icmp_socket()?;
    let id = std::process::id() as u16 ^ 0x5a5a;
    let start = Instant::now();
    let mut sent: Vec<u16> = Vec::new();
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    while start.elapsed() < PING_DEADLINE {
        if sent.len() < TRIES && start.elapsed() >= WAIT * sent.len() as u32 {
            let seq = NEXT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sock.set_ttl_v4(64)?;
            sock.send_to(
                &echo_request(id, seq),
                &SockAddr::from(SocketAddrV4::new(dst, 0)),
            )
            .with_context(|| format!("send an echo to {dst}"))?;
            sent.push(seq);
        }
        let Some(data) = recv_icmp(&sock, &mut buf)? else {
            continue;
        };
        // An echo reply (type 0) from `dst` to one of ours; its unreachable (type 3) is not.
        let ihl = usize::from(data.first().copied().unwrap_or(0) & 0x0f) * 4;
        let reply = data.get(ihl) == Some(&0);
        if reply
            && sent
                .iter()
                .any(|&seq| answer_to(&data, id, seq) == Some((dst, true)))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn icmp_socket() -> Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .context("open a raw ICMP socket (needs root)")?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(s)
}

fn probe_path(dst: Ipv4Addr, max: u8) -> Result<Vec<Hop>> {
    let sock = icmp_socket()?;
    let id = (std::process::id() as u16).wrapping_add(7);
    let mut hops = Vec::new();
    for ttl in 1..=max {
        let mut hop = Hop {
            ttl,
            addr: None,
            rtt: None,
        };
        let mut reached = false;
        for attempt in 0..TRIES {
            if let Some((from, rtt, done)) =
                probe(&sock, dst, ttl, id, u16::from(ttl) * 8 + attempt as u16)?
            {
                hop = Hop {
                    ttl,
                    addr: Some(from),
                    rtt: Some(rtt),
                };
                reached = done;
                break;
            }
        }
        hops.push(hop);
        if reached {
            return Ok(hops);
        }
    }
    Ok(hops)
}

/// Sends one echo with `ttl`; waits for its time-exceeded or its reply. `(from, rtt, reached)`.
fn probe(
    sock: &Socket,
    dst: Ipv4Addr,
    ttl: u8,
    id: u16,
    seq: u16,
) -> Result<Option<(Ipv4Addr, Duration, bool)>> {
    sock.set_ttl_v4(u32::from(ttl))?;
    let packet = echo_request(id, seq);
    let start = Instant::now();
    sock.send_to(&packet, &SockAddr::from(SocketAddrV4::new(dst, 0)))
        .with_context(|| format!("send a probe to {dst}"))?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    while start.elapsed() < WAIT {
        let Some(data) = recv_icmp(sock, &mut buf)? else {
            continue;
        };
        if let Some((from, reached)) = answer_to(&data, id, seq) {
            return Ok(Some((from, start.elapsed(), reached)));
        }
    }
    Ok(None)
}

/// One ICMP packet from `sock`, `None` when its read timeout passed first.
fn recv_icmp(sock: &Socket, buf: &mut [MaybeUninit<u8>]) -> Result<Option<Vec<u8>>> {
    let n = match sock.recv(buf) {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).context("read ICMP answers"),
    };
    // SAFETY: recv initialised the first n bytes.
    Ok(Some(
        buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect(),
    ))
}

fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![8u8, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"podnet-lab trace probe..........");
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Reads an IPv4 packet carrying ICMP: an echo reply to us (reached), or a time-exceeded
/// quoting our echo (a hop). `None` for anything else.
fn answer_to(packet: &[u8], id: u16, seq: u16) -> Option<(Ipv4Addr, bool)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let from = Ipv4Addr::new(*packet.get(12)?, packet[13], packet[14], packet[15]);
    let icmp = packet.get(ihl..)?;
    let ours = |b: &[u8]| {
        b.len() >= 8
            && b[0] == 8
            && u16::from_be_bytes([b[4], b[5]]) == id
            && u16::from_be_bytes([b[6], b[7]]) == seq
    };
    match *icmp.first()? {
        0 if icmp.len() >= 8
            && u16::from_be_bytes([icmp[4], icmp[5]]) == id
            && u16::from_be_bytes([icmp[6], icmp[7]]) == seq =>
        {
            Some((from, true))
        }
        11 | 3 => {
            let inner = icmp.get(8..)?;
            let inner_ihl = usize::from(inner.first()? & 0x0f) * 4;
            ours(inner.get(inner_ihl..)?).then_some((from, icmp[0] == 3))
        }
        _ => None,
    }
}

pub fn render_trace(lab: &LabState, from: &str, to: &str, hops: &[Hop]) -> String {
    let inv = Inventory::read(lab);
    let dst = resolve(lab, to)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| to.to_string());
    let mut out = format!("traceroute from pod {from} to {dst}, {MAX_HOPS} hops max\n");
    for h in hops {
        match (h.addr, h.rtt) {
            (Some(a), Some(rtt)) => out.push_str(&format!(
                "{:>2}  {:<16} {:<34} {:.3} ms\n",
                h.ttl,
                a.to_string(),
                inv.describe(a),
                rtt.as_secs_f64() * 1e3
            )),
            _ => out.push_str(&format!("{:>2}  *\n", h.ttl)),
        }
    }
    out
}

/// The answering addresses, in order (for checks).
pub fn addresses(hops: &[Hop]) -> Result<Vec<Ipv4Addr>> {
    hops.iter()
        .map(|h| {
            h.addr
                .with_context(|| format!("hop {} did not answer", h.ttl))
        })
        .collect::<Result<Vec<_>>>()
        .and_then(|v| {
            if v.is_empty() {
                bail!("no hop answered")
            } else {
                Ok(v)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_check_out() {
        let p = echo_request(0x1234, 7);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn answers_are_matched_to_our_probe() {
        let mut reply = vec![0x45u8; 20];
        reply[12..16].copy_from_slice(&[10, 233, 78, 3]);
        let mut echo = echo_request(1, 2);
        echo[0] = 0;
        reply.extend(&echo);
        assert_eq!(
            answer_to(&reply, 1, 2),
            Some((Ipv4Addr::new(10, 233, 78, 3), true))
        );
        assert_eq!(answer_to(&reply, 1, 3), None);
        let mut exceeded = vec![0x45u8; 20];
        exceeded[12..16].copy_from_slice(&[192, 168, 110, 103]);
        exceeded.extend([11, 0, 0, 0, 0, 0, 0, 0]);
        exceeded.extend(vec![0x45u8; 20]);
        exceeded.extend(echo_request(1, 2));
        assert_eq!(
            answer_to(&exceeded, 1, 2),
            Some((Ipv4Addr::new(192, 168, 110, 103), false))
        );
    }
}
