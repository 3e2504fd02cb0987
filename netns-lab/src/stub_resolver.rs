//! A pod's resolver, as glibc's stub resolver behaves: `/etc/resolv.conf` read (the
//! `resolv-conf` crate, which parses it as glibc does), a short name tried with each search
//! domain when it has fewer dots than `ndots` (the name alone first otherwise), nameservers
//! asked in order, NXDOMAIN moving on to the next candidate name.

use crate::dns::{self, Found};
use anyhow::{bail, Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The names to ask, in order.
pub fn candidates(name: &str, ndots: u32, searches: &[String]) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_string()];
    }
    let searched = searches.iter().map(|s| format!("{name}.{s}"));
    let dots = name.matches('.').count() as u32;
    if dots >= ndots {
        std::iter::once(name.to_string()).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(name.to_string())).collect()
    }
}

/// What a look-up through resolv.conf found: the name that answered and its addresses.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub server: SocketAddr,
    pub name: String,
    pub found: Found,
}

/// Looks `name` up as a program in the pod would, with the resolv.conf text `conf`.
pub fn lookup(conf: &str, name: &str) -> Result<Answer> {
    let c = resolv_conf::Config::parse(conf).context("read /etc/resolv.conf")?;
    let servers: Vec<SocketAddr> = c
        .nameservers
        .iter()
        .map(|n| SocketAddr::new(IpAddr::from(n), 53))
        .collect();
    if servers.is_empty() {
        bail!("/etc/resolv.conf names no nameserver");
    }
    let searches: Vec<String> = c.get_last_search_or_domain().cloned().collect();
    let timeout = Duration::from_secs(u64::from(c.timeout.clamp(1, 5)));
    for candidate in candidates(name, c.ndots, &searches) {
        let (server, found) = ask(&servers, &candidate, timeout)?;
        if matches!(&found, Found::Addresses(a) if !a.is_empty()) {
            return Ok(Answer {
                server,
                name: candidate,
                found,
            });
        }
    }
    Ok(Answer {
        server: servers[0],
        name: name.to_string(),
        found: Found::NxDomain,
    })
}

/// The first nameserver that answers; when none does, the look-up fails (glibc's TRY_AGAIN)
/// rather than going on to other names.
fn ask(servers: &[SocketAddr], name: &str, timeout: Duration) -> Result<(SocketAddr, Found)> {
    let mut last = None;
    for &server in servers {
        match dns::resolve(server, name, timeout) {
            Ok(found) => return Ok((server, found)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one nameserver"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Vec<String> {
        [
            "default.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn short_names_go_through_the_search_list_first() {
        assert_eq!(
            candidates("web", 5, &cluster()),
            [
                "web.default.svc.cluster.local",
                "web.svc.cluster.local",
                "web.cluster.local",
                "web"
            ]
        );
        assert_eq!(
            candidates("web.default", 5, &cluster())[0],
            "web.default.default.svc.cluster.local"
        );
    }

    #[test]
    fn names_with_enough_dots_or_a_final_dot_are_tried_as_they_are() {
        assert_eq!(
            candidates("www.example.com", 2, &cluster())[0],
            "www.example.com"
        );
        assert_eq!(
            candidates("web.default.svc.cluster.local.", 5, &cluster()),
            ["web.default.svc.cluster.local"]
        );
    }

    #[test]
    fn a_resolv_conf_without_nameservers_is_an_error() {
        assert!(lookup("search cluster.local\n", "web").is_err());
    }
}
