//! An nftables table as plain data: what an owner wants, and what the kernel holds when read
//! back. Equal values mean equal rule sets (counter values and kernel handles aside), so a
//! reconcile is `read == want`.

use super::map::{proto_name, Map};
use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;

/// One `ip` (IPv4) family table with its sets, verdict maps and chains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub name: String,
    pub sets: Vec<Set>,
    pub maps: Vec<Map>,
    pub chains: Vec<Chain>,
}

/// A named interval set of IPv4 prefixes (`type ipv4_addr; flags interval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    /// Kept in canonical form (see [`Set::new`]): sorted, merged, no overlaps.
    elements: Vec<Ipv4Net>,
}

impl Set {
    /// A set holding `prefixes`, stored as the fewest prefixes covering the same addresses, so
    /// two sets with the same addresses compare equal however they were written.
    pub fn new(name: impl Into<String>, prefixes: impl IntoIterator<Item = Ipv4Net>) -> Set {
        let ranges = ranges(prefixes.into_iter().map(|p| {
            let start = u32::from(p.network()) as u64;
            (start, start + (1u64 << (32 - p.prefix_len())))
        }));
        Set {
            name: name.into(),
            elements: ranges.into_iter().flat_map(cover).collect(),
        }
    }

    /// A set from half-open address ranges `[start, end)` (how the kernel stores intervals).
    pub fn from_ranges(name: impl Into<String>, r: impl IntoIterator<Item = (u64, u64)>) -> Set {
        Set {
            name: name.into(),
            elements: ranges(r).into_iter().flat_map(cover).collect(),
        }
    }

    pub fn elements(&self) -> &[Ipv4Net] {
        &self.elements
    }

    /// The set's half-open address ranges, merged and sorted.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        ranges(self.elements.iter().map(|p| {
            let start = u32::from(p.network()) as u64;
            (start, start + (1u64 << (32 - p.prefix_len())))
        }))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.elements.iter().any(|p| p.contains(&ip))
    }
}

/// Sorts and merges half-open ranges (touching ranges become one).
fn ranges(r: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = r.into_iter().filter(|(s, e)| s < e).collect();
    v.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The fewest prefixes covering `[start, end)`.
fn cover((mut start, end): (u64, u64)) -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    while start < end {
        let align = if start == 0 {
            32
        } else {
            start.trailing_zeros().min(32)
        };
        let mut size = align;
        while (1u64 << size) > end - start {
            size -= 1;
        }
        out.push(Ipv4Net::new(Ipv4Addr::from(start as u32), 32 - size as u8).expect("prefix"));
        start += 1u64 << size;
    }
    out
}

/// A chain; base chains are attached to a netfilter hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    pub kind: ChainKind,
    pub hook: HookPoint,
    /// `srcnat` is 100, `dstnat` -100.
    pub priority: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    Filter,
    Nat,
}

impl ChainKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainKind::Filter => "filter",
            ChainKind::Nat => "nat",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl HookPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::Prerouting => "prerouting",
            HookPoint::Input => "input",
            HookPoint::Forward => "forward",
            HookPoint::Output => "output",
            HookPoint::Postrouting => "postrouting",
        }
    }
}

/// A rule: expressions the kernel runs in order until one does not match.
#[derive(Debug, Clone, Eq, Default)]
pub struct Rule {
    pub exprs: Vec<Expr>,
}

/// Rules compare without their counters' values: a rule that counted traffic is the same rule.
impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        self.exprs.len() == other.exprs.len()
            && self
                .exprs
                .iter()
                .zip(&other.exprs)
                .all(|(a, b)| match (a, b) {
                    (Expr::Counter { .. }, Expr::Counter { .. }) => true,
                    _ => a == b,
                })
    }
}

/// What a rule loads into a register for a comparison or lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    IpSaddr,
    IpDaddr,
    /// `meta oifname`: the output device's name, NUL-padded to 16 bytes.
    OifName,
    /// `fib saddr type`: the route type of the source address (2 = local).
    FibSaddrType,
    /// `meta l4proto`: the transport protocol, 1 byte (6 tcp, 17 udp).
    L4Proto,
    /// `th dport`: the transport header's destination port, 2 bytes in network order.
    ThDport,
    /// `meta mark`: the packet mark, 4 bytes in host order.
    Mark,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    /// Run the chain, then come back.
    Jump(String),
    /// Run the chain instead (no coming back).
    Goto(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// The kernel expressions podnet uses (one each, in the kernel's own terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Load a field into register 1.
    Load(Field),
    /// Compare register 1 with bytes.
    Cmp {
        eq: bool,
        data: Vec<u8>,
    },
    /// Look register 1 up in a set of this table.
    Lookup {
        set: String,
        invert: bool,
    },
    Counter {
        packets: u64,
        bytes: u64,
    },
    /// Source NAT to the outgoing interface's address.
    Masquerade {
        fully_random: bool,
    },
    /// Load a field into 32-bit register `reg` (9, 10, ...): the later parts of a
    /// concatenation whose first part is a plain [`Expr::Load`].
    LoadAt {
        field: Field,
        reg: u32,
    },
    /// Look register 1 (and the ones after it, for a concatenated key) up in verdict map
    /// `map`, and do what the element says (`... vmap @map`).
    Vmap {
        map: String,
    },
    /// A random number in `0..modulus` into register 1 (`numgen random mod N`).
    Numgen {
        modulus: u32,
    },
    /// Register 1 = (register 1 & mask) ^ xor on 4 bytes; the values are host-order numbers,
    /// as marks are (`mark set mark or 0x4000` is mask !0x4000, xor 0x4000).
    Bitwise {
        mask: u32,
        xor: u32,
    },
    /// Set the packet mark from register 1.
    SetMark,
    /// Put `data` into register `reg` (1 and 2 hold a DNAT's address and port).
    Immediate {
        reg: u32,
        data: Vec<u8>,
    },
    /// Destination NAT to the address in register 1 and the port in register 2.
    Dnat,
    /// Refuse with ICMP port unreachable (a TCP client sees "connection refused").
    Reject,
    Verdict(Verdict),
    /// An expression podnet does not write (only ever read back from the kernel).
    Unknown(String),
}

/// The route type `fib ... type` compares against: local.
pub const RTN_LOCAL: u32 = 2;
const IFNAMSIZ: usize = 16;

/// Rule building blocks, so an owner writes `ip saddr @set` as words, not registers.
impl Expr {
    pub fn counter() -> Expr {
        Expr::Counter {
            packets: 0,
            bytes: 0,
        }
    }

    /// `FIELD @set` (or `FIELD != @set`).
    pub fn in_set(field: Field, set: &str, member: bool) -> [Expr; 2] {
        [
            Expr::Load(field),
            Expr::Lookup {
                set: set.into(),
                invert: !member,
            },
        ]
    }

    /// `ip saddr|daddr [!=] ADDR`.
    pub fn addr_is(field: Field, ip: Ipv4Addr, eq: bool) -> [Expr; 2] {
        [
            Expr::Load(field),
            Expr::Cmp {
                eq,
                data: ip.octets().to_vec(),
            },
        ]
    }

    /// `oifname "NAME"`.
    pub fn oifname_is(name: &str) -> [Expr; 2] {
        let mut data = name.as_bytes().to_vec();
        data.resize(IFNAMSIZ, 0);
        [Expr::Load(Field::OifName), Expr::Cmp { eq: true, data }]
    }

    /// `ip daddr . meta l4proto . th dport vmap @MAP`: a Service's address, protocol and port
    /// looked up in a map of [`super::MapKey::AddrProtoPort`] keys.
    pub fn service_dispatch(map: &str) -> [Expr; 4] {
        [
            Expr::Load(Field::IpDaddr),
            Expr::LoadAt {
                field: Field::L4Proto,
                reg: 9,
            },
            Expr::LoadAt {
                field: Field::ThDport,
                reg: 10,
            },
            Expr::Vmap { map: map.into() },
        ]
    }

    /// `numgen random mod N vmap @MAP`: one of N elements of an [`super::MapKey::Index`] map,
    /// at random.
    pub fn pick_random(n: u32, map: &str) -> [Expr; 2] {
        [Expr::Numgen { modulus: n }, Expr::Vmap { map: map.into() }]
    }

    /// `meta l4proto PROTO dnat to IP:PORT`.
    pub fn dnat_to(proto: u8, ip: Ipv4Addr, port: u16) -> [Expr; 5] {
        [
            Expr::Load(Field::L4Proto),
            Expr::Cmp {
                eq: true,
                data: vec![proto],
            },
            Expr::Immediate {
                reg: 1,
                data: ip.octets().to_vec(),
            },
            Expr::Immediate {
                reg: 2,
                data: port.to_be_bytes().to_vec(),
            },
            Expr::Dnat,
        ]
    }

    /// `meta mark set meta mark | BITS`.
    pub fn mark_set(bits: u32) -> [Expr; 3] {
        [
            Expr::Load(Field::Mark),
            Expr::Bitwise {
                mask: !bits,
                xor: bits,
            },
            Expr::SetMark,
        ]
    }

    /// `meta mark set meta mark ^ BITS` (clears bits known to be set).
    pub fn mark_flip(bits: u32) -> [Expr; 3] {
        [
            Expr::Load(Field::Mark),
            Expr::Bitwise {
                mask: u32::MAX,
                xor: bits,
            },
            Expr::SetMark,
        ]
    }

    /// `meta mark & BITS != 0` (`set`), or `== 0`.
    pub fn mark_has(bits: u32, set: bool) -> [Expr; 3] {
        [
            Expr::Load(Field::Mark),
            Expr::Bitwise { mask: bits, xor: 0 },
            Expr::Cmp {
                eq: !set,
                data: 0u32.to_ne_bytes().to_vec(),
            },
        ]
    }

    /// `fib saddr type local`: the source is one of this host's addresses.
    pub fn saddr_is_local() -> [Expr; 2] {
        [
            Expr::Load(Field::FibSaddrType),
            Expr::Cmp {
                eq: true,
                data: RTN_LOCAL.to_ne_bytes().to_vec(),
            },
        ]
    }
}

/// The rule in nft's words: `ip saddr @pools ip daddr != @all-pools counter masquerade`,
/// `ip daddr . meta l4proto . th dport vmap @services`, `meta l4proto tcp dnat to 10.0.0.5:80`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<String> = Vec::new();
        // What register 1 (and the registers after it) hold, in words, and the first field.
        let mut loaded: Vec<String> = Vec::new();
        let mut field: Option<Field> = None;
        let mut immediates: Vec<(u32, Vec<u8>)> = Vec::new();
        for e in &self.exprs {
            match e {
                Expr::Load(x) => {
                    loaded = vec![field_name(*x).into()];
                    field = Some(*x);
                }
                Expr::LoadAt { field: x, .. } => loaded.push(field_name(*x).into()),
                Expr::Numgen { modulus } => {
                    loaded = vec![format!("numgen random mod {modulus}")];
                    field = None;
                }
                Expr::Bitwise { mask, xor } => {
                    let x = loaded.join(" . ");
                    loaded = vec![match (*mask, *xor) {
                        (m, x2) if m == !x2 => format!("{x} | 0x{x2:x}"),
                        (u32::MAX, x2) => format!("{x} ^ 0x{x2:x}"),
                        (m, 0) => format!("{x} & 0x{m:x}"),
                        (m, x2) => format!("{x} & 0x{m:x} ^ 0x{x2:x}"),
                    }];
                }
                Expr::SetMark => words.push(format!("meta mark set {}", loaded.join(" . "))),
                Expr::Cmp { eq, data } => {
                    // After a bitwise operation, nft spells equality out.
                    let masked = loaded.iter().any(|l| l.contains(" & "));
                    let op = match (*eq, masked) {
                        (true, false) => "",
                        (true, true) => "== ",
                        (false, _) => "!= ",
                    };
                    let value = match field {
                        Some(Field::IpSaddr | Field::IpDaddr) => show_addr(data),
                        Some(Field::OifName) => show_name(data),
                        Some(Field::FibSaddrType) => show_rtn(data),
                        Some(Field::L4Proto) if data.len() == 1 => proto_name(data[0]),
                        Some(Field::ThDport) if data.len() == 2 => {
                            u16::from_be_bytes([data[0], data[1]]).to_string()
                        }
                        Some(Field::Mark) if data.len() == 4 => {
                            format!(
                                "0x{:x}",
                                u32::from_ne_bytes([data[0], data[1], data[2], data[3]])
                            )
                        }
                        _ => format!("{data:02x?}"),
                    };
                    let name = if loaded.is_empty() {
                        "?".into()
                    } else {
                        loaded.join(" . ")
                    };
                    words.push(format!("{name} {op}{value}"));
                }
                Expr::Lookup { set, invert } => {
                    let op = if *invert { "!= " } else { "" };
                    words.push(format!("{} {op}@{set}", loaded.join(" . ")));
                }
                Expr::Vmap { map } => words.push(format!("{} vmap @{map}", loaded.join(" . "))),
                Expr::Immediate { reg, data } => immediates.push((*reg, data.clone())),
                Expr::Dnat => {
                    let reg = |r: u32| {
                        immediates
                            .iter()
                            .rev()
                            .find(|(x, _)| *x == r)
                            .map(|(_, d)| d.clone())
                    };
                    let addr = reg(1).map_or("?".into(), |d| show_addr(&d));
                    let port = match reg(2).as_deref() {
                        Some([a, b]) => format!(":{}", u16::from_be_bytes([*a, *b])),
                        _ => String::new(),
                    };
                    words.push(format!("dnat to {addr}{port}"));
                }
                Expr::Reject => words.push("reject".into()),
                Expr::Counter { packets, bytes } => {
                    words.push(format!("counter packets {packets} bytes {bytes}"))
                }
                Expr::Masquerade { fully_random } => words.push(
                    if *fully_random {
                        "masquerade fully-random"
                    } else {
                        "masquerade"
                    }
                    .into(),
                ),
                Expr::Verdict(v) => words.push(v.to_string()),
                Expr::Unknown(name) => words.push(format!("<{name}>")),
            }
        }
        f.write_str(&words.join(" "))
    }
}

fn field_name(f: Field) -> &'static str {
    match f {
        Field::IpSaddr => "ip saddr",
        Field::IpDaddr => "ip daddr",
        Field::OifName => "oifname",
        Field::FibSaddrType => "fib saddr type",
        Field::L4Proto => "meta l4proto",
        Field::ThDport => "th dport",
        Field::Mark => "meta mark",
    }
}

fn show_addr(data: &[u8]) -> String {
    match <[u8; 4]>::try_from(data) {
        Ok(o) => Ipv4Addr::from(o).to_string(),
        Err(_) => format!("{data:02x?}"),
    }
}

fn show_name(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    format!("\"{}\"", String::from_utf8_lossy(&data[..end]))
}

fn show_rtn(data: &[u8]) -> String {
    match <[u8; 4]>::try_from(data).map(u32::from_ne_bytes) {
        Ok(RTN_LOCAL) => "local".into(),
        Ok(n) => n.to_string(),
        Err(_) => format!("{data:02x?}"),
    }
}

impl Table {
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }

    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.iter().find(|m| m.name == name)
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The same table with sets and chains in name order (the kernel lists them in its own
    /// order), for comparing.
    pub fn sorted(mut self) -> Table {
        self.sets.sort_by(|a, b| a.name.cmp(&b.name));
        self.maps.sort_by(|a, b| a.name.cmp(&b.name));
        self.chains.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }
}

/// The table in nft's layout (as `nft list table` prints it).
impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table ip {} {{", self.name)?;
        for s in &self.sets {
            let elems: Vec<String> = s.elements.iter().map(|e| e.to_string()).collect();
            writeln!(f, "\tset {} {{", s.name)?;
            writeln!(f, "\t\ttype ipv4_addr")?;
            writeln!(f, "\t\tflags interval")?;
            if !elems.is_empty() {
                writeln!(f, "\t\telements = {{ {} }}", elems.join(", "))?;
            }
            writeln!(f, "\t}}")?;
        }
        for m in &self.maps {
            write!(f, "{m}")?;
        }
        for c in &self.chains {
            writeln!(f, "\tchain {} {{", c.name)?;
            if let Some(b) = c.base {
                writeln!(
                    f,
                    "\t\ttype {} hook {} priority {}; policy accept;",
                    b.kind.as_str(),
                    b.hook.as_str(),
                    b.priority
                )?;
            }
            for r in &c.rules {
                writeln!(f, "\t\t{r}")?;
            }
            writeln!(f, "\t}}")?;
        }
        writeln!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn sets_are_canonical_whatever_order_and_overlap() {
        let a = Set::new(
            "s",
            [net("10.0.1.0/24"), net("10.0.0.0/24"), net("10.0.0.128/25")],
        );
        assert_eq!(a.elements(), &[net("10.0.0.0/23")]);
        let b = Set::from_ranges("s", [(0x0a00_0000, 0x0a00_0200)]);
        assert_eq!(a, b);
        let c = Set::new("s", [net("10.0.0.0/24"), net("10.0.2.0/24")]);
        assert_eq!(c.elements(), &[net("10.0.0.0/24"), net("10.0.2.0/24")]);
        assert!(c.contains("10.0.2.9".parse().unwrap()));
        assert!(!c.contains("10.0.1.9".parse().unwrap()));
        // A range that is not one prefix is covered by several.
        let d = Set::from_ranges("s", [(1, 4)]);
        assert_eq!(d.elements(), &[net("0.0.0.1/32"), net("0.0.0.2/31")]);
        assert_eq!(
            Set::new("s", [net("0.0.0.0/0")]).elements(),
            &[net("0.0.0.0/0")]
        );
    }

    #[test]
    fn service_rules_read_as_kube_proxy_writes_them() {
        let words = |exprs: Vec<Expr>| Rule { exprs }.to_string();
        assert_eq!(
            words(Expr::service_dispatch("services").to_vec()),
            "ip daddr . meta l4proto . th dport vmap @services"
        );
        assert_eq!(
            words(Expr::pick_random(3, "svc-eps").to_vec()),
            "numgen random mod 3 vmap @svc-eps"
        );
        assert_eq!(
            words(Expr::dnat_to(6, "10.0.0.2".parse().unwrap(), 8080).to_vec()),
            "meta l4proto tcp dnat to 10.0.0.2:8080"
        );
        assert_eq!(
            words(Expr::mark_set(0x4000).to_vec()),
            "meta mark set meta mark | 0x4000"
        );
        assert_eq!(
            words(Expr::mark_flip(0x4000).to_vec()),
            "meta mark set meta mark ^ 0x4000"
        );
        let mut masq = Expr::mark_has(0x4000, false).to_vec();
        masq.push(Expr::Verdict(Verdict::Return));
        assert_eq!(words(masq), "meta mark & 0x4000 == 0x0 return");
        let mut hairpin = Expr::addr_is(Field::IpSaddr, "10.0.0.2".parse().unwrap(), true).to_vec();
        hairpin.push(Expr::Verdict(Verdict::Jump("mark-for-masquerade".into())));
        assert_eq!(words(hairpin), "ip saddr 10.0.0.2 jump mark-for-masquerade");
    }

    #[test]
    fn rules_read_as_nft_writes_them_and_compare_without_counts() {
        let mut exprs = Vec::new();
        exprs.extend(Expr::in_set(Field::IpSaddr, "nat-pools", true));
        exprs.extend(Expr::in_set(Field::IpDaddr, "all-pools", false));
        exprs.push(Expr::counter());
        exprs.push(Expr::Masquerade { fully_random: true });
        let rule = Rule { exprs };
        assert_eq!(
            rule.to_string(),
            "ip saddr @nat-pools ip daddr != @all-pools counter packets 0 bytes 0 masquerade fully-random"
        );
        let mut counted = rule.clone();
        counted.exprs[4] = Expr::Counter {
            packets: 3,
            bytes: 252,
        };
        assert_eq!(rule, counted);
        let mut other = rule.clone();
        other.exprs[3] = Expr::Lookup {
            set: "all-pools".into(),
            invert: false,
        };
        assert_ne!(rule, other);

        let mut exprs = Vec::new();
        exprs.extend(Expr::oifname_is("tunl0"));
        exprs.extend(Expr::saddr_is_local());
        exprs.extend(Expr::addr_is(
            Field::IpSaddr,
            "10.233.90.0".parse().unwrap(),
            false,
        ));
        exprs.push(Expr::Masquerade {
            fully_random: false,
        });
        assert_eq!(
            Rule { exprs }.to_string(),
            "oifname \"tunl0\" fib saddr type local ip saddr != 10.233.90.0 masquerade"
        );
    }
}
