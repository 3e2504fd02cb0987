//! The single place a CNI plugin writes stdout: exactly one JSON document, then an exit code.

use crate::env::Command;
use crate::error::CniError;
use crate::version::CniVersion;
use std::io::Write;
use std::process::ExitCode;

/// Writes `outcome` as the CNI reply and returns the exit code to end the process with.
/// Success bodies are written as given (`Null`, for verbs with no result, writes nothing);
/// errors get `cniVersion` added.
pub fn reply(version: CniVersion, outcome: Result<serde_json::Value, CniError>) -> ExitCode {
    let (body, success) = render(version, outcome);
    if !body.is_empty() {
        let mut out = std::io::stdout().lock();
        // If stdout is gone there is no one left to tell.
        let _ = out.write_all(&body);
        let _ = out.flush();
    }
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The bytes [`reply`] writes (one JSON document and a newline, or nothing for a success
/// without a result) and whether the call succeeded.
pub fn render(
    version: CniVersion,
    outcome: Result<serde_json::Value, CniError>,
) -> (Vec<u8>, bool) {
    let (body, success) = match outcome {
        Ok(v) => (v, true),
        Err(e) => (error_body(version, &e), false),
    };
    if body.is_null() {
        return (Vec::new(), success);
    }
    let mut out = serde_json::to_vec(&body).expect("a JSON value always serializes");
    out.push(b'\n');
    (out, success)
}

/// The error document: `{cniVersion, code, msg, details}`.
pub fn error_body(version: CniVersion, e: &CniError) -> serde_json::Value {
    let mut v = serde_json::to_value(e).expect("a CNI error always serializes");
    v.as_object_mut()
        .expect("a CNI error is an object")
        .insert("cniVersion".into(), version.as_str().into());
    v
}

/// A reply decided before any verb runs: the version to answer in and the body.
pub type Early = (CniVersion, Result<serde_json::Value, CniError>);

/// What every plugin does first: VERSION is answered at once (whatever stdin holds), else the
/// config is parsed; a config that does not parse is answered in the version it names, if any.
pub fn config_or_early<T>(
    command: Command,
    stdin: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<T, CniError>,
) -> Result<T, Early> {
    if command == Command::Version {
        return Err((CniVersion::LATEST, Ok(CniVersion::version_reply_to(stdin))));
    }
    parse(stdin).map_err(|e| {
        let v = CniVersion::from_config(stdin).unwrap_or(CniVersion::LATEST);
        (v, Err(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(_: &[u8]) -> Result<(), CniError> {
        Err(CniError::new(7, "bad config"))
    }

    #[test]
    fn version_is_answered_whatever_stdin_holds() {
        let (v, body) = config_or_early(Command::Version, b"not json", refuse).unwrap_err();
        assert_eq!(v, CniVersion::LATEST);
        assert!(body.unwrap()["supportedVersions"].is_array());
    }

    #[test]
    fn a_refused_config_is_answered_in_its_own_version() {
        let stdin = br#"{"cniVersion":"0.4.0"}"#;
        let (v, body) = config_or_early(Command::Add, stdin, refuse).unwrap_err();
        assert_eq!(v.as_str(), "0.4.0");
        let (bytes, ok) = render(v, body);
        assert!(!ok);
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (doc["code"].as_u64(), doc["cniVersion"].as_str()),
            (Some(7), Some("0.4.0"))
        );
    }
}
