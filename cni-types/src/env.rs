//! The runtime's side of a CNI call: `CNI_*` environment variables, read and validated the way
//! libcni's skel does (same required sets, same container ID and interface name rules).

use crate::error::{code, CniError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The verb in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    fn parse(s: &str) -> Result<Command, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            other => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("unknown CNI_COMMAND {other:?}"),
                ))
            }
        })
    }

    /// The variables this verb cannot do without (as skel requires them).
    fn required(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc | Command::Status => &["CNI_PATH"],
            Command::Version => &[],
        }
    }
}

/// A container attachment: what a handle is made of and what GC's valid list holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// `CNI_ARGS`: `K=V` pairs separated by `;`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs(pub Vec<(String, String)>);

impl CniArgs {
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for item in s.split(';').filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                CniError::new(code::INVALID_ENV, format!("invalid CNI_ARGS pair {item:?}"))
            })?;
            pairs.push((k.to_string(), v.to_string()));
        }
        Ok(CniArgs(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The validated environment of one plugin call. Fields a verb does not need are empty.
#[derive(Debug, Clone)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    pub args: CniArgs,
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Reads the process environment.
    pub fn from_process() -> Result<CniEnv, CniError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads and validates through `get`, so tests need no process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<CniEnv, CniError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let command = Command::parse(&get("CNI_COMMAND").ok_or_else(|| {
            CniError::new(
                code::INVALID_ENV,
                "required env variable CNI_COMMAND missing",
            )
        })?)?;
        let missing: Vec<&str> = command
            .required()
            .iter()
            .copied()
            .filter(|k| get(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("required env variables [{}] missing", missing.join(", ")),
            ));
        }
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        if !container_id.is_empty() {
            validate_container_id(&container_id)?;
        }
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        if !ifname.is_empty() {
            validate_ifname(&ifname)?;
        }
        Ok(CniEnv {
            command,
            container_id,
            netns: get("CNI_NETNS"),
            ifname,
            args: CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?,
            path: std::env::split_paths(&get("CNI_PATH").unwrap_or_default()).collect(),
        })
    }

    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

/// libcni's rule: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            format!("invalid characters in container ID {id:?}"),
        ))
    }
}

/// libcni's rule: 1..=15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let why = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 15 {
        Some("is longer than 15 characters")
    } else if name == "." || name == ".." {
        Some("is . or ..")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(CniError::new(
            code::INVALID_ENV,
            format!("interface name {name:?} {why}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_lookup(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
    ];

    #[test]
    fn reads_a_full_add() {
        let e = env(ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id, "abc123");
        assert_eq!(e.args.get("K8S_POD_NAME"), Some("web"));
        assert_eq!(e.args.get("K8S_POD_NAMESPACE"), None);
        assert_eq!(e.path.len(), 2);
    }

    #[test]
    fn missing_variables_are_named() {
        let without: Vec<_> = ADD
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        let e = env(&without).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.contains("CNI_NETNS"), "{}", e.msg);
        // DEL does not need a netns; VERSION needs nothing.
        let mut del = without.clone();
        del[0] = ("CNI_COMMAND", "DEL");
        assert!(env(&del).is_ok());
        assert!(env(&[("CNI_COMMAND", "VERSION"), ("CNI_NETNS", "dummy")]).is_ok());
        assert_eq!(env(&[]).unwrap_err().code, code::INVALID_ENV);
        assert_eq!(
            env(&[("CNI_COMMAND", "FOO")]).unwrap_err().code,
            code::INVALID_ENV
        );
    }

    #[test]
    fn container_id_rules() {
        for ok in ["a", "0abc", "a_b.c-d", "podnet-test.1"] {
            assert!(validate_container_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", ".a", "a/b", "a b", "a;b", "ä"] {
            assert_eq!(
                validate_container_id(bad).unwrap_err().code,
                code::INVALID_ENV,
                "{bad}"
            );
        }
    }

    #[test]
    fn ifname_rules() {
        for ok in ["eth0", "a", "123456789012345", "net1.2"] {
            assert!(validate_ifname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "1234567890123456",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            assert_eq!(
                validate_ifname(bad).unwrap_err().code,
                code::INVALID_ENV,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_cni_args_pair() {
        assert_eq!(CniArgs::parse("A=1;B").unwrap_err().code, code::INVALID_ENV);
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }
}
