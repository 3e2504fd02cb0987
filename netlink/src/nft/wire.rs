//! The netlink form of [`Table`]: the messages that create it (for one batch) and the decoding
//! of what the kernel lists back (tables, sets and their elements, chains, rules; the
//! expressions inside rules are [`super::expr_wire`]'s).

use super::expr_wire;
use super::model::{BaseChain, Chain, ChainKind, HookPoint, Rule, Set, Table};
use netlink_packet_core::NlasIterator;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, Hook, HookNumber, InetHookNumber, ListAttribute,
    NfTablesMessage, RuleAttribute, RuleMessage, SetAttribute, SetElementAttribute,
    SetElementFlags, SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute,
    TableMessage,
};

/// `TYPE_IPADDR` in nft's datatype numbering, what `type ipv4_addr` stores.
const KEY_TYPE_IPV4: u32 = 7;
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
                    RuleAttribute::Expressions(r.exprs.iter().map(expr_wire::encode).collect()),
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
            RuleAttribute::Expressions(e) => exprs = e.iter().map(expr_wire::decode).collect(),
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
