//! The netlink form of rule expressions ([`Expr`]), one kernel expression each: encoded for
//! a batch and decoded from what the kernel lists back. Those netlink-packet-netfilter types
//! (payload, meta, cmp, lookup, immediate) use its types; the rest (fib, counter, masq) are
//! raw attributes.

use super::model::{Expr, Field, Verdict};
use netlink_packet_core::{DefaultNla, Nla};
use netlink_packet_netfilter::nftables::Verdict as NfVerdict;
use netlink_packet_netfilter::nftables::{
    Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute, Lookup, Meta,
    MetaKey, Operator, Payload, Register, VerdictAttribute,
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

pub fn encode(e: &Expr) -> ListAttribute<ExpressionAttribute> {
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
}
