//! A synchronous NETLINK_NETFILTER socket speaking nf_tables: whole-table replacement in one
//! transaction, a dry run of the same batch, and reading a table back.

use super::map::{Map, MapKey};
use super::model::{Set, Table, Verdict};
use super::wire;
use crate::{Error, Result};
use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, GenAttribute, GenMessage, NfTablesMessage, RuleMessage,
    SetAttribute, SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute,
    TableMessage,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use std::os::fd::AsRawFd;

const NFNL_SUBSYS_NFTABLES: u16 = 10;

/// An nf_tables socket in the namespace of the thread that opened it.
pub struct Nftables {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
    /// The socket buffer sizes set so far (option -> bytes).
    sized: std::collections::HashMap<libc::c_int, usize>,
}

/// Whether a batch is committed or only checked by the kernel and thrown away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    Yes,
    DryRun,
}

impl Nftables {
    pub fn open() -> Result<Nftables> {
        let socket = open_socket()?;
        let _ = socket.set_ext_ack(true);
        // Acks without a copy of the request: a big batch's answers fit the receive buffer.
        let _ = socket.set_cap_ack(true);
        Ok(Nftables {
            socket,
            seq: 0,
            buf: vec![0; 256 * 1024],
            sized: Default::default(),
        })
    }

    /// Makes table `ip <t.name>` exactly `t` in one transaction: it is created if missing,
    /// else deleted and made again, so nobody ever sees half of it.
    pub fn replace(&mut self, t: &Table) -> Result<()> {
        self.batch(t, Commit::Yes)
    }

    /// Sends the batch [`Nftables::replace`] would send, and has the kernel check it and throw
    /// it away (what `nft --check` does): an error names what this kernel cannot do.
    pub fn check(&mut self, t: &Table) -> Result<()> {
        self.batch(t, Commit::DryRun)
    }

    /// Makes the kernel's table `ip <name>` equal `want` (deleting it when `want` is `None`):
    /// reads it back and writes only when it differs, so an owner can call this on every
    /// pass.
    pub fn sync(&mut self, name: &str, want: Option<&Table>) -> Result<Synced> {
        match (want, self.read(name)?) {
            (None, None) => Ok(Synced::Unchanged),
            (None, Some(_)) => {
                self.delete(name)?;
                Ok(Synced::Deleted)
            }
            (Some(w), Some(h)) if w.clone().sorted() == h.clone().sorted() => Ok(Synced::Unchanged),
            (Some(w), _) => {
                self.replace(w)?;
                Ok(Synced::Replaced)
            }
        }
    }

    /// Turns the kernel's table from `old` (what the caller last wrote) into `new` with only
    /// the differences, in one transaction (see [`wire::update`]); a whole replace when only
    /// that will do. A kernel that no longer holds `old` refuses the batch and nothing
    /// changes: the caller then replaces the table whole.
    pub fn update(&mut self, old: &Table, new: &Table) -> Result<Synced> {
        match wire::update(old, new) {
            Some(msgs) if msgs.is_empty() => Ok(Synced::Unchanged),
            Some(msgs) => {
                let action = format!("update nftables table ip {}", new.name);
                self.transaction(&action, msgs, Commit::Yes)?;
                Ok(Synced::Replaced)
            }
            None => {
                self.replace(new)?;
                Ok(Synced::Replaced)
            }
        }
    }

    /// Deletes table `ip <name>`; false if there was none.
    pub fn delete(&mut self, name: &str) -> Result<bool> {
        let msg = NfTablesMessage::DeleteTable(TableMessage {
            attributes: vec![TableAttribute::Name(name.into())],
        });
        let action = format!("delete nftables table ip {name}");
        match self.transaction(&action, vec![msg], Commit::Yes) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn batch(&mut self, t: &Table, commit: Commit) -> Result<()> {
        let action = match commit {
            Commit::Yes => format!("replace nftables table ip {}", t.name),
            Commit::DryRun => format!("check nftables table ip {}", t.name),
        };
        // Create-if-missing, then delete, then the new content: one transaction.
        let mut msgs = vec![
            NfTablesMessage::NewTable(TableMessage {
                attributes: vec![TableAttribute::Name(t.name.clone())],
            }),
            NfTablesMessage::DeleteTable(TableMessage {
                attributes: vec![TableAttribute::Name(t.name.clone())],
            }),
        ];
        msgs.extend(wire::create(t));
        self.transaction(&action, msgs, commit)
    }

    /// Sends `msgs` as one batch (committed or only checked) and waits for every answer; the
    /// first refused message names the error.
    fn transaction(
        &mut self,
        action: &str,
        msgs: Vec<NfTablesMessage>,
        commit: Commit,
    ) -> Result<()> {
        let mut out = Vec::new();
        self.push(&mut out, control(true), 0);
        let mut pending = Vec::new();
        for m in msgs {
            let what = describe(&m);
            let flags = match m {
                NfTablesMessage::NewRule(_) => NLM_F_CREATE | NLM_F_APPEND,
                NfTablesMessage::DeleteTable(_)
                | NfTablesMessage::DeleteChain(_)
                | NfTablesMessage::DeleteRule(_)
                | NfTablesMessage::DeleteSet(_)
                | NfTablesMessage::DeleteSetElement(_) => 0,
                _ => NLM_F_CREATE,
            };
            let seq = self.push(&mut out, ipv4(m), NLM_F_ACK | flags);
            pending.push((seq, what));
        }
        if commit == Commit::Yes {
            self.push(&mut out, control(false), 0);
        }
        self.fit_buffers(out.len(), pending.len())
            .map_err(Error::io(format!(
                "{action}: size the socket for the batch"
            )))?;
        self.socket
            .send(&out, 0)
            .map_err(Error::io(format!("{action}: send the batch")))?;
        // One answer per message (an ack or its error), all sent once the batch is done.
        let mut first_error: Option<(u32, String, i32)> = None;
        let mut answered = 0;
        while answered < pending.len() {
            for reply in self.receive(action)? {
                let seq = reply.header.sequence_number;
                let Some((_, what)) = pending.iter().find(|(s, _)| *s == seq) else {
                    continue;
                };
                if let NetlinkPayload::Error(e) = reply.payload {
                    answered += 1;
                    if let Some(code) = e.code {
                        if first_error.as_ref().is_none_or(|(s, _, _)| seq < *s) {
                            first_error = Some((seq, what.clone(), -code.get()));
                        }
                    }
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some((_, what, errno)) => Err(Error::Kernel {
                action: format!("{action}: {what}"),
                errno,
            }),
        }
    }

    /// Makes room for a batch of `bytes` and the `answers` it gets back: a batch goes in one
    /// datagram, which the send buffer must hold, and every answer is queued before the first
    /// is read, which the receive buffer must hold (an overflowing one drops answers). As
    /// root (CAP_NET_ADMIN) the buffers may exceed the system's defaults (`*BUFFORCE`), as
    /// nft does for big rule sets.
    fn fit_buffers(&mut self, bytes: usize, answers: usize) -> std::io::Result<()> {
        const DEFAULT: usize = 208 * 1024;
        let send = bytes + 64 * 1024;
        // An answer is a small nlmsgerr, but the buffer counts each one's whole allocation.
        let receive = answers * 1024 + 64 * 1024;
        for (option, want) in [
            (libc::SO_SNDBUFFORCE, send),
            (libc::SO_RCVBUFFORCE, receive),
        ] {
            if want <= DEFAULT || want <= self.sized.get(&option).copied().unwrap_or(0) {
                continue;
            }
            let size = libc::c_int::try_from(want).unwrap_or(libc::c_int::MAX);
            // SAFETY: setsockopt on this socket's own descriptor with a pointer to an int that
            // lives across the call and its exact size.
            let rc = unsafe {
                libc::setsockopt(
                    self.socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            self.sized.insert(option, want);
        }
        Ok(())
    }

    /// Table `ip <name>` as the kernel holds it, or `None`. Read in several dumps, retried if
    /// the ruleset changed in between (its generation moved).
    /// A table deleted between two of the dumps fails the later one with ENOENT: that is a
    /// change like any other, and the read starts again.
    pub fn read(&mut self, name: &str) -> Result<Option<Table>> {
        for _ in 0..5 {
            let before = self.generation()?;
            let table = match self.read_once(name) {
                Err(e) if e.is_not_found() => continue,
                other => other?,
            };
            if self.generation()? == before {
                return Ok(table);
            }
        }
        self.read_once(name)
    }

    fn generation(&mut self) -> Result<u32> {
        let replies = self.request(
            "read the nftables generation",
            NfTablesMessage::GetGen(GenMessage { attributes: vec![] }),
            0,
        )?;
        Ok(replies
            .iter()
            .find_map(|m| match m {
                NfTablesMessage::NewGen(g) => g.attributes.iter().find_map(|a| match a {
                    GenAttribute::Id(id) => Some(*id),
                    _ => None,
                }),
                _ => None,
            })
            .unwrap_or(0))
    }

    fn read_once(&mut self, name: &str) -> Result<Option<Table>> {
        let action = format!("read nftables table ip {name}");
        let get = NfTablesMessage::GetTable(TableMessage {
            attributes: vec![TableAttribute::Name(name.into())],
        });
        match self.request(&action, get, 0) {
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let mut table = Table {
            name: name.into(),
            ..Table::default()
        };
        let chains = NfTablesMessage::GetChain(ChainMessage {
            attributes: vec![ChainAttribute::Table(name.into())],
        });
        for m in self.request(&action, chains, NLM_F_DUMP)? {
            if let NfTablesMessage::NewChain(c) = m {
                // The kernel does not filter chain dumps by table: skip other tables' chains.
                let ours = c
                    .attributes
                    .iter()
                    .any(|a| matches!(a, ChainAttribute::Table(t) if t == name));
                if let Some(chain) = wire::decode_chain(&c.attributes).filter(|_| ours) {
                    table.chains.push(chain);
                }
            }
        }
        let rules = NfTablesMessage::GetRule(RuleMessage {
            attributes: vec![netlink_packet_netfilter::nftables::RuleAttribute::Table(
                name.into(),
            )],
        });
        for m in self.request(&action, rules, NLM_F_DUMP)? {
            if let NfTablesMessage::NewRule(r) = m {
                let ours = r.attributes.iter().any(|a| {
                    matches!(a, netlink_packet_netfilter::nftables::RuleAttribute::Table(t) if t == name)
                });
                if let Some((chain, rule)) = wire::decode_rule(&r.attributes).filter(|_| ours) {
                    if let Some(c) = table.chains.iter_mut().find(|c| c.name == chain) {
                        c.rules.push(rule);
                    }
                }
            }
        }
        let sets = NfTablesMessage::GetSet(SetMessage {
            attributes: vec![SetAttribute::Table(name.into())],
        });
        // Each set's name, and for a verdict map its key kind.
        let mut listed: Vec<(String, Option<Option<MapKey>>)> = Vec::new();
        for m in self.request(&action, sets, NLM_F_DUMP)? {
            if let NfTablesMessage::NewSet(s) = m {
                let ours = s
                    .attributes
                    .iter()
                    .any(|a| matches!(a, SetAttribute::Table(t) if t == name));
                let mut set = None;
                let mut flags = SetFlags::empty();
                let mut key_type = None;
                for a in &s.attributes {
                    match a {
                        SetAttribute::Name(n) => set = Some(n.clone()),
                        SetAttribute::Flags(f) => flags = *f,
                        SetAttribute::KeyType(k) => key_type = Some(*k),
                        _ => {}
                    }
                }
                if let Some(set) = set.filter(|_| ours) {
                    let map = flags
                        .contains(SetFlags::Map)
                        .then(|| key_type.and_then(MapKey::from_type_id));
                    listed.push((set, map));
                }
            }
        }
        for (set, map) in listed {
            let elems = NfTablesMessage::GetSetElement(SetElementMessage {
                attributes: vec![
                    SetElementList::Table(name.into()),
                    SetElementList::Set(set.clone()),
                ],
            });
            let elements = self.dump_elements(&action, elems)?;
            match map {
                None => {
                    let keys = wire::interval_keys(&elements);
                    table
                        .sets
                        .push(Set::from_ranges(set, wire::decode_ranges(&keys)));
                }
                Some(Some(key)) => table.maps.push(Map::new(
                    set,
                    key,
                    elements.into_iter().map(|e| {
                        // An element without a verdict podnet knows never compares equal.
                        let v = e.verdict.unwrap_or(Verdict::Goto("<unknown>".into()));
                        (e.key, v)
                    }),
                )),
                // A map of a kind podnet does not write: kept by name only, never equal.
                Some(None) => {
                    table
                        .maps
                        .push(Map::new(format!("{set} <unknown kind>"), MapKey::Index, []))
                }
            }
        }
        Ok(Some(table))
    }

    /// Appends one message to `out`; returns its sequence number.
    fn push(&mut self, out: &mut Vec<u8>, msg: NetfilterMessage, flags: u16) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        let mut m = NetlinkMessage::from(msg);
        m.header.flags = NLM_F_REQUEST | flags;
        m.header.sequence_number = self.seq;
        m.finalize();
        let start = out.len();
        out.resize(start + m.buffer_len(), 0);
        m.serialize(&mut out[start..]);
        self.seq
    }

    /// One request (a get, a dump or a change with `NLM_F_ACK`) and its whole answer.
    fn request(
        &mut self,
        action: &str,
        msg: NfTablesMessage,
        flags: u16,
    ) -> Result<Vec<NfTablesMessage>> {
        let mut out = Vec::new();
        let seq = self.push(&mut out, ipv4(msg), flags);
        self.socket
            .send(&out, 0)
            .map_err(Error::io(format!("{action}: send the request")))?;
        let mut replies = Vec::new();
        loop {
            for reply in self.receive(action)? {
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => Err(Error::Kernel {
                                action: action.to_string(),
                                errno: -code.get(),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => {
                        if let NetfilterMessageInner::NfTables(m) = m.inner {
                            replies.push(m);
                        }
                        if flags & (NLM_F_DUMP | NLM_F_ACK) == 0 {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// A set-element dump, its elements decoded from the raw replies (see
    /// [`wire::elements`] for why not through the crate's parser).
    fn dump_elements(&mut self, action: &str, msg: NfTablesMessage) -> Result<Vec<wire::Element>> {
        const NLMSG_ERROR: u16 = 2;
        const NLMSG_DONE: u16 = 3;
        const NFGENMSG_LEN: usize = 4;
        let mut out = Vec::new();
        let seq = self.push(&mut out, ipv4(msg), NLM_F_DUMP);
        self.socket
            .send(&out, 0)
            .map_err(Error::io(format!("{action}: send the request")))?;
        let mut keys = Vec::new();
        loop {
            let n = self
                .socket
                .recv(&mut &mut self.buf[..], 0)
                .map_err(Error::io(format!("{action}: read the reply")))?;
            let mut offset = 0;
            while offset < n {
                let m = NetlinkBuffer::new_checked(&self.buf[offset..n]).map_err(|e| {
                    Error::Decode {
                        action: action.to_string(),
                        detail: e.to_string(),
                    }
                })?;
                let len = m.length() as usize;
                if m.sequence_number() == seq {
                    let payload = m.payload();
                    match m.message_type() {
                        NLMSG_DONE => return Ok(keys),
                        NLMSG_ERROR => {
                            let code = payload
                                .get(..4)
                                .and_then(|c| <[u8; 4]>::try_from(c).ok())
                                .map_or(0, i32::from_ne_bytes);
                            return match code {
                                0 => Ok(keys),
                                c => Err(Error::Kernel {
                                    action: action.to_string(),
                                    errno: -c,
                                }),
                            };
                        }
                        _ => wire::elements(payload.get(NFGENMSG_LEN..).unwrap_or(&[]), &mut keys),
                    }
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }

    /// The messages of one datagram.
    fn receive(&mut self, action: &str) -> Result<Vec<NetlinkMessage<NetfilterMessage>>> {
        let n = self
            .socket
            .recv(&mut &mut self.buf[..], 0)
            .map_err(Error::io(format!("{action}: read the reply")))?;
        parse_all(&self.buf[..n], action)
    }
}

/// What a [`Nftables::sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    Unchanged,
    Replaced,
    Deleted,
}

/// A bound NETLINK_NETFILTER socket.
pub(crate) fn open_socket() -> Result<Socket> {
    let mut socket =
        Socket::new(NETLINK_NETFILTER).map_err(Error::io("open a netfilter netlink socket"))?;
    socket
        .bind_auto()
        .map_err(Error::io("bind a netfilter netlink socket"))?;
    Ok(socket)
}

/// Every netlink message in `buf`.
pub(crate) fn parse_all(buf: &[u8], action: &str) -> Result<Vec<NetlinkMessage<NetfilterMessage>>> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let m = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[offset..]).map_err(|e| {
            Error::Decode {
                action: action.to_string(),
                detail: e.to_string(),
            }
        })?;
        let len = m.header.length as usize;
        out.push(m);
        if len == 0 {
            break;
        }
        offset += (len + 3) & !3;
    }
    Ok(out)
}

fn ipv4(m: NfTablesMessage) -> NetfilterMessage {
    NetfilterMessage::new(NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0), m)
}

fn control(begin: bool) -> NetfilterMessage {
    use netlink_packet_netfilter::none::ControlMessage;
    NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
        if begin {
            ControlMessage::BatchBegin
        } else {
            ControlMessage::BatchEnd
        },
    )
}

/// What a batch message makes, in words for an error: "add the nat chain".
fn describe(m: &NfTablesMessage) -> String {
    match m {
        NfTablesMessage::NewTable(_) => "add the table".into(),
        NfTablesMessage::DeleteTable(_) => "delete the old table".into(),
        NfTablesMessage::NewSet(s) => format!("add set {}", set_name(&s.attributes)),
        NfTablesMessage::NewSetElement(e) => format!(
            "add the elements of set {}",
            e.attributes
                .iter()
                .find_map(|a| match a {
                    SetElementList::Set(n) => Some(n.as_str()),
                    _ => None,
                })
                .unwrap_or("?")
        ),
        NfTablesMessage::NewChain(c) => {
            let name = c
                .attributes
                .iter()
                .find_map(|a| match a {
                    ChainAttribute::Name(n) => Some(n.as_str()),
                    _ => None,
                })
                .unwrap_or("?");
            let kind = c.attributes.iter().find_map(|a| match a {
                ChainAttribute::Type(t) => Some(t.as_str()),
                _ => None,
            });
            match kind {
                Some(k) => format!("add chain {name} (type {k})"),
                None => format!("add chain {name}"),
            }
        }
        NfTablesMessage::NewRule(r) => {
            let rule = wire::decode_rule(&r.attributes);
            match rule {
                Some((chain, rule)) => format!("add rule `{rule}` to chain {chain}"),
                None => "add a rule".into(),
            }
        }
        _ => "a request".into(),
    }
}

fn set_name(attrs: &[SetAttribute]) -> &str {
    attrs
        .iter()
        .find_map(|a| match a {
            SetAttribute::Name(n) => Some(n.as_str()),
            _ => None,
        })
        .unwrap_or("?")
}
