//! `podnet-agent bgp status`: what `calicoctl node status` prints, read from the node's BIRD
//! over its control socket: the process line, then the IPv4 BGP status table (PEER ADDRESS,
//! PEER TYPE, STATE, SINCE, INFO).

use super::control::{ControlError, Protocol};
use super::daemon::Paths;
use super::peers::PeerType;
use serde::Serialize;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    pub address: String,
    pub peer_type: String,
    pub state: String,
    pub since: String,
    pub info: String,
    pub protocol: String,
    pub routes_imported: u64,
    pub neighbor_as: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BgpStatus {
    /// `BIRD 2.0.12`, when it answers.
    pub bird: Option<String>,
    pub pid: Option<i32>,
    pub peers: Vec<PeerStatus>,
    /// The last config BIRD refused, if the running one is older than the datastore's.
    pub refused: Option<String>,
}

/// The rows for BIRD's BGP protocols.
pub fn rows(protocols: &[Protocol]) -> Vec<PeerStatus> {
    protocols
        .iter()
        .filter(|p| p.proto == "BGP")
        .map(|p| {
            let (kind, ip) = PeerType::from_protocol(&p.name)
                .map(|(k, ip)| (k.as_str().to_string(), ip.to_string()))
                .unwrap_or_else(|| ("other".into(), p.neighbor.clone().unwrap_or_default()));
            PeerStatus {
                address: ip,
                peer_type: kind,
                state: p.state.clone(),
                since: p.since.clone(),
                info: p.bgp_state.clone().unwrap_or_else(|| p.info.clone()),
                protocol: p.name.clone(),
                routes_imported: p.routes_imported,
                neighbor_as: p.neighbor_as,
            }
        })
        .collect()
}

/// Reads the node's BIRD. A BIRD that is not running (or not answering) is a status, not an
/// error.
pub fn read(paths: &Paths) -> BgpStatus {
    let pid = paths.running_pid();
    let refused = std::fs::read_to_string(&paths.refused)
        .ok()
        .map(|s| s.trim().to_string());
    let answer: Result<_, ControlError> = paths.control().and_then(|mut c| {
        let protocols = c.protocols()?;
        Ok((c.banner.clone(), protocols))
    });
    match answer {
        Ok((banner, protocols)) => BgpStatus {
            bird: Some(banner),
            pid,
            peers: rows(&protocols),
            refused,
        },
        Err(_) => BgpStatus {
            bird: None,
            pid,
            peers: Vec::new(),
            refused,
        },
    }
}

impl BgpStatus {
    pub fn render(&self) -> String {
        let mut out = match (&self.bird, self.pid) {
            (Some(b), Some(pid)) => format!("BIRD is running ({b}, pid {pid}).\n"),
            (Some(b), None) => format!("BIRD is running ({b}).\n"),
            (None, Some(pid)) => {
                format!("BIRD is running (pid {pid}) but NOT answering on its control socket.\n")
            }
            (None, None) => "BIRD is NOT running.\n".to_string(),
        };
        if let Some(r) = &self.refused {
            out.push_str(&format!(
                "WARNING: the newest config was refused, BIRD runs the previous one: {r}\n"
            ));
        }
        out.push_str("\nIPv4 BGP status\n");
        if self.peers.is_empty() {
            out.push_str("No IPv4 peers found.\n");
        } else {
            let mut rows = vec![[
                "PEER ADDRESS".to_string(),
                "PEER TYPE".into(),
                "STATE".into(),
                "SINCE".into(),
                "INFO".into(),
            ]];
            rows.extend(self.peers.iter().map(|p| {
                [
                    p.address.clone(),
                    p.peer_type.clone(),
                    p.state.clone(),
                    p.since.clone(),
                    p.info.clone(),
                ]
            }));
            boxed(&mut out, &rows);
        }
        out.push_str("\nIPv6 BGP status\nNo IPv6 peers found.\n");
        out
    }
}

/// calicoctl's table: `+---+` rules, centred headings, cells padded by one space.
fn boxed<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut widths = [0; N];
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    out.push_str(&rule);
    for (i, row) in rows.iter().enumerate() {
        for (c, w) in row.iter().zip(widths) {
            if i == 0 {
                out.push_str(&format!("| {c:^w$} "));
            } else {
                out.push_str(&format!("| {c:<w$} "));
            }
        }
        out.push_str("|\n");
        if i == 0 {
            out.push_str(&rule);
        }
    }
    out.push_str(&rule);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::control::{parse_protocols, read_reply};

    #[test]
    fn the_table_reads_like_calicoctl_node_status() {
        let text = include_str!("replies/show_protocols.txt");
        let reply = read_reply(&mut text.lines().map(|l| Ok(l.to_string())))
            .unwrap()
            .unwrap();
        let status = BgpStatus {
            bird: Some("BIRD 2.0.12".into()),
            pid: Some(42),
            peers: rows(&parse_protocols(&reply)),
            refused: None,
        };
        let want = "\
BIRD is running (BIRD 2.0.12, pid 42).

IPv4 BGP status
+-----------------+-------------------+-------+--------------+-------------+
|  PEER ADDRESS   |     PEER TYPE     | STATE |    SINCE     |    INFO     |
+-----------------+-------------------+-------+--------------+-------------+
| 192.168.110.104 | node-to-node mesh | up    | 20:14:20.615 | Established |
+-----------------+-------------------+-------+--------------+-------------+

IPv6 BGP status
No IPv6 peers found.
";
        assert_eq!(status.render(), want);
    }

    #[test]
    fn a_dead_bird_and_a_refused_config_are_said() {
        let s = BgpStatus {
            bird: None,
            pid: None,
            peers: Vec::new(),
            refused: Some("BIRD refused the config: x".into()),
        };
        let r = s.render();
        assert!(r.starts_with("BIRD is NOT running."), "{r}");
        assert!(r.contains("WARNING: the newest config was refused"), "{r}");
        assert!(r.contains("No IPv4 peers found."), "{r}");
    }
}
