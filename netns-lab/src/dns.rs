//! A small authoritative DNS server and client for the lab: the outside world's resolver
//! (`serve-dns`), the nodes' node-local DNS (its cluster names in
//! [`crate::cluster_dns`], the rest forwarded), and `resolve`, the look-up a pod runs
//! without dig.
//!
//! The wire format is `simple-dns` (parsing and building DNS messages, no server framework):
//! the lab needs a few A records over UDP, and a small, well-kept codec keeps the code about
//! answering, not about packet layout. What to answer is a pure function ([`answer`]) over a
//! [`Zone`], so it is unit-tested without sockets.

use anyhow::{bail, Context, Result};
use simple_dns::rdata::{RData, A};
use simple_dns::{
    Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, QCLASS, QTYPE, RCODE, TYPE,
};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// How long answers may be cached (seconds): short, since the lab changes while it runs.
const TTL: u32 = 30;

/// Names this server is the authority for, each with its addresses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Zone {
    records: BTreeMap<String, Vec<Ipv4Addr>>,
}

impl Zone {
    /// Adds `ip` to `name` (any case, with or without the final dot).
    pub fn add(&mut self, name: &str, ip: Ipv4Addr) {
        self.records.entry(normal(name)).or_default().push(ip);
    }

    /// The addresses of `name`, if the zone has it.
    pub fn lookup(&self, name: &str) -> Option<&[Ipv4Addr]> {
        self.records.get(&normal(name)).map(Vec::as_slice)
    }

    /// `NAME=IP` pairs, as `serve-dns --record` takes them.
    pub fn parse_records(pairs: &[String]) -> Result<Zone> {
        let mut zone = Zone::default();
        for pair in pairs {
            let (name, ip) = pair
                .split_once('=')
                .with_context(|| format!("record {pair:?}: expected NAME=IPv4"))?;
            let ip = ip
                .parse()
                .with_context(|| format!("record {pair:?}: {ip:?} is not an IPv4 address"))?;
            Name::new(name).with_context(|| format!("record {pair:?}: bad name"))?;
            zone.add(name, ip);
        }
        Ok(zone)
    }
}

pub fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// What a server knows of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Addresses(Vec<Ipv4Addr>),
    /// In this server's domain, and not there.
    NxDomain,
    /// Not this server's domain: ask upstream.
    Elsewhere,
}

/// A source of answers: a fixed [`Zone`], or the cluster's names.
pub trait Authority {
    fn lookup(&self, name: &str) -> Lookup;
}

impl Authority for Zone {
    fn lookup(&self, name: &str) -> Lookup {
        match Zone::lookup(self, name) {
            Some(ips) => Lookup::Addresses(ips.to_vec()),
            None => Lookup::NxDomain,
        }
    }
}

/// What to do with a query.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Reply(Vec<u8>),
    /// Relay it to the upstream server as it is.
    Forward,
}

/// The reply to one query message: A records for names the authority knows, an empty answer
/// (NOERROR) for other types of a known name, NXDOMAIN for unknown names of its domain,
/// [`Answer::Forward`] for names outside it, FORMERR for what does not parse as a query
/// (when even the header is unreadable, no reply at all).
pub fn answer(query: &[u8], zone: &dyn Authority) -> Option<Answer> {
    let Ok(q) = Packet::parse(query) else {
        let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
        let mut reply = Packet::new_reply(id);
        *reply.rcode_mut() = RCODE::FormatError;
        return reply.build_bytes_vec().ok().map(Answer::Reply);
    };
    if q.has_flags(PacketFlag::RESPONSE) {
        return None; // never answer an answer
    }
    let mut reply = Packet::new_reply(q.id());
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    if q.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    for question in &q.questions {
        let name = question.qname.to_string();
        reply.questions.push(question.clone());
        let ips = match zone.lookup(&name) {
            Lookup::Addresses(ips) => ips,
            Lookup::NxDomain => {
                *reply.rcode_mut() = RCODE::NameError;
                continue;
            }
            Lookup::Elsewhere => return Some(Answer::Forward),
        };
        let wants_a = matches!(question.qtype, QTYPE::TYPE(TYPE::A) | QTYPE::ANY);
        let in_class = matches!(question.qclass, QCLASS::CLASS(CLASS::IN) | QCLASS::ANY);
        if wants_a && in_class {
            for ip in ips {
                reply.answers.push(ResourceRecord::new(
                    question.qname.clone(),
                    CLASS::IN,
                    TTL,
                    RData::A(A::from(ip)),
                ));
            }
        }
    }
    reply.build_bytes_vec().ok().map(Answer::Reply)
}

/// Answers DNS over UDP on `addr` forever. Bind the server's own address, not 0.0.0.0, where a
/// namespace has several: a reply must come from the address the query went to, or the
/// client's resolver throws it away.
/// Names outside the authority's domain go to `upstream` (each relayed on a thread of its
/// own, so a slow upstream holds up nobody else); without one they get SERVFAIL.
pub fn serve(addr: SocketAddr, zone: &dyn Authority, upstream: Option<SocketAddr>) -> Result<()> {
    let sock = UdpSocket::bind(addr).with_context(|| format!("bind udp {addr}"))?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock.recv_from(&mut buf).context("receive a DNS query")?;
        match (answer(&buf[..n], zone), upstream) {
            (Some(Answer::Reply(reply)), _) => {
                let _ = sock.send_to(&reply, from);
            }
            (Some(Answer::Forward), Some(up)) => {
                let (query, back) = (buf[..n].to_vec(), sock.try_clone()?);
                std::thread::spawn(move || {
                    if let Some(reply) = relay(&query, up) {
                        let _ = back.send_to(&reply, from);
                    }
                });
            }
            (Some(Answer::Forward), None) => {
                if let Ok(q) = Packet::parse(&buf[..n]) {
                    let mut reply = Packet::new_reply(q.id());
                    *reply.rcode_mut() = RCODE::ServerFailure;
                    if let Ok(r) = reply.build_bytes_vec() {
                        let _ = sock.send_to(&r, from);
                    }
                }
            }
            (None, _) => {}
        }
    }
}

/// One query to `upstream`, its reply as it came (2 s at most).
fn relay(query: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    sock.connect(upstream).ok()?;
    sock.send(query).ok()?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// What a look-up found.
#[derive(Debug, PartialEq)]
pub enum Found {
    Addresses(Vec<Ipv4Addr>),
    /// The server says the name does not exist.
    NxDomain,
}

/// Asks `server` (UDP port 53 unless given) for the A records of `name`: three tries,
/// `timeout` each.
pub fn resolve(server: SocketAddr, name: &str, timeout: Duration) -> Result<Found> {
    let sock = UdpSocket::bind(("0.0.0.0", 0)).context("bind a UDP socket for DNS")?;
    sock.set_read_timeout(Some(timeout))?;
    sock.connect(server)
        .with_context(|| format!("connect to DNS server {server}"))?;
    let id = (std::process::id() as u16) ^ (name.len() as u16).rotate_left(8);
    let mut query = Packet::new_query(id);
    query.set_flags(PacketFlag::RECURSION_DESIRED);
    let qname = Name::new(name).with_context(|| format!("{name:?} is not a DNS name"))?;
    query.questions.push(Question::new(
        qname,
        TYPE::A.into(),
        CLASS::IN.into(),
        false,
    ));
    let bytes = query.build_bytes_vec().context("build a DNS query")?;
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        sock.send(&bytes)
            .with_context(|| format!("send a DNS query to {server}"))?;
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let Ok(reply) = Packet::parse(&buf[..n]) else {
            continue;
        };
        if reply.id() != id || !reply.has_flags(PacketFlag::RESPONSE) {
            continue;
        }
        return match reply.rcode() {
            RCODE::NoError => Ok(Found::Addresses(
                reply
                    .answers
                    .iter()
                    .filter_map(|rr| match &rr.rdata {
                        RData::A(a) => Some(Ipv4Addr::from(a.address)),
                        _ => None,
                    })
                    .collect(),
            )),
            RCODE::NameError => Ok(Found::NxDomain),
            other => bail!("DNS server {server} answered {other:?} for {name}"),
        };
    }
    bail!("no answer from DNS server {server} for {name} (3 tries, {timeout:?} each)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        Zone::parse_records(&["www.example.com=203.0.113.10".into()]).unwrap()
    }

    /// The reply's bytes to an `qtype` question for `name`.
    fn ask(name: &str, qtype: TYPE) -> Vec<u8> {
        let mut q = Packet::new_query(7);
        q.questions.push(Question::new(
            Name::new_unchecked(name),
            qtype.into(),
            CLASS::IN.into(),
            false,
        ));
        match answer(&q.build_bytes_vec().unwrap(), &zone()).unwrap() {
            Answer::Reply(r) => r,
            Answer::Forward => panic!("a Zone never forwards"),
        }
    }

    #[test]
    fn known_name_gets_its_a_record() {
        let bytes = ask("WWW.Example.com.", TYPE::A);
        let r = Packet::parse(&bytes).unwrap();
        assert_eq!(r.id(), 7);
        assert_eq!(r.rcode(), RCODE::NoError);
        assert!(r.has_flags(PacketFlag::RESPONSE | PacketFlag::AUTHORITATIVE_ANSWER));
        assert_eq!(r.answers.len(), 1);
        assert_eq!(
            r.answers[0].rdata,
            RData::A(A::from(Ipv4Addr::new(203, 0, 113, 10)))
        );
    }

    #[test]
    fn unknown_name_is_nxdomain_and_other_types_are_empty() {
        let nx = ask("nowhere.example.com", TYPE::A);
        assert_eq!(Packet::parse(&nx).unwrap().rcode(), RCODE::NameError);
        let bytes = ask("www.example.com", TYPE::AAAA);
        let aaaa = Packet::parse(&bytes).unwrap();
        assert_eq!(aaaa.rcode(), RCODE::NoError);
        assert!(aaaa.answers.is_empty());
    }

    #[test]
    fn garbage_gets_formerr_and_answers_are_not_answered() {
        let Some(Answer::Reply(r)) = answer(&[0x12, 0x34, 0xff], &zone()) else {
            panic!("FORMERR expected")
        };
        let r = Packet::parse(&r).unwrap();
        assert_eq!((r.id(), r.rcode()), (0x1234, RCODE::FormatError));
        assert!(answer(&[1], &zone()).is_none());
        let reply = Packet::new_reply(1).build_bytes_vec().unwrap();
        assert!(answer(&reply, &zone()).is_none());
    }

    #[test]
    fn bad_records_are_refused() {
        assert!(Zone::parse_records(&["www.example.com".into()]).is_err());
        assert!(Zone::parse_records(&["www.example.com=2001:db8::1".into()]).is_err());
    }

    #[test]
    fn resolve_over_loopback() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            for _ in 0..2 {
                let (n, from) = sock.recv_from(&mut buf).unwrap();
                let Some(Answer::Reply(r)) = answer(&buf[..n], &zone()) else {
                    panic!("a reply")
                };
                sock.send_to(&r, from).unwrap();
            }
        });
        let t = Duration::from_secs(2);
        assert_eq!(
            resolve(addr, "www.example.com", t).unwrap(),
            Found::Addresses(vec![Ipv4Addr::new(203, 0, 113, 10)])
        );
        assert_eq!(resolve(addr, "x.example.com", t).unwrap(), Found::NxDomain);
    }
}
