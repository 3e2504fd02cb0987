//! Watching the kernel's IPv4 route changes (the `RTNLGRP_IPV4_ROUTE` multicast group), so an
//! agent notices at once when someone deletes a route it owns.

use crate::route::{parse, Route};
use crate::{Error, Result};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

const RTNLGRP_IPV4_ROUTE: u32 = 7;

/// A route appeared or went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteEvent {
    Added(Route),
    Deleted(Route),
}

/// A socket subscribed to route changes in the namespace it was opened in.
pub struct RouteMonitor {
    socket: Socket,
    buf: Vec<u8>,
}

impl RouteMonitor {
    pub fn open() -> Result<RouteMonitor> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(Error::io("open a netlink monitor socket"))?;
        socket
            .bind(&SocketAddr::new(0, 0))
            .map_err(Error::io("bind a netlink monitor socket"))?;
        socket
            .add_membership(RTNLGRP_IPV4_ROUTE)
            .map_err(Error::io("subscribe to route changes"))?;
        Ok(RouteMonitor {
            socket,
            buf: vec![0; 256 * 1024],
        })
    }

    /// Blocks until the kernel reports changes; returns them (main table, unicast/blackhole).
    pub fn wait(&mut self) -> Result<Vec<RouteEvent>> {
        let n = self
            .socket
            .recv(&mut &mut self.buf[..], 0)
            .map_err(Error::io("read route changes"))?;
        let mut events = Vec::new();
        let mut offset = 0;
        while offset < n {
            let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..n])
            else {
                break;
            };
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    events.extend(parse(r, true).map(RouteEvent::Added));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => {
                    events.extend(parse(r, true).map(RouteEvent::Deleted));
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
        Ok(events)
    }
}
