//! Verdict maps: a key to a jump or goto, looked up by a rule (`... vmap @name`). Two key
//! kinds: a Service's `ipv4_addr . inet_proto . inet_service` (kube-proxy's `services` map) and
//! a plain number (what `numgen random mod N` picks an endpoint by).

use super::model::Verdict;
use std::fmt;
use std::net::Ipv4Addr;

/// What a map's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKey {
    /// `ipv4_addr . inet_proto . inet_service`: 12 bytes, each part padded to 4.
    AddrProtoPort,
    /// A 32-bit number in host order (`numgen`'s output).
    Index,
}

impl MapKey {
    /// nft's type number for the key (concatenations: 6 bits per part, first part highest).
    pub fn type_id(self) -> u32 {
        const IPV4_ADDR: u32 = 7;
        const INET_PROTO: u32 = 12;
        const INET_SERVICE: u32 = 13;
        const INTEGER: u32 = 4;
        match self {
            MapKey::AddrProtoPort => ((IPV4_ADDR << 6 | INET_PROTO) << 6) | INET_SERVICE,
            MapKey::Index => INTEGER,
        }
    }

    pub fn key_len(self) -> u32 {
        match self {
            MapKey::AddrProtoPort => 12,
            MapKey::Index => 4,
        }
    }

    pub fn from_type_id(id: u32) -> Option<MapKey> {
        [MapKey::AddrProtoPort, MapKey::Index]
            .into_iter()
            .find(|k| k.type_id() == id)
    }
}

/// A named verdict map; elements kept sorted by key, so equal maps compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    pub name: String,
    pub key: MapKey,
    elements: Vec<(Vec<u8>, Verdict)>,
}

impl Map {
    pub fn new(
        name: impl Into<String>,
        key: MapKey,
        elements: impl IntoIterator<Item = (Vec<u8>, Verdict)>,
    ) -> Map {
        let mut elements: Vec<_> = elements.into_iter().collect();
        elements.sort_by(|a, b| a.0.cmp(&b.0));
        Map {
            name: name.into(),
            key,
            elements,
        }
    }

    pub fn elements(&self) -> &[(Vec<u8>, Verdict)] {
        &self.elements
    }

    /// The key of `ip . proto . port` (address and port in network order).
    pub fn service_key(ip: Ipv4Addr, proto: u8, port: u16) -> Vec<u8> {
        let mut k = ip.octets().to_vec();
        k.extend([proto, 0, 0, 0]);
        k.extend(port.to_be_bytes());
        k.extend([0, 0]);
        k
    }

    /// The key of number `i` (host order, as numgen writes it).
    pub fn index_key(i: u32) -> Vec<u8> {
        i.to_ne_bytes().to_vec()
    }

    /// A key in nft's words: `10.233.0.1 . tcp . 443`, or `2`.
    pub fn show_key(&self, k: &[u8]) -> String {
        match (self.key, k) {
            (MapKey::AddrProtoPort, [a, b, c, d, proto, _, _, _, p1, p2, _, _]) => format!(
                "{} . {} . {}",
                Ipv4Addr::new(*a, *b, *c, *d),
                proto_name(*proto),
                u16::from_be_bytes([*p1, *p2])
            ),
            (MapKey::Index, [a, b, c, d]) => u32::from_ne_bytes([*a, *b, *c, *d]).to_string(),
            _ => format!("{k:02x?}"),
        }
    }
}

/// `tcp`, `udp`, `sctp`, or the number.
pub fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// The map in nft's layout.
impl fmt::Display for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match self.key {
            MapKey::AddrProtoPort => "ipv4_addr . inet_proto . inet_service",
            MapKey::Index => "integer",
        };
        writeln!(f, "\tmap {} {{", self.name)?;
        writeln!(f, "\t\ttype {key} : verdict")?;
        if !self.elements.is_empty() {
            let elems: Vec<String> = self
                .elements
                .iter()
                .map(|(k, v)| format!("{} : {v}", self.show_key(k)))
                .collect();
            writeln!(f, "\t\telements = {{ {} }}", elems.join(", "))?;
        }
        writeln!(f, "\t}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_laid_out_as_the_kernel_reads_registers() {
        let k = Map::service_key(Ipv4Addr::new(10, 233, 0, 1), 6, 443);
        assert_eq!(k, [10, 233, 0, 1, 6, 0, 0, 0, 1, 0xbb, 0, 0]);
        assert_eq!(MapKey::AddrProtoPort.type_id(), 0x730d);
        let m = Map::new(
            "services",
            MapKey::AddrProtoPort,
            [(k, Verdict::Goto("svc-a".into()))],
        );
        assert!(m
            .to_string()
            .contains("elements = { 10.233.0.1 . tcp . 443 : goto svc-a }"));
        let i = Map::new(
            "eps",
            MapKey::Index,
            [
                (Map::index_key(1), Verdict::Jump("b".into())),
                (Map::index_key(0), Verdict::Jump("a".into())),
            ],
        );
        assert_eq!(i.show_key(&i.elements()[0].0), "0", "sorted by key");
    }
}
