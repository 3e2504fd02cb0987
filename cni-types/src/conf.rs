//! The keys of a network config that every podnet plugin reads the same way: the previous
//! plugin's result and the runtime's list of valid attachments (GC); and [`field`], how both
//! plugins read their own sections so that an error names the field's path and the value.
//!
//! Paths come from `serde_path_to_error` (serde's own errors know the message but not where
//! the deserializer was), and the value refused is read back from the parsed document at
//! that path. That keeps every field a plain `Deserialize` type, rather than hand-written
//! validation walking `serde_json::Value`s, which would repeat each struct's shape.

use crate::env::Attachment;
use crate::error::{code, CniError};
use crate::result::CniResult;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

/// `prevResult`, if present and not null. A malformed one is code 7.
pub fn prev_result(raw: &serde_json::Value) -> Result<Option<CniResult>, CniError> {
    match raw.get("prevResult") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => CniResult::from_json(v).map(Some).map_err(|e| {
            CniError::new(
                code::INVALID_NETWORK_CONFIG,
                format!("invalid prevResult: {e}"),
            )
        }),
    }
}

/// `cni.dev/valid-attachments` (CNI 1.1 GC); empty when absent. A malformed one is code 7.
pub fn valid_attachments(raw: &serde_json::Value) -> Result<Vec<Attachment>, CniError> {
    match raw.get("cni.dev/valid-attachments") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(v) => field(v, "cni.dev/valid-attachments"),
    }
}

/// Deserializes `value`, the document's field at path `at` ("" for the document itself). A
/// refusal is code 7 naming the path and the value refused: `ipam.pool: "10.233.64.0/33":
/// prefix length 33 is longer than 32`; for a missing or unknown field, the object's path.
pub fn field<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, CniError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let segments: Vec<&Segment> = e.path().iter().collect();
        let mut path = at.to_string();
        let mut here = Some(value);
        for s in &segments {
            match s {
                Segment::Seq { index } => {
                    path += &format!("[{index}]");
                    here = here.and_then(|v| v.get(index));
                }
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path += key;
                    here = here.and_then(|v| v.get(key));
                }
                Segment::Unknown => {
                    path += ".?";
                    here = None;
                }
            }
        }
        let msg = e.into_inner().to_string();
        let shown = if path.is_empty() { "config" } else { &path };
        // The refused value, unless it is the object a missing or unknown key belongs to.
        let msg = match here.filter(|v| !v.is_object()) {
            Some(v) => format!("{shown}: {v}: {msg}"),
            None => format!("{shown}: {msg}"),
        };
        CniError::new(code::INVALID_NETWORK_CONFIG, msg)
    })
}

/// A refusal of the value at `path` (set after parsing: what the types alone cannot check),
/// in [`field`]'s words. Code 7.
pub fn refused(path: &str, value: impl std::fmt::Display, why: impl std::fmt::Display) -> CniError {
    CniError::new(
        code::INVALID_NETWORK_CONFIG,
        format!("{path}: {value}: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_null_present_and_malformed() {
        assert_eq!(prev_result(&json!({})).unwrap(), None);
        assert_eq!(prev_result(&json!({"prevResult": null})).unwrap(), None);
        let r = prev_result(&json!({"prevResult": {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.1/32"}]}})).unwrap();
        assert_eq!(r.unwrap().ips.len(), 1);
        assert_eq!(
            prev_result(&json!({"prevResult": {"ips": "x"}}))
                .unwrap_err()
                .code,
            7
        );
        let a = valid_attachments(
            &json!({"cni.dev/valid-attachments": [{"containerID": "c", "ifname": "eth0"}]}),
        )
        .unwrap();
        assert_eq!(
            a,
            [Attachment {
                container_id: "c".into(),
                ifname: "eth0".into()
            }]
        );
        assert!(valid_attachments(&json!({})).unwrap().is_empty());
        assert_eq!(
            valid_attachments(&json!({"cni.dev/valid-attachments": 3}))
                .unwrap_err()
                .code,
            7
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Ipam {
        block_size: u8,
        #[serde(default)]
        pins: std::collections::BTreeMap<String, Vec<u8>>,
    }

    #[test]
    fn a_refusal_names_the_path_and_the_value() {
        let e = |v: Value| field::<Ipam>(&v, "ipam").unwrap_err();
        let wrong = e(json!({"blockSize": "24"}));
        assert_eq!(wrong.code, 7);
        assert!(
            wrong
                .msg
                .starts_with("ipam.blockSize: \"24\": invalid type"),
            "{}",
            wrong.msg
        );
        let deep = e(json!({"blockSize": 24, "pins": {"n1": [1, 300]}}));
        assert!(
            deep.msg.starts_with("ipam.pins.n1[1]: 300: "),
            "{}",
            deep.msg
        );
        let missing = e(json!({}));
        assert!(
            missing.msg.starts_with("ipam: missing field `blockSize`"),
            "{}",
            missing.msg
        );
        let unknown = e(json!({"blockSize": 24, "blocksize": 24}));
        assert!(
            unknown.msg.starts_with("ipam.blocksize: 24: unknown field"),
            "{}",
            unknown.msg
        );
        let a = valid_attachments(
            &json!({"cni.dev/valid-attachments": [{"containerID": 5, "ifname": "eth0"}]}),
        )
        .unwrap_err();
        assert!(
            a.msg
                .starts_with("cni.dev/valid-attachments[0].containerID: 5: "),
            "{}",
            a.msg
        );
    }
}
