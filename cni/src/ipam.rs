//! Getting the pod its address: podnet's own IPAM in-process, or any other IPAM plugin
//! delegated the CNI way (exec'd from `CNI_PATH` with the same environment and the whole
//! network config on stdin).

use crate::config::NetConf;
use podnet_cni_types::{code, CniEnv, CniError, CniResult};
use podnet_ipam::plugin as own;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The IPAM a config names.
pub enum Ipam {
    InProcess(Box<own::NetConf>),
    Delegate { binary: PathBuf, doc: Vec<u8> },
}

impl Ipam {
    /// `podnet-ipam` runs in-process; any other `ipam.type` must be found in `CNI_PATH`.
    pub fn for_conf(env: &CniEnv, conf: &NetConf) -> Result<Ipam, CniError> {
        if conf.ipam_in_process() {
            return own::NetConf::parse(&conf.ipam_document())
                .map(|c| Ipam::InProcess(Box::new(c)));
        }
        let binary = env
            .path
            .iter()
            .map(|dir| dir.join(&conf.ipam_type))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                let dirs: Vec<String> = env.path.iter().map(|p| p.display().to_string()).collect();
                CniError::new(
                    code::INVALID_NETWORK_CONFIG,
                    format!(
                        "IPAM plugin {:?} not found in CNI_PATH [{}]",
                        conf.ipam_type,
                        dirs.join(", ")
                    ),
                )
            })?;
        Ok(Ipam::Delegate {
            binary,
            doc: serde_json::to_vec(&conf.raw).expect("a JSON value serializes"),
        })
    }

    pub fn add(&self, env: &CniEnv) -> Result<CniResult, CniError> {
        match self {
            Ipam::InProcess(c) => own::add(env, c),
            Ipam::Delegate { .. } => {
                let out = self.exec("ADD")?;
                let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
                    CniError::new(
                        code::DECODING_FAILURE,
                        format!("decode the IPAM plugin's result: {e}"),
                    )
                })?;
                CniResult::from_json(&v).map_err(|e| {
                    CniError::new(
                        code::DECODING_FAILURE,
                        format!("decode the IPAM plugin's result: {e}"),
                    )
                })
            }
        }
    }

    pub fn del(&self, env: &CniEnv) -> Result<(), CniError> {
        match self {
            Ipam::InProcess(c) => own::del(env, c),
            Ipam::Delegate { .. } => self.exec("DEL").map(drop),
        }
    }

    pub fn check(&self, env: &CniEnv) -> Result<(), CniError> {
        match self {
            Ipam::InProcess(c) => own::check(env, c),
            Ipam::Delegate { .. } => self.exec("CHECK").map(drop),
        }
    }

    pub fn gc(&self) -> Result<(), CniError> {
        match self {
            Ipam::InProcess(c) => own::gc(c),
            Ipam::Delegate { .. } => self.exec("GC").map(drop),
        }
    }

    pub fn status(&self) -> Result<(), CniError> {
        match self {
            Ipam::InProcess(c) => own::status(c),
            Ipam::Delegate { .. } => self.exec("STATUS").map(drop),
        }
    }

    /// Runs the delegate with our environment and `CNI_COMMAND=verb`; its error reply is
    /// passed on with its code.
    fn exec(&self, verb: &str) -> Result<Vec<u8>, CniError> {
        let Ipam::Delegate { binary, doc } = self else {
            unreachable!("exec is for delegates")
        };
        let name = binary.display().to_string();
        let io = |what: &str, e: std::io::Error| {
            CniError::new(code::IO_FAILURE, format!("{what} IPAM plugin {name}"))
                .with_details(e.to_string())
        };
        let mut child = Command::new(binary)
            .env("CNI_COMMAND", verb)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io("start", e))?;
        // A delegate that refuses its environment may exit before reading: that is its answer.
        let _ = child.stdin.take().expect("piped").write_all(doc);
        let out = child.wait_with_output().map_err(|e| io("wait for", e))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let c = reply["code"].as_u64().unwrap_or(code::INTERNAL as u64) as u32;
        let msg = reply["msg"]
            .as_str()
            .unwrap_or("failed without a CNI error reply");
        let details = match reply["details"].as_str() {
            Some(d) => d.to_string(),
            None => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        };
        Err(CniError::new(c, format!("IPAM plugin {name} {verb}: {msg}")).with_details(details))
    }
}
