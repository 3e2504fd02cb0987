//! No input makes the lab leave anything behind: a scenario YAML is parsed, and if the lab
//! takes it, brought up for real and taken down, in the sandbox (`podnet_fuzz::sandbox`, which
//! stands in for the host). Then the sandbox must be exactly as before: no namespace, link,
//! route, process, mount or state file left, whether `up` worked or failed half-way.
//!
//! Slow by nature (an `up` takes seconds), so it finds little per minute; the corpus holds the
//! repo's scenarios. Kept small: at most 4 nodes, 4 pods, 2 routers, 4 Services. Containers
//! only sleep (a command the fuzzer made up is replaced by one that does not exist, so a pod
//! that cannot start is tried too): the fuzzer must not run commands it invented.
#![no_main]
use libfuzzer_sys::fuzz_target;
use podnet_fuzz::sandbox;
use podnet_lab::runtime::Binaries;
use podnet_lab::scenario::Scenario;
use std::sync::OnceLock;

static BEFORE: OnceLock<sandbox::World> = OnceLock::new();
static BINS: OnceLock<Binaries> = OnceLock::new();
/// How long an `up` waits without progress before it gives up (as `podnet-lab up --timeout`).
const LAB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fuzz_target!(
    init: {
        sandbox::enter();
        let dir = std::env::var("PODNET_LAB_BINS").expect("PODNET_LAB_BINS names target/debug");
        let _ = BINS.set(Binaries {
            dir: dir.into(),
            agent_image: None,
        });
        BEFORE.set(sandbox::world()).expect("set up once");
    },
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(mut scenario) = Scenario::parse(text, |f| anyhow::bail!("no files here: {f}")) else {
            return;
        };
        if scenario.nodes.len() > 4
            || scenario.pods.len() > 4
            || scenario.routers.len() > 2
            || scenario.services.len() > 4
        {
            return;
        }
        only_sleepers(&mut scenario);
        let name = scenario.name.clone();
        let encap = scenario.encapsulation;
        let routing = if scenario.routers.is_empty() && text.contains("routing: datastore") {
            "datastore"
        } else {
            "bgp"
        };
        let bins = BINS.get().expect("set at init");
        if podnet_lab::up::up(scenario, encap, "sqlite", 1, routing, bins, LAB_TIMEOUT).is_ok() {
            podnet_lab::down::down(&name).expect("down after a complete up");
        }
        // Processes `down` killed may still be exiting (seen: two without a command line, a
        // moment after an `up` that failed on a pod): what is left after 5 s is left behind.
        let mut after = sandbox::world();
        for _ in 0..50 {
            if BEFORE.get() == Some(&after) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            after = sandbox::world();
        }
        assert_eq!(BEFORE.get(), Some(&after), "the lab left something behind");
    }
);

fn only_sleepers(s: &mut Scenario) {
    for p in &mut s.pods {
        let Some(m) = p.manifest.as_mut() else {
            continue;
        };
        for c in &mut m.spec.containers {
            c.image = "busybox".into();
            c.command = match c.command.first().map(String::as_str) {
                None | Some("sleep") | Some("/bin/sleep") => {
                    vec!["sleep".into(), "infinity".into()]
                }
                Some(_) => vec!["/nonexistent/fuzz-command".into()],
            };
            c.args.clear();
        }
    }
}
