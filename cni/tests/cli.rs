//! The `podnet` binary asked by a person rather than a runtime: `--version` and `--help` say
//! what it is and exit 0; with neither a flag nor `CNI_COMMAND` it still answers the CNI way.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_podnet");
const VERSIONS: &str = "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0";

/// Runs the plugin with no `CNI_*` variables at all and nothing on stdin.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run podnet")
}

#[test]
fn version_and_help_say_what_it_is_and_exit_0() {
    for flag in ["--version", "-V", "--help", "-h"] {
        let out = run(&[flag]);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}: {stdout}");
        let mut lines = stdout.lines();
        assert_eq!(
            lines.next(),
            Some(concat!("podnet ", env!("CARGO_PKG_VERSION"))),
            "{flag}"
        );
        assert_eq!(lines.next(), Some(VERSIONS), "{flag}");
        let help = flag.contains('h');
        assert_eq!(stdout.contains("CNI_COMMAND"), help, "{flag}: {stdout}");
    }
}

#[test]
fn without_a_flag_or_cni_command_it_is_still_a_code_4_error() {
    for args in [&[][..], &["--verbose"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document: {e}"));
        assert_eq!(reply["code"], 4, "{args:?}: {reply}");
    }
}
