//! Scenario YAML and the Kubernetes manifests in it (pods by `manifestFile` too, with the
//! same input), and a Pod manifest alone as `apply -f` reads it: parsed and checked, or
//! refused with an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use podnet_lab::scenario::{PodManifest, Scenario};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Scenario::parse(text, |_| Ok(text.to_string()));
    if let Ok(m) = serde_yaml::from_str::<PodManifest>(text) {
        let _ = podnet_lab::pod_files::validate(m.spec.dns_policy, m.spec.dns_config.as_ref());
    }
});
