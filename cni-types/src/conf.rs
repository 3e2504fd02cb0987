//! The keys of a network config that every podnet plugin reads the same way: the previous
//! plugin's result and the runtime's list of valid attachments (GC).

use crate::env::Attachment;
use crate::error::{code, CniError};
use crate::result::CniResult;
use serde::Deserialize;

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
        Some(v) => Vec::<Attachment>::deserialize(v).map_err(|e| {
            CniError::new(
                code::INVALID_NETWORK_CONFIG,
                format!("invalid cni.dev/valid-attachments: {e}"),
            )
        }),
    }
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
}
