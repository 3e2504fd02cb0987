//! Running the `podnet-lab` binary from the lab's test suites.

use std::process::{Command, Output};

pub const LAB: &str = env!("CARGO_BIN_EXE_podnet-lab");

/// `podnet-lab ARGS`, whatever its outcome.
pub fn lab(args: &[&str]) -> Output {
    Command::new(LAB)
        .args(args)
        .output()
        .expect("run podnet-lab")
}

/// `podnet-lab ARGS`, which must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = lab(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "podnet-lab {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
