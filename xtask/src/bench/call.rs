//! One timed CNI plugin call made the way a runtime makes it: a clean environment with the
//! CNI_* variables, the network config on stdin, success read from the exit status.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The command for `verb` on `container` with its namespace at `netns`.
pub fn command(binary: &Path, verb: &str, container: &str, netns: &str) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` with `config` on stdin; its wall time, or an error naming `what` with the
/// plugin's output when it fails.
pub fn timed(mut cmd: Command, config: &str, what: &str) -> Result<Duration> {
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", cmd.get_program().to_string_lossy()))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(config.as_bytes())?;
    let out = child.wait_with_output()?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}
