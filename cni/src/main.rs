//! `podnet`: the CNI main plugin binary. Reads the runtime's environment and stdin, runs the
//! verb, writes exactly one JSON reply to stdout. Logs go to a file (the config's `log`), or to
//! stderr if the file can't be opened; never to stdout.

use podnet_cni::config::LogConf;
use podnet_cni_types::{code, reply::reply, CniEnv, CniError, CniVersion};
use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
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
