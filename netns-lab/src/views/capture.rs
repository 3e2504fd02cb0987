//! `capture NODE IFACE`: packets on an interface inside a node, from an `AF_PACKET` socket
//! opened in the node's namespace, written as a pcap file (tcpdump and Wireshark read it) or
//! summarised one line each. The tunnel's outer header is visible on ens3.

use crate::state::LabState;
use anyhow::{bail, Context, Result};
use podnet_netlink::{Netlink, Netns};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::Write;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A captured frame (Ethernet, as the socket sees it).
pub struct Frame {
    pub at: SystemTime,
    pub data: Vec<u8>,
}

/// Captures up to `count` frames on `iface` in `node`, for at most `timeout`; with
/// `ipv4_only`, other frames (IPv6 neighbour discovery, ARP) are passed over.
pub fn capture(
    lab: &LabState,
    node: &str,
    iface: &str,
    count: usize,
    timeout: Duration,
    ipv4_only: bool,
) -> Result<Vec<Frame>> {
    // `internet` is the outside world's namespace (where masqueraded traffic arrives), and
    // `upstream` the provider's router in front of it.
    let outside = lab.scenario.outside.is_some();
    let path = if node == "internet" && outside {
        LabState::netns_path(&lab.internet())
    } else if node == "upstream" && outside {
        LabState::netns_path(&lab.upstream())
    } else if !lab.nodes.iter().any(|n| n.name == node) && lab.pod(node).is_err() {
        bail!(
            "no node or pod {node} in lab {} (or `upstream` and `internet`, the outside world)",
            lab.name
        );
    } else {
        LabState::netns_path(node)
    };
    let ns = Netns::open(path)?;
    ns.run(|| -> Result<Vec<Frame>> {
        let mut nl = Netlink::open()?;
        let link = nl
            .link(iface)?
            .with_context(|| format!("{node} has no interface {iface}"))?;
        let sock = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from((libc::ETH_P_ALL as u16).to_be() as i32)),
        )
        .context("open a packet socket")?;
        let mut storage = socket2::SockAddrStorage::zeroed();
        // SAFETY: sockaddr_ll is one of this platform's sockaddr types, and a zeroed one with
        // family, protocol and interface set is a valid packet-socket bind address.
        let addr = unsafe {
            let sll = storage.view_as::<libc::sockaddr_ll>();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sll.sll_ifindex = link.index as i32;
            socket2::SockAddr::new(
                storage,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        sock.bind(&addr)
            .with_context(|| format!("bind to {iface}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let start = Instant::now();
        let mut frames = Vec::new();
        let mut buf = [MaybeUninit::<u8>::uninit(); 65536];
        while frames.len() < count && start.elapsed() < timeout {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    // SAFETY: recv initialised the first n bytes.
                    let data: Vec<u8> = buf[..n]
                        .iter()
                        .map(|b| unsafe { b.assume_init() })
                        .collect();
                    if !ipv4_only || (data.len() > 14 && data[12..14] == [0x08, 0x00]) {
                        frames.push(Frame {
                            at: SystemTime::now(),
                            data,
                        });
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e).context("read packets"),
            }
        }
        Ok(frames)
    })?
}

/// The pcap file format (microsecond timestamps, Ethernet link type).
pub fn write_pcap(out: &mut impl Write, frames: &[Frame]) -> Result<()> {
    out.write_all(&0xa1b2c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
    for f in frames {
        let t = f.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        out.write_all(&(t.as_secs() as u32).to_le_bytes())?;
        out.write_all(&t.subsec_micros().to_le_bytes())?;
        out.write_all(&(f.data.len() as u32).to_le_bytes())?;
        out.write_all(&(f.data.len() as u32).to_le_bytes())?;
        out.write_all(&f.data)?;
    }
    Ok(())
}

/// One line per frame: outer addresses and, for IPIP and VXLAN, the inner ones.
pub fn summary(f: &Frame) -> String {
    let d = &f.data;
    if d.len() < 14 {
        return "short frame".into();
    }
    if u16::from_be_bytes([d[12], d[13]]) != 0x0800 {
        return format!("ethertype 0x{:04x}", u16::from_be_bytes([d[12], d[13]]));
    }
    describe_ip(&d[14..])
}

fn ip(b: &[u8]) -> String {
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

fn describe_ip(p: &[u8]) -> String {
    if p.len() < 20 {
        return "short IP packet".into();
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let (proto, src, dst) = (p[9], ip(&p[12..16]), ip(&p[16..20]));
    let rest = p.get(ihl..).unwrap_or(&[]);
    match proto {
        1 => format!(
            "IP {src} > {dst}: ICMP type {}",
            rest.first().copied().unwrap_or(0)
        ),
        4 => format!(
            "IP {src} > {dst}: IPIP (protocol 4), inner {}",
            describe_ip(rest)
        ),
        17 if rest.len() >= 8 && u16::from_be_bytes([rest[2], rest[3]]) == 4789 => {
            let vni = u32::from_be_bytes([0, rest[12], rest[13], rest[14]]);
            let inner = rest.get(8 + 8 + 14..).map(describe_ip).unwrap_or_default();
            format!("IP {src} > {dst}: UDP 4789 VXLAN vni {vni}, inner {inner}")
        }
        17 => format!("IP {src} > {dst}: UDP"),
        6 if rest.len() >= 20 => {
            let (sport, dport) = (
                u16::from_be_bytes([rest[0], rest[1]]),
                u16::from_be_bytes([rest[2], rest[3]]),
            );
            let data = rest.get(usize::from(rest[12] >> 4) * 4..).unwrap_or(&[]);
            // The IP total length bounds the payload (frames may carry Ethernet padding).
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            let data = &data[..data
                .len()
                .min(total.saturating_sub(ihl + usize::from(rest[12] >> 4) * 4))];
            let what = if (sport == 179 || dport == 179) && !data.is_empty() {
                format!("BGP {}", super::bgp_wire::describe(data))
            } else {
                "TCP".to_string()
            };
            format!("IP {src}.{sport} > {dst}.{dport}: {what}")
        }
        6 => format!("IP {src} > {dst}: TCP"),
        other => format!("IP {src} > {dst}: protocol {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        h.extend(src);
        h.extend(dst);
        h.extend(payload);
        h
    }

    #[test]
    fn capture_lines_show_outer_and_inner_headers_and_pcap_has_its_magic() {
        let inner = ipv4(1, [10, 233, 99, 1], [10, 233, 78, 3], &[8, 0, 0, 0]);
        let outer = ipv4(4, [192, 168, 110, 103], [192, 168, 110, 104], &inner);
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        frame.extend(outer);
        let f = Frame {
            at: SystemTime::now(),
            data: frame,
        };
        assert_eq!(summary(&f), "IP 192.168.110.103 > 192.168.110.104: IPIP (protocol 4), inner IP 10.233.99.1 > 10.233.78.3: ICMP type 8");
        let mut pcap = Vec::new();
        write_pcap(&mut pcap, &[f]).unwrap();
        assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(pcap.len(), 24 + 16 + 14 + 20 + 24);
    }

    #[test]
    fn bgp_on_tcp_179_is_decoded() {
        let mut keepalive = vec![0xffu8; 16];
        keepalive.extend([0, 19, 4]);
        let mut tcp = vec![
            0xb3, 0x10, 0, 179, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x18, 0, 0, 0, 0, 0, 0,
        ];
        tcp.extend(&keepalive);
        let mut packet = ipv4(6, [192, 168, 110, 103], [192, 168, 110, 104], &tcp);
        let total = (packet.len() as u16).to_be_bytes();
        packet[2] = total[0];
        packet[3] = total[1];
        packet.extend([0, 0, 0]); // Ethernet padding is not BGP
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        frame.extend(packet);
        let f = Frame {
            at: SystemTime::now(),
            data: frame,
        };
        assert_eq!(
            summary(&f),
            "IP 192.168.110.103.45840 > 192.168.110.104.179: BGP KEEPALIVE"
        );
    }
}
