//! The single place a CNI plugin writes stdout: exactly one JSON document, then an exit code.

use crate::error::CniError;
use crate::version::CniVersion;
use std::io::Write;
use std::process::ExitCode;

/// Writes `outcome` as the CNI reply and returns the exit code to end the process with.
/// Success bodies are written as given (`Null`, for verbs with no result, writes nothing);
/// errors get `cniVersion` added.
pub fn reply(version: CniVersion, outcome: Result<serde_json::Value, CniError>) -> ExitCode {
    let (body, code) = match outcome {
        Ok(v) => (v, ExitCode::SUCCESS),
        Err(e) => (error_body(version, &e), ExitCode::FAILURE),
    };
    if body.is_null() {
        return code;
    }
    let mut out = std::io::stdout().lock();
    // If stdout is gone there is no one left to tell.
    let _ = serde_json::to_writer(&mut out, &body);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    code
}

/// The error document: `{cniVersion, code, msg, details}`.
pub fn error_body(version: CniVersion, e: &CniError) -> serde_json::Value {
    let mut v = serde_json::to_value(e).expect("a CNI error always serializes");
    v.as_object_mut()
        .expect("a CNI error is an object")
        .insert("cniVersion".into(), version.as_str().into());
    v
}
