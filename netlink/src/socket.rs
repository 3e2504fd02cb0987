//! A synchronous NETLINK_ROUTE socket: one request at a time, waiting for its ack or its
//! whole dump. Bound to the namespace of the thread that opened it, for its whole life.

use crate::{Error, Result};
use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket};

/// An rtnetlink socket in one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(Error::io("open a netlink socket"))?;
        socket
            .bind_auto()
            .map_err(Error::io("bind a netlink socket"))?;
        // Filtered dumps really filter; errors carry the kernel's explanation.
        let _ = socket.set_netlink_get_strict_chk(true);
        let _ = socket.set_ext_ack(true);
        Ok(Netlink {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends a change (with `NLM_F_ACK` added to `flags`) and waits for the kernel's answer.
    pub fn execute(&mut self, action: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.exchange(action, msg, flags | NLM_F_ACK).map(drop)
    }

    /// Sends a dump request and collects every message of the answer.
    pub fn dump(
        &mut self,
        action: &str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(action, msg, NLM_F_DUMP)
    }

    /// Sends a get request for one object; `None` if the kernel says it does not exist.
    pub fn get(
        &mut self,
        action: &str,
        msg: RouteNetlinkMessage,
    ) -> Result<Option<RouteNetlinkMessage>> {
        match self.exchange(action, msg, 0) {
            Ok(mut v) => Ok(v.pop()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn exchange(
        &mut self,
        action: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        req.header.flags = NLM_F_REQUEST | flags;
        req.header.sequence_number = seq;
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.socket
            .send(&out, 0)
            .map_err(Error::io(format!("{action}: send the request")))?;

        let mut replies = Vec::new();
        let expect_ack = flags & NLM_F_ACK != 0;
        let multipart = flags & NLM_F_DUMP == NLM_F_DUMP;
        loop {
            let n = self
                .socket
                .recv(&mut &mut self.buf[..], 0)
                .map_err(Error::io(format!("{action}: read the reply")))?;
            let mut offset = 0;
            while offset < n {
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..n])
                        .map_err(|e| Error::Decode {
                            action: action.to_string(),
                            detail: e.to_string(),
                        })?;
                offset += reply.header.length as usize;
                if reply.header.length == 0 {
                    offset = n;
                }
                if reply.header.sequence_number != seq {
                    continue; // a late answer to an earlier request
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => Err(Error::Kernel {
                                action: action.to_string(),
                                errno: -code.get(),
                            }),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => {
                        replies.push(m);
                        if !multipart && !expect_ack {
                            return Ok(replies);
                        }
                    }
                    NetlinkPayload::Noop | NetlinkPayload::Overrun(_) => {}
                    _ => {}
                }
            }
        }
    }
}
