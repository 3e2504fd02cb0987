//! `podnet`: the CNI main plugin (veth pair, /32 route, Calico's pod dataplane).
//!
//! Not built yet (issue 3): it answers VERSION and refuses every other verb with a clear CNI
//! error instead of pretending to work.

use podnet_cni_types::{code, reply::reply, CniEnv, CniError, CniVersion, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    match CniEnv::from_process() {
        Ok(env) if env.command == Command::Version => reply(
            CniVersion::LATEST,
            Ok(CniVersion::version_reply(CniVersion::LATEST.as_str())),
        ),
        Ok(env) => reply(
            CniVersion::LATEST,
            Err(CniError::new(
                code::INTERNAL,
                format!("podnet {:?} is not implemented yet", env.command),
            )),
        ),
        Err(e) => reply(CniVersion::LATEST, Err(e)),
    }
}
