//! The CNI network config on stdin, `prevResult` of every version and
//! `cni.dev/valid-attachments` included: parsed, or refused with a CNI error whose reply is
//! exactly one JSON document.
#![no_main]
use libfuzzer_sys::fuzz_target;
use podnet_cni_types::{reply::error_body, CniVersion};

fuzz_target!(|data: &[u8]| {
    let version = CniVersion::from_config(data).unwrap_or(CniVersion::LATEST);
    match podnet_cni::config::NetConf::parse(data) {
        Ok(conf) => {
            // What ADD hands a delegated IPAM plugin must be JSON again.
            let doc = conf.ipam_document();
            serde_json::from_slice::<serde_json::Value>(&doc).expect("the IPAM document is JSON");
        }
        Err(e) => {
            let body = error_body(version, &e).to_string();
            let back: serde_json::Value = serde_json::from_str(&body).expect("one JSON reply");
            assert!(back["code"].as_u64().is_some(), "{body}");
        }
    }
});
