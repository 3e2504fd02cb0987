//! The netlink form of [`Table`]: the messages that create it (for one batch) and the decoding
//! of what the kernel lists back (tables, sets and their elements, chains, rules; the
//! expressions inside rules are [`super::expr_wire`]'s).

use super::expr_wire;
use super::map::Map;
use super::model::{BaseChain, Chain, ChainKind, HookPoint, Rule, Set, Table, Verdict};
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

/// Map elements per message: a chain name each makes them bigger than a set's.
const MAP_ELEMENTS_PER_MESSAGE: usize = 256;
const DATA_TYPE_VERDICT: u32 = 0xffff_ff00;

/// The messages that create `t` from nothing, in an order where everything exists before it
/// is named: table, sets with their elements, chains (empty), maps with their elements (they
/// name chains), then the rules (they name sets, maps and chains). Sets and maps are numbered
/// within the batch.
pub fn create(t: &Table) -> Vec<NfTablesMessage> {
    let mut out = vec![NfTablesMessage::NewTable(TableMessage {
        attributes: vec![TableAttribute::Name(t.name.clone())],
    })];
    let mut id = 0;
    for s in &t.sets {
        id += 1;
        out.extend(new_set(t, s, id));
    }
    out.extend(t.chains.iter().map(|c| new_chain(t, c)));
    for m in &t.maps {
        id += 1;
        out.push(new_map(t, m, id));
        out.extend(map_elements(t, &m.name, m.elements(), true));
    }
    for c in &t.chains {
        out.extend(new_rules(t, c));
    }
    out
}

/// The messages that turn `old` (what the kernel holds) into `new` in one batch, touching only
/// what differs: sets refilled, map elements deleted and added, chains whose rules changed
/// flushed and refilled, chains and maps no longer wanted removed, in an order where nothing
/// is removed while named and nothing named before it exists. `None` when only a whole
/// replace will do (a base chain's hook, priority or type changed, or a map's key kind).
pub fn update(old: &Table, new: &Table) -> Option<Vec<NfTablesMessage>> {
    use std::collections::{HashMap, HashSet};
    // Indexes: a table of thousands of chains is compared by name, not by scanning.
    let old_chains: HashMap<&str, &Chain> =
        old.chains.iter().map(|c| (c.name.as_str(), c)).collect();
    let new_chains: HashSet<&str> = new.chains.iter().map(|c| c.name.as_str()).collect();
    let mut out = Vec::new();
    let mut id = 0;
    for s in &new.sets {
        match old.set(&s.name) {
            None => {
                id += 1;
                out.extend(new_set(new, s, id));
            }
            Some(o) if o != s => {
                out.push(flush_elements(new, &s.name));
                out.extend(set_element_messages(new, &s.name, None, &set_elements(s)));
            }
            Some(_) => {}
        }
    }
    for c in &new.chains {
        match old_chains.get(c.name.as_str()) {
            None => out.push(new_chain(new, c)),
            Some(o) if o.base != c.base => return None,
            Some(_) => {}
        }
    }
    for m in &new.maps {
        match old.map(&m.name) {
            None => {
                id += 1;
                out.push(new_map(new, m, id));
                out.extend(map_elements(new, &m.name, m.elements(), true));
            }
            Some(o) if o.key != m.key => return None,
            Some(o) => {
                let was: HashSet<_> = o.elements().iter().collect();
                let is: HashSet<_> = m.elements().iter().collect();
                let gone: Vec<_> = o
                    .elements()
                    .iter()
                    .filter(|e| !is.contains(e))
                    .cloned()
                    .collect();
                let added: Vec<_> = m
                    .elements()
                    .iter()
                    .filter(|e| !was.contains(e))
                    .cloned()
                    .collect();
                out.extend(map_elements(new, &m.name, &gone, false));
                out.extend(map_elements(new, &m.name, &added, true));
            }
        }
    }
    for m in &old.maps {
        if new.map(&m.name).is_none() {
            // Its elements name chains that may go below: empty it first.
            out.extend(map_elements(old, &m.name, m.elements(), false));
        }
    }
    for c in &new.chains {
        match old_chains.get(c.name.as_str()) {
            Some(o) if o.rules == c.rules => {}
            Some(_) => {
                out.push(flush_chain(new, &c.name));
                out.extend(new_rules(new, c));
            }
            None => out.extend(new_rules(new, c)),
        }
    }
    let removed: Vec<&Chain> = old
        .chains
        .iter()
        .filter(|c| !new_chains.contains(c.name.as_str()))
        .collect();
    // Rules of removed chains may jump to one another: flush them all before deleting any.
    out.extend(removed.iter().map(|c| flush_chain(old, &c.name)));
    out.extend(removed.iter().map(|c| {
        NfTablesMessage::DeleteChain(ChainMessage {
            attributes: vec![
                ChainAttribute::Table(old.name.clone()),
                ChainAttribute::Name(c.name.clone()),
            ],
        })
    }));
    let names = |t: &Table| -> Vec<String> {
        t.sets
            .iter()
            .map(|s| s.name.clone())
            .chain(t.maps.iter().map(|m| m.name.clone()))
            .collect()
    };
    let wanted = names(new);
    for gone in names(old).into_iter().filter(|n| !wanted.contains(n)) {
        out.push(NfTablesMessage::DeleteSet(SetMessage {
            attributes: vec![
                SetAttribute::Table(old.name.clone()),
                SetAttribute::Name(gone),
            ],
        }));
    }
    Some(out)
}

fn set_message(t: &Table, name: &str, attributes: Vec<SetAttribute>) -> NfTablesMessage {
    let mut a = vec![
        SetAttribute::Table(t.name.clone()),
        SetAttribute::Name(name.into()),
    ];
    a.extend(attributes);
    NfTablesMessage::NewSet(SetMessage { attributes: a })
}

/// A set and its elements. An attribute's length is 16 bits: a big set goes in several
/// messages (as nft does).
fn new_set(t: &Table, s: &Set, id: u32) -> Vec<NfTablesMessage> {
    let mut out = vec![set_message(
        t,
        &s.name,
        vec![
            SetAttribute::Flags(SetFlags::Interval),
            SetAttribute::KeyType(KEY_TYPE_IPV4),
            SetAttribute::KeyLen(4),
            SetAttribute::Id(id),
        ],
    )];
    out.extend(set_element_messages(t, &s.name, Some(id), &set_elements(s)));
    out
}

fn new_map(t: &Table, m: &Map, id: u32) -> NfTablesMessage {
    set_message(
        t,
        &m.name,
        vec![
            SetAttribute::Flags(SetFlags::Map),
            SetAttribute::KeyType(m.key.type_id()),
            SetAttribute::KeyLen(m.key.key_len()),
            SetAttribute::DataType(DATA_TYPE_VERDICT),
            SetAttribute::DataLen(0),
            SetAttribute::Id(id),
        ],
    )
}

/// Elements added to (or, `add` false, deleted from) a set or map, in chunks.
fn set_element_messages(
    t: &Table,
    name: &str,
    id: Option<u32>,
    elements: &[ListAttribute<SetElementAttribute>],
) -> Vec<NfTablesMessage> {
    element_chunks(t, name, id, elements, ELEMENTS_PER_MESSAGE, true)
}

fn element_chunks(
    t: &Table,
    name: &str,
    id: Option<u32>,
    elements: &[ListAttribute<SetElementAttribute>],
    per_message: usize,
    add: bool,
) -> Vec<NfTablesMessage> {
    elements
        .chunks(per_message)
        .map(|chunk| {
            let mut attributes = vec![
                SetElementList::Table(t.name.clone()),
                SetElementList::Set(name.into()),
            ];
            attributes.extend(id.map(SetElementList::SetId));
            attributes.push(SetElementList::Elements(chunk.to_vec()));
            let m = SetElementMessage { attributes };
            if add {
                NfTablesMessage::NewSetElement(m)
            } else {
                NfTablesMessage::DeleteSetElement(m)
            }
        })
        .collect()
}

/// A map's elements added (or deleted: the key is enough).
fn map_elements(
    t: &Table,
    name: &str,
    elements: &[(Vec<u8>, Verdict)],
    add: bool,
) -> Vec<NfTablesMessage> {
    let list: Vec<_> = elements
        .iter()
        .map(|(k, v)| {
            let mut attrs = vec![SetElementAttribute::Key(DataAttribute::Value(k.clone()))];
            if add {
                attrs.push(SetElementAttribute::Data(expr_wire::verdict_data(v)));
            }
            ListAttribute::Element(attrs)
        })
        .collect();
    element_chunks(t, name, None, &list, MAP_ELEMENTS_PER_MESSAGE, add)
}

/// Every element of a set deleted (a delete without elements flushes it).
fn flush_elements(t: &Table, name: &str) -> NfTablesMessage {
    NfTablesMessage::DeleteSetElement(SetElementMessage {
        attributes: vec![
            SetElementList::Table(t.name.clone()),
            SetElementList::Set(name.into()),
        ],
    })
}

fn new_chain(t: &Table, c: &Chain) -> NfTablesMessage {
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
    NfTablesMessage::NewChain(ChainMessage { attributes })
}

fn new_rules(t: &Table, c: &Chain) -> Vec<NfTablesMessage> {
    c.rules
        .iter()
        .map(|r| {
            NfTablesMessage::NewRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(t.name.clone()),
                    RuleAttribute::Chain(c.name.clone()),
                    RuleAttribute::Expressions(r.exprs.iter().map(expr_wire::encode).collect()),
                ],
            })
        })
        .collect()
}

/// Every rule of a chain deleted (a rule delete without a handle flushes the chain).
fn flush_chain(t: &Table, chain: &str) -> NfTablesMessage {
    NfTablesMessage::DeleteRule(RuleMessage {
        attributes: vec![
            RuleAttribute::Table(t.name.clone()),
            RuleAttribute::Chain(chain.into()),
        ],
    })
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

/// One element as listed: its key, whether it ends an interval, and (in a map) its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub key: Vec<u8>,
    pub end: bool,
    pub verdict: Option<Verdict>,
}

/// The elements in the attributes of one set-element listing (after the nfgenmsg header).
/// Decoded from the raw attributes with netlink-packet-core's iterator: netlink-packet-netfilter
/// 0.4 formats the whole element list into an error context for every element it parses,
/// which makes reading a set of n elements cost n² (a 100-pool set took 60 ms to read).
pub fn elements(attrs: &[u8], out: &mut Vec<Element>) {
    const LIST_ELEMENTS: u16 = 3; // NFTA_SET_ELEM_LIST_ELEMENTS
    const ELEMENT: u16 = 1; // NFTA_LIST_ELEM
    const KEY: u16 = 1; // NFTA_SET_ELEM_KEY
    const DATA: u16 = 2; // NFTA_SET_ELEM_DATA
    const FLAGS: u16 = 3; // NFTA_SET_ELEM_FLAGS
    const VALUE: u16 = 1; // NFTA_DATA_VALUE
    const VERDICT: u16 = 2; // NFTA_DATA_VERDICT
    const CODE: u16 = 1; // NFTA_VERDICT_CODE
    const CHAIN: u16 = 2; // NFTA_VERDICT_CHAIN
    const INTERVAL_END: u32 = 1; // NFT_SET_ELEM_INTERVAL_END
    let nested = |buf: &[u8], kind: u16| -> Option<Vec<u8>> {
        NlasIterator::new(buf)
            .map_while(Result::ok)
            .find(|n| n.kind() == kind)
            .map(|n| n.value().to_vec())
    };
    let all = |buf: &[u8], kind: u16| -> Vec<Vec<u8>> {
        NlasIterator::new(buf)
            .map_while(Result::ok)
            .filter(|n| n.kind() == kind)
            .map(|n| n.value().to_vec())
            .collect()
    };
    let be32 = |v: Vec<u8>| {
        <[u8; 4]>::try_from(v.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    };
    for list in all(attrs, LIST_ELEMENTS) {
        for elem in all(&list, ELEMENT) {
            let Some(key) = nested(&elem, KEY).and_then(|k| nested(&k, VALUE)) else {
                continue;
            };
            let end = nested(&elem, FLAGS)
                .and_then(be32)
                .is_some_and(|f| f & INTERVAL_END != 0);
            let verdict = nested(&elem, DATA)
                .and_then(|d| nested(&d, VERDICT))
                .and_then(|v| {
                    let code = nested(&v, CODE).and_then(be32)? as i32;
                    let chain = nested(&v, CHAIN).map(|c| {
                        String::from_utf8_lossy(c.split(|b| *b == 0).next().unwrap_or(&[]))
                            .into_owned()
                    });
                    match (code, chain) {
                        (1, None) => Some(Verdict::Accept),
                        (0, None) => Some(Verdict::Drop),
                        (-5, None) => Some(Verdict::Return),
                        (-3, Some(c)) => Some(Verdict::Jump(c)),
                        (-4, Some(c)) => Some(Verdict::Goto(c)),
                        _ => None,
                    }
                });
            out.push(Element { key, end, verdict });
        }
    }
}

/// An interval set's keys and end flags, from its listed elements.
pub fn interval_keys(elements: &[Element]) -> Vec<(u32, bool)> {
    elements
        .iter()
        .filter_map(|e| {
            let k = <[u8; 4]>::try_from(e.key.as_slice()).ok()?;
            Some((u32::from_be_bytes(k), e.end))
        })
        .collect()
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
        let mut listed = Vec::new();
        elements(&wire(&s), &mut listed);
        let keys = interval_keys(&listed);
        assert_eq!(keys.len(), 4);
        assert_eq!(Set::from_ranges("s", decode_ranges(&keys)), s);
        let all = Set::new("s", ["0.0.0.0/0".parse().unwrap()]);
        let mut listed = Vec::new();
        elements(&wire(&all), &mut listed);
        let keys = interval_keys(&listed);
        assert_eq!(keys, vec![(0, false)]);
        assert_eq!(Set::from_ranges("s", decode_ranges(&keys)), all);
    }
}
