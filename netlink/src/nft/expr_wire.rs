//! The netlink form of rule expressions ([`Expr`]), one kernel expression each: encoded for
//! a batch and decoded from what the kernel lists back. Those netlink-packet-netfilter types
//! (payload, meta, cmp, lookup, immediate) use its types; the rest (fib, counter, masq) are
//! raw attributes.

use super::model::{Expr, Field, Verdict};
use netlink_packet_core::{DefaultNla, Nla};
use netlink_packet_netfilter::nftables::Verdict as NfVerdict;
use netlink_packet_netfilter::nftables::{
    Bitwise, Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute,
    Lookup, Meta, MetaKey, Operator, Payload, Register, VerdictAttribute,
};

const PAYLOAD_NETWORK_HEADER: u32 = 1;
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
const PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NG_DREG: u16 = 1;
const NG_MODULUS: u16 = 2;
const NG_TYPE: u16 = 3;
const NG_OFFSET: u16 = 4;
const NG_RANDOM: u32 = 1;
const NAT_TYPE: u16 = 1;
const NAT_FAMILY: u16 = 2;
const NAT_REG_ADDR_MIN: u16 = 3;
const NAT_REG_ADDR_MAX: u16 = 4;
const NAT_REG_PROTO_MIN: u16 = 5;
const NAT_REG_PROTO_MAX: u16 = 6;
/// The range flags the kernel sets itself for a DNAT to an address and port: map IPs, proto
/// specified.
const NAT_RANGE_DERIVED: u32 = 1 | 2;
const NAT_FLAGS: u16 = 7;
const NAT_DNAT: u32 = 1;
const NFPROTO_IPV4: u32 = 2;
const REJECT_TYPE: u16 = 1;
const REJECT_ICMP_CODE: u16 = 2;
const REJECT_ICMP_UNREACH: u32 = 0;
const ICMP_PORT_UNREACH: u8 = 3;

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

/// Where a field comes from: a packet payload (base, offset, length) or a meta key.
enum Source {
    Payload(u32, u32, u32),
    Meta(MetaKey),
    Fib,
}

fn source(f: Field) -> Source {
    match f {
        Field::IpSaddr => Source::Payload(PAYLOAD_NETWORK_HEADER, 12, 4),
        Field::IpDaddr => Source::Payload(PAYLOAD_NETWORK_HEADER, 16, 4),
        Field::ThDport => Source::Payload(PAYLOAD_TRANSPORT_HEADER, 2, 2),
        Field::OifName => Source::Meta(MetaKey::Oifname),
        Field::L4Proto => Source::Meta(MetaKey::L4Proto),
        Field::Mark => Source::Meta(MetaKey::Mark),
        Field::FibSaddrType => Source::Fib,
    }
}

const FIELDS: [Field; 7] = [
    Field::IpSaddr,
    Field::IpDaddr,
    Field::ThDport,
    Field::OifName,
    Field::L4Proto,
    Field::Mark,
    Field::FibSaddrType,
];

fn load(f: Field, reg: u32) -> ListAttribute<ExpressionAttribute> {
    match source(f) {
        Source::Payload(base, offset, len) => Expressions::Payload(vec![
            Payload::DestinationRegister(Register::from(reg)),
            Payload::Base(base),
            Payload::Offset(offset),
            Payload::Len(len),
        ])
        .into(),
        Source::Meta(key) => Expressions::Meta(vec![
            Meta::Key(key),
            Meta::DestinationRegister(Register::from(reg)),
        ])
        .into(),
        Source::Fib => raw(
            "fib",
            vec![
                (FIB_DREG, be32(reg)),
                (FIB_RESULT, be32(FIB_RESULT_ADDRTYPE)),
                (FIB_FLAGS, be32(FIB_F_SADDR)),
            ],
        ),
    }
}

/// A verdict as data (an immediate's, or a map element's).
pub fn verdict_data(v: &Verdict) -> DataAttribute {
    let (code, chain) = match v {
        Verdict::Accept => (NfVerdict::Other(NF_ACCEPT), None),
        Verdict::Drop => (NfVerdict::Other(NF_DROP), None),
        Verdict::Return => (NfVerdict::Return, None),
        Verdict::Jump(c) => (NfVerdict::Jump, Some(c)),
        Verdict::Goto(c) => (NfVerdict::Goto, Some(c)),
    };
    let mut attrs = vec![VerdictAttribute::Code(code)];
    attrs.extend(chain.map(|c| VerdictAttribute::Chain(c.clone())));
    DataAttribute::Verdict(attrs)
}

/// A verdict from its listed attributes (code, and chain for jump and goto).
pub fn decode_verdict(v: &[VerdictAttribute]) -> Option<Verdict> {
    let code = v.iter().find_map(|a| match a {
        VerdictAttribute::Code(c) => Some(*c),
        _ => None,
    })?;
    let chain = v.iter().find_map(|a| match a {
        VerdictAttribute::Chain(c) => Some(c.clone()),
        _ => None,
    });
    match (code, chain) {
        (NfVerdict::Other(NF_ACCEPT), None) => Some(Verdict::Accept),
        (NfVerdict::Other(NF_DROP), None) => Some(Verdict::Drop),
        (NfVerdict::Return, None) => Some(Verdict::Return),
        (NfVerdict::Jump, Some(c)) => Some(Verdict::Jump(c)),
        (NfVerdict::Goto, Some(c)) => Some(Verdict::Goto(c)),
        _ => None,
    }
}

pub fn encode(e: &Expr) -> ListAttribute<ExpressionAttribute> {
    let reg1 = Register::Reg1;
    match e {
        Expr::Load(f) => load(*f, 1),
        Expr::LoadAt { field, reg } => load(*field, *reg),
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
        Expr::Vmap { map } => Expressions::Lookup(vec![
            Lookup::Set(map.clone()),
            Lookup::SourceRegister(reg1),
            Lookup::DestinationRegister(Register::Verdict),
        ])
        .into(),
        Expr::Numgen { modulus } => raw(
            "numgen",
            vec![
                (NG_DREG, be32(1)),
                (NG_MODULUS, be32(*modulus)),
                (NG_TYPE, be32(NG_RANDOM)),
            ],
        ),
        Expr::Bitwise { mask, xor } => Expressions::Bitwise(vec![
            Bitwise::SourceRegister(reg1),
            Bitwise::DestinationRegister(reg1),
            Bitwise::Length(4),
            Bitwise::Mask(DataAttribute::Value(mask.to_ne_bytes().to_vec())),
            Bitwise::Xor(DataAttribute::Value(xor.to_ne_bytes().to_vec())),
        ])
        .into(),
        Expr::SetMark => {
            Expressions::Meta(vec![Meta::Key(MetaKey::Mark), Meta::SourceRegister(reg1)]).into()
        }
        Expr::Immediate { reg, data } => Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::from(*reg)),
            Immediate::Data(DataAttribute::Value(data.clone())),
        ])
        .into(),
        Expr::Dnat => raw(
            "nat",
            vec![
                (NAT_TYPE, be32(NAT_DNAT)),
                (NAT_FAMILY, be32(NFPROTO_IPV4)),
                (NAT_REG_ADDR_MIN, be32(1)),
                (NAT_REG_PROTO_MIN, be32(2)),
            ],
        ),
        Expr::Reject => raw(
            "reject",
            vec![
                (REJECT_TYPE, be32(REJECT_ICMP_UNREACH)),
                (REJECT_ICMP_CODE, vec![ICMP_PORT_UNREACH]),
            ],
        ),
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
            Immediate::Data(verdict_data(v)),
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

/// A load into register `reg`: `Load` for register 1, `LoadAt` otherwise.
fn loaded(field: Field, reg: u32) -> Expr {
    if reg == 1 {
        Expr::Load(field)
    } else {
        Expr::LoadAt { field, reg }
    }
}

fn value(d: &DataAttribute) -> Option<Vec<u8>> {
    match d {
        DataAttribute::Value(v) => Some(v.clone()),
        _ => None,
    }
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
        Expressions::Payload(p) if p.len() == 4 => {
            let dreg = p.iter().find_map(|a| match a {
                Payload::DestinationRegister(r) => Some(u32::from(*r)),
                _ => None,
            });
            let found = FIELDS.into_iter().find(|f| match source(*f) {
                Source::Payload(base, offset, len) => {
                    p.contains(&Payload::Base(base))
                        && p.contains(&Payload::Offset(offset))
                        && p.contains(&Payload::Len(len))
                }
                _ => false,
            });
            match (found, dreg) {
                (Some(f), Some(r)) => loaded(f, r),
                _ => unknown(),
            }
        }
        Expressions::Meta(m) if m.len() == 2 => {
            let key = m.iter().find_map(|a| match a {
                Meta::Key(k) => Some(k),
                _ => None,
            });
            let field = FIELDS
                .into_iter()
                .find(|f| matches!(source(*f), Source::Meta(k) if Some(&k) == key));
            let dreg = m.iter().find_map(|a| match a {
                Meta::DestinationRegister(r) => Some(u32::from(*r)),
                _ => None,
            });
            match (field, dreg) {
                (Some(f), Some(r)) => loaded(f, r),
                (Some(Field::Mark), None) if m.contains(&Meta::SourceRegister(reg1)) => {
                    Expr::SetMark
                }
                _ => unknown(),
            }
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
                Cmp::Data(d) => value(d),
                _ => None,
            }) {
                Some(data) => Expr::Cmp { eq, data },
                None => unknown(),
            }
        }
        Expressions::Lookup(l) if l.contains(&Lookup::SourceRegister(reg1)) => {
            let mut set = None;
            let mut flags = 0;
            let mut verdict = false;
            for a in l {
                match a {
                    Lookup::Set(s) => set = Some(s.clone()),
                    Lookup::Flags(f) => flags = *f,
                    Lookup::DestinationRegister(Register::Verdict) => verdict = true,
                    Lookup::SourceRegister(_) | Lookup::SetId(_) => {}
                    _ => return unknown(),
                }
            }
            match set {
                Some(map) if verdict && flags == 0 => Expr::Vmap { map },
                Some(set) if !verdict && flags & !LOOKUP_F_INV == 0 => Expr::Lookup {
                    set,
                    invert: flags & LOOKUP_F_INV != 0,
                },
                _ => unknown(),
            }
        }
        // The kernel lists the operation too (0, mask and xor).
        Expressions::Bitwise(b)
            if (b.len() == 5 || (b.len() == 6 && b.contains(&Bitwise::Op(0))))
                && b.contains(&Bitwise::SourceRegister(reg1))
                && b.contains(&Bitwise::DestinationRegister(reg1))
                && b.contains(&Bitwise::Length(4)) =>
        {
            let word = |d: &DataAttribute| {
                value(d)
                    .and_then(|v| <[u8; 4]>::try_from(v).ok())
                    .map(u32::from_ne_bytes)
            };
            let mask = b.iter().find_map(|a| match a {
                Bitwise::Mask(d) => word(d),
                _ => None,
            });
            let xor = b.iter().find_map(|a| match a {
                Bitwise::Xor(d) => word(d),
                _ => None,
            });
            match (mask, xor) {
                (Some(mask), Some(xor)) => Expr::Bitwise { mask, xor },
                _ => unknown(),
            }
        }
        Expressions::Immediate(i) if i.len() == 2 => {
            let dreg = i.iter().find_map(|a| match a {
                Immediate::DestinationRegister(r) => Some(u32::from(*r)),
                _ => None,
            });
            let data = i.iter().find_map(|a| match a {
                Immediate::Data(d) => Some(d),
                _ => None,
            });
            match (dreg, data) {
                (Some(0), Some(DataAttribute::Verdict(v))) => {
                    decode_verdict(v).map_or_else(unknown, Expr::Verdict)
                }
                (Some(reg), Some(DataAttribute::Value(data))) if reg != 0 => Expr::Immediate {
                    reg,
                    data: data.clone(),
                },
                _ => unknown(),
            }
        }
        Expressions::Other {
            expression_type,
            attributes,
        } => match expression_type.as_str() {
            "fib"
                if attributes.len() == 3
                    && u32_of(attr(attributes, FIB_RESULT)) == Some(FIB_RESULT_ADDRTYPE)
                    && u32_of(attr(attributes, FIB_FLAGS)) == Some(FIB_F_SADDR) =>
            {
                u32_of(attr(attributes, FIB_DREG))
                    .map_or_else(unknown, |r| loaded(Field::FibSaddrType, r))
            }
            // The kernel lists the offset too (0).
            "numgen"
                if (attributes.len() == 3
                    || (attributes.len() == 4
                        && u32_of(attr(attributes, NG_OFFSET)) == Some(0)))
                    && u32_of(attr(attributes, NG_DREG)) == Some(1)
                    && u32_of(attr(attributes, NG_TYPE)) == Some(NG_RANDOM) =>
            {
                u32_of(attr(attributes, NG_MODULUS))
                    .map_or_else(unknown, |modulus| Expr::Numgen { modulus })
            }
            "nat"
                if u32_of(attr(attributes, NAT_TYPE)) == Some(NAT_DNAT)
                    && u32_of(attr(attributes, NAT_FAMILY)) == Some(NFPROTO_IPV4)
                    && u32_of(attr(attributes, NAT_REG_ADDR_MIN)) == Some(1)
                    && u32_of(attr(attributes, NAT_REG_PROTO_MIN)) == Some(2)
                    // The kernel lists the maxima (the minima's registers) and the flags it
                    // derived (map IPs, proto specified) too.
                    && [NAT_REG_ADDR_MAX, NAT_REG_PROTO_MAX].iter().all(|k| {
                        matches!(u32_of(attr(attributes, *k)), None | Some(1) | Some(2))
                    })
                    && u32_of(attr(attributes, NAT_FLAGS)).unwrap_or(0) & !NAT_RANGE_DERIVED == 0
                    && attributes.iter().all(|a| {
                        [
                            NAT_TYPE,
                            NAT_FAMILY,
                            NAT_REG_ADDR_MIN,
                            NAT_REG_ADDR_MAX,
                            NAT_REG_PROTO_MIN,
                            NAT_REG_PROTO_MAX,
                            NAT_FLAGS,
                        ]
                        .contains(&(a.kind() & 0x3fff))
                    }) =>
            {
                Expr::Dnat
            }
            "reject"
                if attributes.len() == 2
                    && u32_of(attr(attributes, REJECT_TYPE)) == Some(REJECT_ICMP_UNREACH)
                    && attr(attributes, REJECT_ICMP_CODE) == Some(vec![ICMP_PORT_UNREACH]) =>
            {
                Expr::Reject
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

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_netfilter::nftables::RuleAttribute;

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
        exprs.extend(Expr::service_dispatch("services"));
        exprs.extend(Expr::pick_random(3, "eps"));
        exprs.extend(Expr::dnat_to(17, "10.0.0.2".parse().unwrap(), 53));
        exprs.extend(Expr::mark_set(0x4000));
        exprs.extend(Expr::mark_flip(0x4000));
        exprs.extend(Expr::mark_has(0x4000, true));
        exprs.push(Expr::Reject);
        exprs.push(Expr::LoadAt {
            field: Field::FibSaddrType,
            reg: 9,
        });
        for v in [
            Verdict::Accept,
            Verdict::Drop,
            Verdict::Return,
            Verdict::Jump("a".into()),
            Verdict::Goto("b".into()),
        ] {
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
}
