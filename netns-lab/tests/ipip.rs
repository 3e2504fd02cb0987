//! The IPIP suite: the seed with real IPIP (`tunl0`), as the seed shows it. Needs a kernel with
//! IPIP: `cargo xtask test` runs these natively where the kernel has it and otherwise inside
//! `cargo xtask vm` (a Debian kernel under qemu). Test names start with `ipip_` for that.

use serial_test::serial;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{lab, ok, LAB};

/// `ip route show proto bird` in a node of the lab (`lab` flags first).
fn bird_routes(lab: &[&str], node: &str) -> String {
    let mut args = lab.to_vec();
    args.extend(["node", node, "--", "ip", "route", "show", "proto", "bird"]);
    ok(&args)
}

/// Brings the seed up with IPIP, runs `f`, always brings it down.
fn with_seed(f: impl FnOnce() + std::panic::UnwindSafe) {
    let _ = lab(&["down", "--all"]);
    ok(&["up", "--quiet", "--encap", "ipip"]);
    let r = std::panic::catch_unwind(f);
    ok(&["down"]);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

#[test]
#[serial(seed_lab)]
#[ignore = "needs root and a kernel with IPIP (cargo xtask test runs it in the VM)"]
fn ipip_seed_lab_reproduces_the_seed() {
    with_seed(|| {
        let report = ok(&["test"]);
        assert!(report.contains("0 failed"), "{report}");
        assert!(report.contains("PASS  trace ubuntu-test -> multi-container is 192.168.110.103, 10.233.78.0, 10.233.78.3"), "{report}");
        for n in 1..=5 {
            assert!(
                report.contains(&format!(
                    "sung-ubuntu0{n}: tunl0 holds its block's first address as a /32, MTU 1480"
                )),
                "{report}"
            );
        }
        assert!(
            report.contains("pod ubuntu-test: eth0 has a /32 and MTU 1480"),
            "{report}"
        );
        let routes = ok(&["routes", "sung-ubuntu04"]);
        for row in [
            "10.233.78.0     sung-ubuntu05   255.255.255.0   UG    0      0        0 tunl0",
            "10.233.91.0     sung-ubuntu02   255.255.255.0   UG    0      0        0 tunl0",
            "10.233.95.0     sung-ubuntu01   255.255.255.0   UG    0      0        0 tunl0",
            "10.233.99.0     0.0.0.0         255.255.255.0   U     0      0        0 *",
            "10.233.99.1     0.0.0.0         255.255.255.255 UH    0      0        0 calie3df4d89b13",
            "10.233.112.0    sung-ubuntu03   255.255.255.0   UG    0      0        0 tunl0",
            "192.168.0.0     0.0.0.0         255.255.0.0     U     0      0        0 ens3",
        ] {
            assert!(routes.contains(row), "missing `{row}` in\n{routes}");
        }
        // The seed's table, as BIRD installs it (`ip route show proto bird`).
        let bird = bird_routes(&[], "sung-ubuntu04");
        let mut got: Vec<&str> = bird.lines().map(str::trim).collect();
        got.sort();
        assert_eq!(
            got,
            [
                "10.233.112.0/24 via 192.168.110.102 dev tunl0 onlink",
                "10.233.78.0/24 via 192.168.110.104 dev tunl0 onlink",
                "10.233.91.0/24 via 192.168.110.101 dev tunl0 onlink",
                "10.233.95.0/24 via 192.168.110.100 dev tunl0 onlink",
                "blackhole 10.233.99.0/24",
            ],
            "{bird}"
        );
        assert!(
            report.contains("PASS  sung-ubuntu04: every BGP session is Established"),
            "{report}"
        );
    });
}

#[test]
#[serial(seed_lab)]
#[ignore = "needs root and a kernel with IPIP (cargo xtask test runs it in the VM)"]
fn ipip_capture_shows_protocol_4_between_the_nodes() {
    with_seed(|| {
        let pcap = tempfile::NamedTempFile::new().unwrap();
        let path = pcap.path().to_str().unwrap().to_string();
        let capturing = std::thread::spawn(move || {
            lab(&[
                "capture",
                "sung-ubuntu05",
                "ens3",
                "-w",
                &path,
                "--count",
                "2",
                "--timeout",
                "20",
            ])
        });
        std::thread::sleep(Duration::from_millis(800));
        // Pings for 3 s, so a capture that starts late on a slow VM still sees two.
        ok(&[
            "exec",
            "ubuntu-test",
            "--",
            "ping",
            "-c",
            "15",
            "-i",
            "0.2",
            "10.233.78.3",
        ]);
        assert!(capturing.join().unwrap().status.success());
        let bytes = std::fs::read(pcap.path()).unwrap();
        let outer = &bytes[24 + 16 + 14..];
        assert_eq!(outer[9], 4, "outer IP protocol is 4 (IPIP)");
        assert_eq!(
            &outer[12..20],
            &[192, 168, 110, 103, 192, 168, 110, 104],
            "outer 192.168.110.103 -> 192.168.110.104"
        );
        assert_eq!(
            &outer[20 + 12..20 + 20],
            &[10, 233, 99, 1, 10, 233, 78, 3],
            "inner 10.233.99.1 -> 10.233.78.3"
        );
    });
}

#[test]
#[serial(seed_lab)]
#[ignore = "needs root and a kernel with IPIP (cargo xtask test runs it in the VM)"]
fn ipip_mtu_has_no_black_hole() {
    with_seed(|| {
        // 1452 bytes of ICMP data + 8 + 20 = 1480: fits the tunnel with don't-fragment set.
        let ping_df = |size: &'static str| {
            [
                "exec",
                "ubuntu-test",
                "--",
                "ping",
                "-c",
                "1",
                "-W",
                "5",
                "-M",
                "do",
                "-s",
                size,
                "10.233.78.3",
            ]
        };
        ok(&ping_df("1452"));
        let too_big = lab(&ping_df("1453"));
        assert!(
            !too_big.status.success(),
            "a 1481-byte don't-fragment packet must not pass"
        );
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&too_big.stdout),
            String::from_utf8_lossy(&too_big.stderr)
        )
        .to_lowercase();
        assert!(
            said.contains("message too long")
                || said.contains("frag needed")
                || said.contains("mtu"),
            "an explicit error, not silence: {said}"
        );

        // 10 MB over TCP between the pods, across the tunnel.
        let mut sink = Command::new(LAB)
            .args([
                "exec",
                "multi-container",
                "-c",
                "ubuntu",
                "--",
                LAB,
                "sink",
                "--port",
                "5001",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the sink to say it is bound (a slow VM takes more than any fixed delay).
        let mut out = std::io::BufReader::new(sink.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(line.starts_with("listening on"), "sink said: {line}");
        let sent = ok(&[
            "exec",
            "ubuntu-test",
            "--",
            LAB,
            "send",
            "10.233.78.3:5001",
            "10000000",
        ]);
        assert!(sent.contains("sent 10000000 bytes"), "{sent}");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut out, &mut text).unwrap();
        sink.wait().unwrap();
        assert!(
            text.contains("received 10000000 bytes from 10.233.99.1"),
            "{text}"
        );
    });
}

/// Two racks with IPIP and cross-subnet: a block in the same rack is a plain route to its
/// node, a block in the other rack goes through tunl0 straight to the far node (the routers
/// keep the BGP next hop), and pods reach across.
#[test]
#[serial(seed_lab)]
#[ignore = "needs root and a kernel with IPIP (cargo xtask test runs it in the VM)"]
fn ipip_two_racks_encapsulate_only_between_racks() {
    let _ = lab(&["down", "--all"]);
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/two-racks.yaml");
    ok(&["up", file, "--quiet", "--encap", "ipip", "--cross-subnet"]);
    let r = std::panic::catch_unwind(|| {
        let report = ok(&["--lab", "two-racks", "test"]);
        assert!(report.contains("0 failed"), "{report}");
        let bird = bird_routes(&["--lab", "two-racks"], "rack1-a");
        assert!(
            bird.contains("10.244.12.0/24 via 10.10.1.12 dev ens3"),
            "same rack, no tunnel:\n{bird}"
        );
        assert!(
            bird.contains("10.244.22.0/24 via 10.10.2.12 dev tunl0 onlink"),
            "other rack, IPIP to the far node itself:\n{bird}"
        );
    });
    ok(&["--lab", "two-racks", "down"]);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}
