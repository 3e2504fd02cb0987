//! Services and endpoints as the proxy sees them: what the API server's Service and
//! EndpointSlice objects say, reduced to what the data path needs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One port of a Service: `port` on the ClusterIP goes to `target_port` on each endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    /// The port's name (may be empty for a Service with one port).
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub target_port: u16,
    /// Endpoints whose port differs from `target_port` (a named targetPort each pod resolves
    /// to a port of its own, as Kubernetes' EndpointSlices carry it).
    pub endpoint_ports: BTreeMap<Ipv4Addr, u16>,
}

impl ServicePort {
    /// The port `endpoint` listens on for this Service port.
    pub fn target_port_of(&self, endpoint: Ipv4Addr) -> u16 {
        self.endpoint_ports
            .get(&endpoint)
            .copied()
            .unwrap_or(self.target_port)
    }
}

/// A ready endpoint of a Service (a pod matching its selector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
}

/// A ClusterIP Service with its ready endpoints. Headless Services have no ClusterIP and
/// nothing for the proxy to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub ports: Vec<ServicePort>,
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    /// A Service with one TCP port named `port_name`: `port` on the ClusterIP to
    /// `target_port` on each endpoint.
    pub fn tcp(
        id: (&str, &str),
        cluster_ip: Ipv4Addr,
        (port_name, port, target_port): (&str, u16, u16),
        endpoints: &[Ipv4Addr],
    ) -> Service {
        Service {
            namespace: id.0.into(),
            name: id.1.into(),
            cluster_ip,
            ports: vec![ServicePort {
                name: port_name.into(),
                protocol: Protocol::Tcp,
                port,
                target_port,
                endpoint_ports: BTreeMap::new(),
            }],
            endpoints: endpoints.iter().map(|&ip| Endpoint { ip }).collect(),
        }
    }

    /// `namespace/name`, as kubectl names it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
