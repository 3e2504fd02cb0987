//! What BIRD's control socket sends: replies read line by line, then read as protocols and
//! as a route, as the agent reads them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use podnet_agent::bgp::control::{parse_protocols, parse_route, read_reply};
use std::io::BufRead;

fuzz_target!(|data: &[u8]| {
    let mut lines = std::io::BufReader::new(data).lines();
    while let Ok(Some(reply)) = read_reply(&mut lines) {
        let _ = parse_protocols(&reply);
        let _ = parse_route(&reply);
        let _ = reply.text();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = podnet_agent::bgp::daemon::parse_version(text);
    }
});
