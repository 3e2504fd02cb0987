//! The CNI spec versions podnet speaks, and reading the one a network config asks for.

use crate::error::{code, CniError};
use std::fmt;

/// A CNI spec version podnet accepts in `cniVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    /// Every supported version, oldest first, as listed by the VERSION verb.
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];
    /// The newest version, used when a request names none that we can read.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a version string; anything not in [`CniVersion::ALL`] is a code-1 error.
    pub fn parse(s: &str) -> Result<CniVersion, CniError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!("incompatible CNI version {s:?}"),
                )
                .with_details(format!("podnet supports {}", Self::supported_list()))
            })
    }

    /// Results before 1.0.0 carry `ips[].version`.
    pub fn is_legacy(self) -> bool {
        self < CniVersion::V1_0_0
    }

    /// GC and STATUS exist from 1.1.0 on.
    pub fn has_gc_and_status(self) -> bool {
        self >= CniVersion::V1_1_0
    }

    /// Code 1 unless this config version allows `verb`, which exists from `since` on (as skel
    /// answers CHECK before 0.4.0 and GC or STATUS before 1.1.0).
    pub fn require(self, since: CniVersion, verb: &str) -> Result<(), CniError> {
        if self >= since {
            Ok(())
        } else {
            Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("config version {self} does not allow {verb} (needs {since} or later)"),
            ))
        }
    }

    fn supported_list() -> String {
        Self::ALL.map(|v| v.as_str()).join(", ")
    }

    /// The line the reference plugins print about their protocol, for `--version` and `--help`.
    pub fn supported_line() -> String {
        format!(
            "CNI protocol versions supported: {}",
            Self::supported_list()
        )
    }

    /// What a plugin answers to `--version`: its name and version, then
    /// [`CniVersion::supported_line`].
    pub fn about(plugin: &str, version: &str) -> String {
        format!("{plugin} {version}\n{}\n", Self::supported_line())
    }

    /// The VERSION verb's reply body.
    pub fn version_reply(asked: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": asked,
            "supportedVersions": Self::ALL.map(|v| v.as_str()),
        })
    }

    /// The VERSION verb's reply to a raw stdin: it names the `cniVersion` the caller sent
    /// (any string, or the latest when there is none).
    pub fn version_reply_to(stdin: &[u8]) -> serde_json::Value {
        let asked = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
            .unwrap_or_else(|| Self::LATEST.to_string());
        Self::version_reply(&asked)
    }

    /// Reads `cniVersion` from a raw network config. Malformed JSON is code 6, a missing or
    /// unsupported version code 1.
    pub fn from_config(stdin: &[u8]) -> Result<CniVersion, CniError> {
        let value: serde_json::Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(code::DECODING_FAILURE, "decode network config")
                .with_details(e.to_string())
        })?;
        match value.get("cniVersion").and_then(|v| v.as_str()) {
            Some(s) => Self::parse(s),
            None => Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                "network config has no cniVersion",
            )
            .with_details(format!("podnet supports {}", Self::supported_list()))),
        }
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_supported_version_and_refuses_others() {
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()).unwrap(), v);
        }
        for bad in ["0.2.0", "0.1.0", "1.2.0", "", "1.0"] {
            let e = CniVersion::parse(bad).unwrap_err();
            assert_eq!(e.code, code::INCOMPATIBLE_VERSION, "{bad}");
        }
    }

    #[test]
    fn config_version_errors_have_the_spec_codes() {
        assert_eq!(
            CniVersion::from_config(b"{not json").unwrap_err().code,
            code::DECODING_FAILURE
        );
        assert_eq!(
            CniVersion::from_config(b"{}").unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            CniVersion::from_config(br#"{"cniVersion":"0.4.0"}"#).unwrap(),
            CniVersion::V0_4_0
        );
    }

    #[test]
    fn about_lists_every_supported_version() {
        assert_eq!(
            CniVersion::about("podnet", "9.9.9"),
            "podnet 9.9.9\nCNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n"
        );
    }

    #[test]
    fn legacy_and_gc_boundaries() {
        assert!(CniVersion::V0_4_0.is_legacy());
        assert!(!CniVersion::V1_0_0.is_legacy());
        assert!(!CniVersion::V1_0_0.has_gc_and_status());
        assert!(CniVersion::V1_1_0.has_gc_and_status());
    }
}
