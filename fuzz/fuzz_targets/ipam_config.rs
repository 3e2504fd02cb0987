//! The IPAM plugin's config (the `ipam` section, as a runtime or the main plugin sends it).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(conf) = podnet_ipam::plugin::config::NetConf::parse(data) {
        let _ = conf.node();
    }
});
