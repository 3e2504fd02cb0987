//! An nftables table as plain data: what an owner wants, and what the kernel holds when read
//! back. Equal values mean equal rule sets (counter values and kernel handles aside), so a
//! reconcile is `read == want`.

use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;

/// One `ip` (IPv4) family table with its sets and chains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub name: String,
    pub sets: Vec<Set>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
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

/// The rule in nft's words: `ip saddr @pools ip daddr != @all-pools counter masquerade`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<String> = Vec::new();
        let mut loaded: Option<Field> = None;
        for e in &self.exprs {
            match e {
                Expr::Load(field) => loaded = Some(*field),
                Expr::Cmp { eq, data } => {
                    let op = if *eq { "" } else { "!= " };
                    let (name, value) = match loaded {
                        Some(Field::IpSaddr) => ("ip saddr", show_addr(data)),
                        Some(Field::IpDaddr) => ("ip daddr", show_addr(data)),
                        Some(Field::OifName) => ("oifname", show_name(data)),
                        Some(Field::FibSaddrType) => ("fib saddr type", show_rtn(data)),
                        None => ("?", format!("{data:02x?}")),
                    };
                    words.push(format!("{name} {op}{value}"));
                }
                Expr::Lookup { set, invert } => {
                    let name = loaded.map_or("?", field_name);
                    let op = if *invert { "!= " } else { "" };
                    words.push(format!("{name} {op}@{set}"));
                }
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
                Expr::Verdict(v) => words.push(
                    match v {
                        Verdict::Accept => "accept",
                        Verdict::Drop => "drop",
                        Verdict::Return => "return",
                    }
                    .into(),
                ),
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

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The same table with sets and chains in name order (the kernel lists them in its own
    /// order), for comparing.
    pub fn sorted(mut self) -> Table {
        self.sets.sort_by(|a, b| a.name.cmp(&b.name));
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
