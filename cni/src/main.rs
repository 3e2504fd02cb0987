//! `podnet`: the CNI main plugin binary. Reads the runtime's environment and stdin, runs the
//! verb, writes exactly one JSON reply to stdout. Logs go to a file (the config's `log`), or to
//! stderr if the file can't be opened; never to stdout. Asked `--version` or `--help` by a
//! person, it says what it is instead (exit 0), as the reference plugins do.

use podnet_cni::config::LogConf;
use podnet_cni_types::{code, reply::reply, CniEnv, CniError, CniVersion};
use std::io::Read;
use std::process::ExitCode;

/// What `--help` adds to the `--version` text.
const HELP: &str = "
podnet is a CNI main plugin (Calico's pod dataplane), run by a container runtime: the verb in
CNI_COMMAND (ADD, DEL, CHECK, GC, STATUS or VERSION), the call's other CNI_* variables in the
environment and the network config on stdin; it answers with one JSON document on stdout.
See the README for its network config.

Usage: podnet             as a container runtime runs it
       podnet --version   (-V) its version and the CNI versions it speaks
       podnet --help      (-h) this text
";

fn main() -> ExitCode {
    if let Some(text) = answer_flag(std::env::args().nth(1).as_deref()) {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    let env = match CniEnv::from_process() {
        Ok(env) => env,
        Err(e) => {
            if std::env::var_os("CNI_COMMAND").is_none() {
                eprintln!("podnet is a CNI plugin run by a container runtime; see the README for its network config");
            }
            return reply(CniVersion::LATEST, Err(e));
        }
    };
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        let err = CniError::new(code::IO_FAILURE, "read the network config from stdin")
            .with_details(e.to_string());
        return reply(CniVersion::LATEST, Err(err));
    }
    let (version, outcome) = podnet_cni::call(&env, &stdin, init_logging);
    reply(version, outcome)
}

/// The text for a person's `--version` or `--help`; `None` for anything else (a runtime passes
/// no arguments, and the plugin ignores any it does not know, as the reference plugins do).
fn answer_flag(arg: Option<&str>) -> Option<String> {
    let about = CniVersion::about("podnet", env!("CARGO_PKG_VERSION"));
    match arg? {
        "--version" | "-V" => Some(about),
        "--help" | "-h" => Some(about + HELP),
        _ => None,
    }
}

/// A blocking writer to the log file (nothing to flush at exit), or stderr if it can't be
/// opened.
fn init_logging(log: &LogConf) {
    let level = log.level.parse().unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false);
    if let Some(dir) = log.file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log.file)
    {
        Ok(file) => builder.with_writer(std::sync::Mutex::new(file)).init(),
        Err(e) => {
            builder.with_writer(std::io::stderr).init();
            tracing::warn!("log file {}: {e}; logging to stderr", log.file.display());
        }
    }
}
