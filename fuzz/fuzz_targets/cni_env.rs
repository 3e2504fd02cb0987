//! The runtime's environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_ARGS`, `CNI_PATH`), one `NAME=value` a line: read, or refused with a CNI error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use podnet_cni_types::{CniArgs, CniEnv};
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let _ = CniEnv::from_lookup(|k| vars.get(k).map(|v| v.to_string()));
    let _ = CniArgs::parse(&text);
});
