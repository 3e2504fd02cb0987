//! The node's BIRD process: found (`bird --version` >= 2.0.12), started in the agent's network
//! namespace with its own config, control socket, pid file and log under
//! `<state-dir>/bird/`, adopted when a previous agent left it running, restarted with backoff
//! when it dies or stops answering on its socket, and reconfigured with configs that
//! `bird -p` accepted first.
//!
//! BIRD runs in its own process group and outlives the agent: a restarted agent adopts it
//! (same socket), and the routes it installed stay while no agent runs.

use super::control::{Control, ControlError};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The oldest BIRD that can install `via X dev tunl0 onlink` (the `onlink` route attribute).
pub const MIN_VERSION: (u32, u32, u32) = (2, 0, 12);

#[derive(Debug, Error)]
pub enum BirdError {
    #[error("start {bird} (Debian package bird2)")]
    NotFound {
        bird: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{bird} --version printed {printed:?}: not a BIRD version podnet can read")]
    UnknownVersion { bird: String, printed: String },
    #[error("{bird} is BIRD {found}; podnet needs BIRD 2.0.12 or newer (it added the onlink route attribute)")]
    TooOld { bird: String, found: String },
    #[error("BIRD refused the config: {0}")]
    Refused(String),
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Control(#[from] ControlError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BirdError {
    let path = path.display().to_string();
    move |source| BirdError::Io {
        action,
        path,
        source,
    }
}

/// `2.0.12` from `BIRD version 2.0.12`.
pub fn parse_version(printed: &str) -> Option<(u32, u32, u32)> {
    let v = printed
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)?;
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().and_then(|p| p.ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// Runs `bird ARGS` to its end.
fn run_bird(bird: &str, args: &[&std::ffi::OsStr]) -> Result<std::process::Output, BirdError> {
    Command::new(bird)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BirdError::NotFound {
            bird: bird.to_string(),
            source,
        })
}

/// Checks that `bird` runs and is new enough; its version.
pub fn check_version(bird: &str) -> Result<(u32, u32, u32), BirdError> {
    let out = run_bird(bird, &["--version".as_ref()])?;
    // BIRD prints its version on stderr.
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let v = parse_version(&printed).ok_or_else(|| BirdError::UnknownVersion {
        bird: bird.to_string(),
        printed: printed.trim().to_string(),
    })?;
    if v < MIN_VERSION {
        return Err(BirdError::TooOld {
            bird: bird.to_string(),
            found: format!("{}.{}.{}", v.0, v.1, v.2),
        });
    }
    Ok(v)
}

/// Where one node's BIRD keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub socket: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
    /// The last config BIRD refused, and why (read by `podnet-agent bgp status`).
    pub refused: PathBuf,
}

impl Paths {
    pub fn new(state_dir: &Path) -> Paths {
        let dir = state_dir.join("bird");
        Paths {
            conf: dir.join("bird.conf"),
            socket: dir.join("bird.ctl"),
            pid: dir.join("bird.pid"),
            log: dir.join("bird.log"),
            refused: dir.join("refused"),
            dir,
        }
    }

    /// A connection to the running BIRD.
    pub fn control(&self) -> Result<Control, ControlError> {
        Control::connect(&self.socket, Duration::from_secs(2))
    }

    /// The pid in the pid file, if that process is alive (not a zombie).
    pub fn running_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.pid)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }
}

/// True if `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Writes `text` to `path` atomically.
fn write_atomic(path: &Path, text: &str) -> Result<(), BirdError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io("write", &tmp))?;
    f.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("replace", path))
}

/// `bird -p -c FILE`: does BIRD accept this config? The error text if not.
pub fn check_config(bird: &str, paths: &Paths, text: &str) -> Result<(), BirdError> {
    std::fs::create_dir_all(&paths.dir).map_err(io("create", &paths.dir))?;
    let candidate = paths.dir.join("bird.conf.new");
    write_atomic(&candidate, text)?;
    let out = run_bird(bird, &["-p".as_ref(), "-c".as_ref(), candidate.as_os_str()])?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(BirdError::Refused(if why.is_empty() {
        format!("bird -p exited with {}", out.status)
    } else {
        why
    }))
}

/// The supervised BIRD of this node.
pub struct Daemon {
    bird: String,
    pub paths: Paths,
    /// Set when this agent started it (so it can be reaped); `None` when adopted.
    child: Option<Child>,
    pub pid: Option<i32>,
    pub restarts: u64,
    backoff: Duration,
    started: Instant,
    /// When the socket last answered (a stuck BIRD is restarted).
    last_answer: Instant,
}

/// How long a running BIRD may not answer on its socket before it is killed and restarted.
const STUCK_AFTER: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Daemon {
    /// Adopts the BIRD a previous agent left running (its pid file names a live process and
    /// its socket answers), else starts one with the config already in `paths.conf`;
    /// `recover` when the kernel still holds routes of an earlier BIRD (see [`Daemon::spawn`]).
    pub fn start_or_adopt(bird: &str, paths: Paths, recover: bool) -> Result<Daemon, BirdError> {
        let mut d = Daemon {
            bird: bird.to_string(),
            paths,
            child: None,
            pid: None,
            restarts: 0,
            backoff: Duration::from_millis(100),
            started: Instant::now(),
            last_answer: Instant::now(),
        };
        match d.paths.running_pid() {
            Some(pid) if d.paths.control().is_ok() => {
                tracing::info!(pid, "adopted the running BIRD");
                d.pid = Some(pid);
            }
            Some(pid) => {
                tracing::warn!(
                    pid,
                    "a BIRD is running but not answering on its socket: replacing it"
                );
                kill(pid);
                d.spawn(true)?;
            }
            None => d.spawn(recover)?,
        }
        Ok(d)
    }

    /// Starts BIRD. With `recover` (-R, graceful-restart recovery) it keeps the routes an
    /// earlier BIRD left in the kernel until its sessions are back, instead of flushing them;
    /// but it also holds every kernel update until all sessions have converged, so a first
    /// start, with nothing to keep, goes without.
    fn spawn(&mut self, recover: bool) -> Result<(), BirdError> {
        let p = &self.paths;
        std::fs::create_dir_all(&p.dir).map_err(io("create", &p.dir))?;
        let _ = std::fs::remove_file(&p.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .map_err(io("open", &p.log))?;
        let err = log.try_clone().map_err(io("open", &p.log))?;
        let child = Command::new(&self.bird)
            .args(if recover {
                &["-f", "-R"][..]
            } else {
                &["-f"][..]
            })
            .arg("-c")
            .arg(&p.conf)
            .arg("-s")
            .arg(&p.socket)
            .arg("-P")
            .arg(&p.pid)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| BirdError::NotFound {
                bird: self.bird.clone(),
                source,
            })?;
        tracing::info!(pid = child.id(), "started BIRD");
        self.pid = Some(child.id() as i32);
        self.child = Some(child);
        self.started = Instant::now();
        self.last_answer = Instant::now();
        Ok(())
    }

    /// True while the process lives (reaping it if it was ours).
    pub fn running(&mut self) -> bool {
        if let Some(c) = &mut self.child {
            return matches!(c.try_wait(), Ok(None));
        }
        self.pid.is_some_and(alive)
    }

    /// One supervision step: restarts BIRD if it died (at once the first time, then with a
    /// growing backoff) or has not answered for [`STUCK_AFTER`]. True if it restarted.
    pub fn check(&mut self, answering: bool) -> bool {
        if answering {
            self.last_answer = Instant::now();
        }
        let running = self.running();
        let stuck = running && self.last_answer.elapsed() > STUCK_AFTER;
        if running && !stuck {
            if self.started.elapsed() > Duration::from_secs(30) {
                self.backoff = Duration::from_millis(100);
            }
            return false;
        }
        if stuck {
            tracing::error!(pid = ?self.pid, "BIRD has not answered on its socket for {STUCK_AFTER:?}: restarting it");
            if let Some(pid) = self.pid {
                kill(pid);
            }
            if let Some(mut c) = self.child.take() {
                let _ = c.wait();
            }
        } else {
            tracing::error!(pid = ?self.pid, "BIRD died: restarting it");
            self.child = None;
        }
        if self.restarts > 0 && self.started.elapsed() < self.backoff {
            std::thread::sleep(self.backoff.saturating_sub(self.started.elapsed()));
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        self.restarts += 1;
        match self.spawn(true) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("restart BIRD: {e}");
                false
            }
        }
    }
}

/// Makes `text` BIRD's config: checked with `bird -p` first (a refused config is never
/// installed: the running one stays), then swapped in and loaded with `configure`.
pub fn apply_config(bird: &str, paths: &Paths, text: &str) -> Result<(), BirdError> {
    if let Err(e) = check_config(bird, paths, text) {
        let _ = write_atomic(&paths.refused, &format!("{e}\n"));
        return Err(e);
    }
    write_atomic(&paths.conf, text)?;
    let _ = std::fs::remove_file(&paths.refused);
    if paths.running_pid().is_some() {
        paths.control()?.configure()?;
    }
    Ok(())
}

/// The config BIRD has now, as written.
pub fn current_config(paths: &Paths) -> Option<String> {
    std::fs::read_to_string(&paths.conf).ok()
}

fn kill(pid: i32) {
    // SAFETY: kill(2) with a pid we read from BIRD's own pid file or started ourselves.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_and_compare() {
        assert_eq!(parse_version("BIRD version 2.0.12\n"), Some((2, 0, 12)));
        assert_eq!(parse_version("BIRD version 2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("BIRD version 2.0.8-rc1"), Some((2, 0, 8)));
        assert_eq!(parse_version("bird: command not found"), None);
        assert!(parse_version("BIRD version 2.0.8").unwrap() < MIN_VERSION);
        assert!(parse_version("BIRD version 1.6.8").unwrap() < MIN_VERSION);
        assert!(parse_version("BIRD version 3.0.0").unwrap() >= MIN_VERSION);
    }

    #[test]
    fn an_old_or_missing_bird_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("bird");
        std::fs::write(&old, "#!/bin/sh\necho 'BIRD version 2.0.8' >&2\n").unwrap();
        std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = check_version(old.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("BIRD 2.0.8") && err.contains("2.0.12 or newer"),
            "{err}"
        );
        let missing = dir.path().join("no-bird");
        let err = check_version(missing.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bird2"), "{err}");
    }
}
