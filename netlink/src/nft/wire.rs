//! The netlink form of [`Table`]: the messages that create it (for one batch) and the decoding
//! of what the kernel lists back. Expressions netlink-packet-netfilter types (payload, meta,
//! cmp, lookup, immediate) use its types; the rest (fib, counter, masq) are raw attributes.

use super::model::{
    BaseChain, Chain, ChainKind, Expr, Field, HookPoint, Rule, Set, Table, Verdict,
};
use netlink_packet_core::{DefaultNla, Nla, NlasIterator};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, Cmp, DataAttribute, ExpressionAttribute, Expressions, Hook, HookNumber,
    Immediate, InetHookNumber, ListAttribute, Lookup, Meta, MetaKey, NfTablesMessage, Operator,
    Payload, Register, RuleAttribute, RuleMessage, SetAttribute, SetElementAttribute,
    SetElementFlags, SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute,
    TableMessage, VerdictAttribute,
};
use netlink_packet_netfilter::nftables::{ChainMessage, Verdict as NfVerdict};

const PAYLOAD_NETWORK_HEADER: u32 = 1;
/// `TYPE_IPADDR` in nft's datatype numbering, what `type ipv4_addr` stores.
const KEY_TYPE_IPV4: u32 = 7;
const LOOKUP_F_INV: u32 = 1;
const FIB_DREG: u16 = 1;
const FIB_RESULT: u16 = 2;
const FIB_FLAGS: u16 = 3;
const FIB_RESULT_ADDRTYPE: u32 = 3;
const FIB_F_SADDR: u32 = 1;
const COUNTER_BYTES: u16 = 1;
const COUNTER_PACKETS: u16 = 2;
const MASQ_FLAGS: u16 = 1;
const NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 1 << 4;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const POLICY_ACCEPT: u32 = 1;

/// Set elements per message: about 32 bytes each, well under an attribute's 64 KiB.
const ELEMENTS_PER_MESSAGE: usize = 1024;

/// The messages that create `t` from nothing: table, sets with their elements, chains, rules
/// (sets are numbered within the batch).
pub fn create(t: &Table) -> Vec<NfTablesMessage> {
    let mut out = vec![NfTablesMessage::NewTable(TableMessage {
        attributes: vec![TableAttribute::Name(t.name.clone())],
    })];
    for (i, s) in t.sets.iter().enumerate() {
        let id = i as u32 + 1;
        out.push(NfTablesMessage::NewSet(SetMessage {
            attributes: vec![
                SetAttribute::Table(t.name.clone()),
                SetAttribute::Name(s.name.clone()),
                SetAttribute::Flags(SetFlags::Interval),
                SetAttribute::KeyType(KEY_TYPE_IPV4),
                SetAttribute::KeyLen(4),
                SetAttribute::Id(id),
            ],
        }));
        // An attribute's length is 16 bits: a big set goes in several messages (as nft does).
        for elements in set_elements(s).chunks(ELEMENTS_PER_MESSAGE) {
            out.push(NfTablesMessage::NewSetElement(SetElementMessage {
                attributes: vec![
                    SetElementList::Table(t.name.clone()),
                    SetElementList::Set(s.name.clone()),
                    SetElementList::SetId(id),
                    SetElementList::Elements(elements.to_vec()),
                ],
            }));
        }
    }
    for c in &t.chains {
        let mut attributes = vec![
            ChainAttribute::Table(t.name.clone()),
            ChainAttribute::Name(c.name.clone()),
        ];
        if let Some(b) = c.base {
            attributes.push(ChainAttribute::Hook(vec![
                Hook::Number(HookNumber::Inet(hook_number(b.hook))),
                Hook::Priority(b.priority as u32),
            ]));
            attributes.push(ChainAttribute::Type(b.kind.as_str().into()));
            attributes.push(ChainAttribute::Policy(POLICY_ACCEPT));
        }
        out.push(NfTablesMessage::NewChain(ChainMessage { attributes }));
        for r in &c.rules {
            out.push(NfTablesMessage::NewRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(t.name.clone()),
                    RuleAttribute::Chain(c.name.clone()),
                    RuleAttribute::Expressions(r.exprs.iter().map(encode).collect()),
                ],
            }));
        }
    }
    out
}

/// An interval set's elements as the kernel stores them: each range's start, and its end
/// (exclusive) flagged `INTERVAL_END` unless the range runs to the last address.
fn set_elements(s: &Set) -> Vec<ListAttribute<SetElementAttribute>> {
    let mut out = Vec::new();
    for (start, end) in s.ranges() {
        out.push(ListAttribute::Element(vec![SetElementAttribute::Key(
            DataAttribute::Value((start as u32).to_be_bytes().to_vec()),
        )]));
        if end <= u32::MAX as u64 {
            out.push(ListAttribute::Element(vec![
                SetElementAttribute::Key(DataAttribute::Value((end as u32).to_be_bytes().to_vec())),
                SetElementAttribute::Flags(SetElementFlags::IntervalEnd),
            ]));
        }
    }
    out
}

fn hook_number(h: HookPoint) -> InetHookNumber {
    match h {
        HookPoint::Prerouting => InetHookNumber::PreRouting,
        HookPoint::Input => InetHookNumber::LocalIn,
        HookPoint::Forward => InetHookNumber::Forward,
        HookPoint::Output => InetHookNumber::LocalOut,
        HookPoint::Postrouting => InetHookNumber::PostRouting,
    }
}

fn raw(name: &str, attrs: Vec<(u16, Vec<u8>)>) -> ListAttribute<ExpressionAttribute> {
    Expressions::Other {
        expression_type: name.into(),
        attributes: attrs
            .into_iter()
            .map(|(k, v)| DefaultNla::new(k, v))
            .collect(),
    }
    .into()
}

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn encode(e: &Expr) -> ListAttribute<ExpressionAttribute> {
    let reg1 = Register::Reg1;
    match e {
        Expr::Load(Field::IpSaddr | Field::IpDaddr) => {
            let offset = if *e == Expr::Load(Field::IpSaddr) {
                12
            } else {
                16
            };
            Expressions::Payload(vec![
                Payload::DestinationRegister(reg1),
                Payload::Base(PAYLOAD_NETWORK_HEADER),
                Payload::Offset(offset),
                Payload::Len(4),
            ])
            .into()
        }
        Expr::Load(Field::OifName) => Expressions::Meta(vec![
            Meta::Key(MetaKey::Oifname),
            Meta::DestinationRegister(reg1),
        ])
        .into(),
        Expr::Load(Field::FibSaddrType) => raw(
            "fib",
            vec![
                (FIB_DREG, be32(1)),
                (FIB_RESULT, be32(FIB_RESULT_ADDRTYPE)),
                (FIB_FLAGS, be32(FIB_F_SADDR)),
            ],
        ),
        Expr::Cmp { eq, data } => Expressions::Cmp(vec![
            Cmp::SourceRegister(reg1),
            Cmp::Op(if *eq {
                Operator::Equal
            } else {
                Operator::NotEqual
            }),
            Cmp::Data(DataAttribute::Value(data.clone())),
        ])
        .into(),
        Expr::Lookup { set, invert } => Expressions::Lookup(vec![
            Lookup::Set(set.clone()),
            Lookup::SourceRegister(reg1),
            Lookup::Flags(if *invert { LOOKUP_F_INV } else { 0 }),
        ])
        .into(),
        Expr::Counter { .. } => raw("counter", vec![]),
        Expr::Masquerade { fully_random } => raw(
            "masq",
            if *fully_random {
                vec![(MASQ_FLAGS, be32(NAT_RANGE_PROTO_RANDOM_FULLY))]
            } else {
                vec![]
            },
        ),
        Expr::Verdict(v) => Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::Verdict),
            Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(
                match v {
                    Verdict::Accept => NfVerdict::Other(NF_ACCEPT),
                    Verdict::Drop => NfVerdict::Other(NF_DROP),
                    Verdict::Return => NfVerdict::Return,
                },
            )])),
        ])
        .into(),
        Expr::Unknown(name) => raw(name, vec![]),
    }
}

fn bytes(nla: &DefaultNla) -> Vec<u8> {
    let mut v = vec![0; nla.value_len()];
    nla.emit_value(&mut v);
    v
}

fn attr(attrs: &[DefaultNla], kind: u16) -> Option<Vec<u8>> {
    attrs.iter().find(|a| a.kind() & 0x3fff == kind).map(bytes)
}

fn u32_of(v: Option<Vec<u8>>) -> Option<u32> {
    Some(u32::from_be_bytes(v?.try_into().ok()?))
}

fn u64_of(v: Option<Vec<u8>>) -> Option<u64> {
    Some(u64::from_be_bytes(v?.try_into().ok()?))
}

/// One expression as the kernel lists it; anything podnet does not write becomes
/// [`Expr::Unknown`], so a rule someone changed by hand never compares equal to a wanted one.
pub fn decode(l: &ListAttribute<ExpressionAttribute>) -> Expr {
    let ListAttribute::Element(attrs) = l else {
        return Expr::Unknown("?".into());
    };
    let name = attrs.iter().find_map(|a| match a {
        ExpressionAttribute::Name(n) => Some(n.clone()),
        _ => None,
    });
    let data = attrs.iter().find_map(|a| match a {
        ExpressionAttribute::Data(d) => Some(d),
        _ => None,
    });
    let unknown = || Expr::Unknown(name.clone().unwrap_or_else(|| "?".into()));
    let Some(data) = data else {
        return unknown();
    };
    let reg1 = Register::Reg1;
    match data {
        Expressions::Payload(p) => {
            let has = |x: &Payload| p.contains(x);
            let common = has(&Payload::DestinationRegister(reg1))
                && has(&Payload::Base(PAYLOAD_NETWORK_HEADER))
                && has(&Payload::Len(4))
                && p.len() == 4;
            match () {
                _ if common && has(&Payload::Offset(12)) => Expr::Load(Field::IpSaddr),
                _ if common && has(&Payload::Offset(16)) => Expr::Load(Field::IpDaddr),
                _ => unknown(),
            }
        }
        Expressions::Meta(m)
            if m.len() == 2
                && m.contains(&Meta::Key(MetaKey::Oifname))
                && m.contains(&Meta::DestinationRegister(reg1)) =>
        {
            Expr::Load(Field::OifName)
        }
        Expressions::Cmp(c) if c.len() == 3 && c.contains(&Cmp::SourceRegister(reg1)) => {
            let eq = if c.contains(&Cmp::Op(Operator::Equal)) {
                true
            } else if c.contains(&Cmp::Op(Operator::NotEqual)) {
                false
            } else {
                return unknown();
            };
            match c.iter().find_map(|a| match a {
                Cmp::Data(DataAttribute::Value(v)) => Some(v.clone()),
                _ => None,
            }) {
                Some(data) => Expr::Cmp { eq, data },
                None => unknown(),
            }
        }
        Expressions::Lookup(l) if l.contains(&Lookup::SourceRegister(reg1)) => {
            let mut set = None;
            let mut flags = 0;
            for a in l {
                match a {
                    Lookup::Set(s) => set = Some(s.clone()),
                    Lookup::Flags(f) => flags = *f,
                    Lookup::SourceRegister(_) | Lookup::SetId(_) => {}
                    _ => return unknown(),
                }
            }
            match set {
                Some(set) if flags & !LOOKUP_F_INV == 0 => Expr::Lookup {
                    set,
                    invert: flags & LOOKUP_F_INV != 0,
                },
                _ => unknown(),
            }
        }
        Expressions::Immediate(i)
            if i.contains(&Immediate::DestinationRegister(Register::Verdict)) =>
        {
            let code = i.iter().find_map(|a| match a {
                Immediate::Data(DataAttribute::Verdict(v)) if v.len() == 1 => match v[0] {
                    VerdictAttribute::Code(c) => Some(c),
                    _ => None,
                },
                _ => None,
            });
            match code {
                Some(NfVerdict::Other(NF_ACCEPT)) => Expr::Verdict(Verdict::Accept),
                Some(NfVerdict::Other(NF_DROP)) => Expr::Verdict(Verdict::Drop),
                Some(NfVerdict::Return) => Expr::Verdict(Verdict::Return),
                _ => unknown(),
            }
        }
        Expressions::Other {
            expression_type,
            attributes,
        } => match expression_type.as_str() {
            "fib"
                if attributes.len() == 3
                    && u32_of(attr(attributes, FIB_DREG)) == Some(1)
                    && u32_of(attr(attributes, FIB_RESULT)) == Some(FIB_RESULT_ADDRTYPE)
                    && u32_of(attr(attributes, FIB_FLAGS)) == Some(FIB_F_SADDR) =>
            {
                Expr::Load(Field::FibSaddrType)
            }
            "counter" => Expr::Counter {
                packets: u64_of(attr(attributes, COUNTER_PACKETS)).unwrap_or(0),
                bytes: u64_of(attr(attributes, COUNTER_BYTES)).unwrap_or(0),
            },
            "masq" => {
                let flags = u32_of(attr(attributes, MASQ_FLAGS)).unwrap_or(0);
                if attributes.len() > 1 || flags & !NAT_RANGE_PROTO_RANDOM_FULLY != 0 {
                    unknown()
                } else {
                    Expr::Masquerade {
                        fully_random: flags != 0,
                    }
                }
            }
            _ => unknown(),
        },
        _ => unknown(),
    }
}

/// A chain's base-chain settings from its listing (`None` for a regular chain).
pub fn decode_base(attrs: &[ChainAttribute]) -> Option<BaseChain> {
    let mut hook = None;
    let mut priority = 0;
    let mut kind = ChainKind::Filter;
    for a in attrs {
        match a {
            ChainAttribute::Hook(h) => {
                for x in h {
                    match x {
                        Hook::Number(HookNumber::Inet(n)) => {
                            hook = match n {
                                InetHookNumber::PreRouting => Some(HookPoint::Prerouting),
                                InetHookNumber::LocalIn => Some(HookPoint::Input),
                                InetHookNumber::Forward => Some(HookPoint::Forward),
                                InetHookNumber::LocalOut => Some(HookPoint::Output),
                                InetHookNumber::PostRouting => Some(HookPoint::Postrouting),
                                _ => None,
                            }
                        }
                        Hook::Priority(p) => priority = *p as i32,
                        _ => {}
                    }
                }
            }
            ChainAttribute::Type(t) if t == "nat" => kind = ChainKind::Nat,
            _ => {}
        }
    }
    Some(BaseChain {
        kind,
        hook: hook?,
        priority,
    })
}

/// A rule's chain and expressions from its listing.
pub fn decode_rule(attrs: &[RuleAttribute]) -> Option<(String, Rule)> {
    let mut chain = None;
    let mut exprs = Vec::new();
    for a in attrs {
        match a {
            RuleAttribute::Chain(c) => chain = Some(c.clone()),
            RuleAttribute::Expressions(e) => exprs = e.iter().map(decode).collect(),
            _ => {}
        }
    }
    Some((chain?, Rule { exprs }))
}

/// An interval set's ranges from its listed elements (start and end keys, in any order).
pub fn decode_ranges(elements: &[(u32, bool)]) -> Vec<(u64, u64)> {
    let mut sorted = elements.to_vec();
    sorted.sort();
    let mut out = Vec::new();
    let mut open: Option<u64> = None;
    for (key, end) in sorted {
        match (end, open) {
            (false, None) => open = Some(key as u64),
            (false, Some(_)) => {}
            (true, Some(s)) => {
                out.push((s, key as u64));
                open = None;
            }
            (true, None) => {}
        }
    }
    if let Some(s) = open {
        out.push((s, 1u64 << 32));
    }
    out
}

/// Element keys and their end flags from the attributes of one set-element listing (after
/// the nfgenmsg header). Decoded from the raw attributes with netlink-packet-core's iterator:
/// netlink-packet-netfilter 0.4 formats the whole element list into an error context for
/// every element it parses, which makes reading a set of n elements cost n² (a 100-pool set
/// took 60 ms to read).
pub fn element_keys(attrs: &[u8], out: &mut Vec<(u32, bool)>) {
    const LIST_ELEMENTS: u16 = 3; // NFTA_SET_ELEM_LIST_ELEMENTS
    const ELEMENT: u16 = 1; // NFTA_LIST_ELEM
    const KEY: u16 = 1; // NFTA_SET_ELEM_KEY
    const FLAGS: u16 = 3; // NFTA_SET_ELEM_FLAGS
    const VALUE: u16 = 1; // NFTA_DATA_VALUE
    const INTERVAL_END: u32 = 1; // NFT_SET_ELEM_INTERVAL_END
    let nested = |buf: &[u8], kind: u16| -> Vec<Vec<u8>> {
        NlasIterator::new(buf)
            .map_while(Result::ok)
            .filter(|n| n.kind() == kind)
            .map(|n| n.value().to_vec())
            .collect()
    };
    for list in nested(attrs, LIST_ELEMENTS) {
        for elem in nested(&list, ELEMENT) {
            let key = nested(&elem, KEY)
                .first()
                .and_then(|k| nested(k, VALUE).into_iter().next())
                .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
                .map(u32::from_be_bytes);
            let end = nested(&elem, FLAGS)
                .first()
                .and_then(|f| <[u8; 4]>::try_from(f.as_slice()).ok())
                .is_some_and(|f| u32::from_be_bytes(f) & INTERVAL_END != 0);
            if let Some(k) = key {
                out.push((k, end));
            }
        }
    }
}

/// A chain without rules from its listing (the rules are listed separately).
pub fn decode_chain(attrs: &[ChainAttribute]) -> Option<Chain> {
    let name = attrs.iter().find_map(|a| match a {
        ChainAttribute::Name(n) => Some(n.clone()),
        _ => None,
    })?;
    Some(Chain {
        name,
        base: decode_base(attrs),
        rules: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn every_expression_reads_back_as_written() {
        let mut exprs = Vec::new();
        exprs.extend(Expr::in_set(Field::IpSaddr, "a", true));
        exprs.extend(Expr::in_set(Field::IpDaddr, "b", false));
        exprs.extend(Expr::oifname_is("tunl0"));
        exprs.extend(Expr::saddr_is_local());
        exprs.extend(Expr::addr_is(
            Field::IpSaddr,
            "10.0.0.1".parse().unwrap(),
            false,
        ));
        exprs.push(Expr::counter());
        exprs.push(Expr::Masquerade { fully_random: true });
        exprs.push(Expr::Masquerade {
            fully_random: false,
        });
        for v in [Verdict::Accept, Verdict::Drop, Verdict::Return] {
            exprs.push(Expr::Verdict(v));
        }
        for e in &exprs {
            // Through bytes, as the kernel would hand them back.
            let attr = RuleAttribute::Expressions(vec![encode(e)]);
            let mut buf = vec![0; netlink_packet_core::Emitable::buffer_len(&attr)];
            netlink_packet_core::Emitable::emit(&attr, &mut buf);
            let nla = netlink_packet_core::NlaBuffer::new(&buf[..]);
            let back: RuleAttribute = netlink_packet_core::Parseable::parse(&nla).unwrap();
            let RuleAttribute::Expressions(list) = back else {
                panic!("not expressions")
            };
            assert_eq!(&decode(&list[0]), e);
        }
    }

    #[test]
    fn a_foreign_expression_is_unknown() {
        let e = raw("notrack", vec![]);
        assert_eq!(decode(&e), Expr::Unknown("notrack".into()));
        let odd = Expressions::Payload(vec![
            Payload::DestinationRegister(Register::Reg1),
            Payload::Base(PAYLOAD_NETWORK_HEADER),
            Payload::Offset(9),
            Payload::Len(1),
        ])
        .into();
        assert_eq!(decode(&odd), Expr::Unknown("payload".into()));
    }

    #[test]
    fn interval_elements_round_trip() {
        let s = Set::new(
            "s",
            [
                "10.233.64.0/18".parse().unwrap(),
                "192.168.0.0/24".parse().unwrap(),
            ],
        );
        let wire = |s: &Set| {
            let list = [SetElementList::Elements(set_elements(s))];
            let mut buf = vec![0u8; list.as_slice().buffer_len()];
            list.as_slice().emit(&mut buf);
            buf
        };
        let mut keys = Vec::new();
        element_keys(&wire(&s), &mut keys);
        assert_eq!(keys.len(), 4);
        assert_eq!(Set::from_ranges("s", decode_ranges(&keys)), s);
        let all = Set::new("s", ["0.0.0.0/0".parse().unwrap()]);
        let mut keys = Vec::new();
        element_keys(&wire(&all), &mut keys);
        assert_eq!(keys, vec![(0, false)]);
        assert_eq!(Set::from_ranges("s", decode_ranges(&keys)), all);
    }
}
